"""Where a batch goes beyond what the labelled reference can vouch for (nbops.monitoring.reference_gaps):
a real LightGBM model of a known relation, probed at fitting time on its reference's inputs. A batch
pushed past the model's range (where trees are flat but the risk keeps rising) or holding a category
the model never saw gets a band that spans the readings of those rows and covers the realised AUC,
which the calibration alone misses; a clean batch is estimated as before; stored as JSON it gives
the same estimate; the old format without gaps still reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nbops.monitoring.estimate import BinaryEstimator, EstimationError, fit_binary_estimator, load_estimator
from nbops.monitoring.reference_gaps import fit_reference_gaps
from nbops.runtime.integrity import ESTIMATOR_FILE

pytestmark = pytest.mark.slow  # trains a model on 30,000 rows and estimates 60 months

NAMES = ("utilisation", "income", "purpose")
PURPOSE_EFFECT = np.array([-0.6, 0.0, 0.9, 0.8])  # level 3 never appears in the training data


def table(n: int, seed: int, utilisation: tuple[float, float] = (0.0, 1.0), new_purpose: float = 0.0) -> Any:
    """Inputs and labels of a known relation: the risk rises steeply with utilisation, falls with
    income and depends on the purpose; ``new_purpose`` of the rows get a purpose the model never saw
    (it reads it as missing)."""
    rng = np.random.default_rng(seed)
    util = rng.uniform(*utilisation, n)
    income = rng.normal(0.0, 1.0, n)
    purpose = rng.integers(0, 3, n).astype(float)
    purpose[rng.random(n) < new_purpose] = 3
    z = -2.2 + 3.0 * util - 0.6 * income + PURPOSE_EFFECT[purpose.astype(int)] + rng.normal(0.0, 0.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    x = np.column_stack([util, income, np.where(purpose == 3, np.nan, purpose)])
    return x, y


@pytest.fixture(scope="module")
def model() -> lgb.Booster:
    x, y = table(30_000, seed=1)
    params = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 50, "verbose": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(x, y, categorical_feature=[2]), num_boost_round=150)


@pytest.fixture(scope="module")
def estimator(model: lgb.Booster) -> BinaryEstimator:
    x, y = table(15_000, seed=2)  # the test split: not the training rows
    return fit_binary_estimator(
        model.predict(x), y, booster=model, features=x, feature_names=NAMES, categorical=[2], seed=0
    )


def test_the_model_is_probed_for_its_edges_and_for_what_it_cannot_read(
    model: lgb.Booster, estimator: BinaryEstimator
) -> None:
    gaps = estimator.gaps
    assert gaps is not None and gaps.feature_names == NAMES
    high = next(t for t in gaps.tails if t.name == "utilisation" and t.side == "high")
    assert 0.95 < high.edge < 1.0  # the model's last split on it, near the top of the training range
    assert len(high.slope) == 1 and high.slope[0] > 1.0  # its log-odds still rise steeply before the edge
    purpose = next(u for u in gaps.unread if u.name == "purpose")
    assert purpose.reference_missing == 0.0 and len(purpose.shifts) == 3
    assert sum(purpose.shares) == pytest.approx(1.0)
    assert np.ptp(np.asarray(purpose.shifts)[:, 0]) > 0.5  # the levels move the model's log-odds apart
    # Fitting is deterministic given the seed.
    x, _ = table(15_000, seed=2)
    assert fit_reference_gaps(model, x, NAMES, [2], seed=0) == gaps


def months_of(
    model: lgb.Booster, estimator: BinaryEstimator, with_features: bool, **shift: Any
) -> list[dict[str, Any]]:
    out = []
    for seed in range(20):
        x, y = table(5_000, seed=100 + seed, **shift)
        s = model.predict(x)
        est = estimator.estimate(s, x if with_features else None)
        m = est.metrics["roc_auc"]
        realised = roc_auc_score(y, s)
        out.append({"error": abs(m.value - realised), "covered": m.low <= realised <= m.high, "estimate": est})
    return out


def test_a_batch_beyond_the_models_range_gets_a_band_that_covers_it(
    model: lgb.Booster, estimator: BinaryEstimator
) -> None:
    shifted = {"utilisation": (0.5, 1.9)}  # two thirds of the rows past anything the model was fitted on
    plain = months_of(model, estimator, with_features=False, **shifted)
    aware = months_of(model, estimator, with_features=True, **shifted)
    assert sum(m["covered"] for m in plain) <= 10  # the calibration alone misses (the model is flat there)
    assert sum(m["covered"] for m in aware) >= 18  # of 20
    assert np.mean([m["error"] for m in aware]) < np.mean([m["error"] for m in plain])
    gap = aware[0]["estimate"].gaps[0]
    assert gap["kind"] == "beyond the model's range" and gap["features"] == ["utilisation"]
    assert 0.6 < gap["rows"] < 0.7
    assert gap["metric"] == "roc_auc" and gap["change"][1] > 0.01  # had the risk kept rising, the AUC would be higher


def test_a_category_the_model_never_saw_widens_the_band(model: lgb.Booster, estimator: BinaryEstimator) -> None:
    """The new category is about as risky as the riskiest known one: one of the readings the band spans."""
    aware = months_of(model, estimator, with_features=True, new_purpose=0.3)
    plain = months_of(model, estimator, with_features=False, new_purpose=0.3)
    assert sum(m["covered"] for m in aware) >= 18
    assert sum(m["covered"] for m in aware) > sum(m["covered"] for m in plain)
    gap = next(g for g in aware[0]["estimate"].gaps if g["kind"] == "values the model cannot read")
    assert gap["features"] == ["purpose"] and 0.25 < gap["rows"] < 0.35


def test_a_clean_batch_is_estimated_as_without_its_features(model: lgb.Booster, estimator: BinaryEstimator) -> None:
    x, y = table(5_000, seed=50)
    s = model.predict(x)
    with_x, without = estimator.estimate(s, x), estimator.estimate(s)
    assert not with_x.gaps
    assert with_x.metrics == without.metrics


def test_stored_as_json_with_its_gaps_it_estimates_the_same(
    estimator: BinaryEstimator, model: lgb.Booster, tmp_path: Path
) -> None:
    (tmp_path / ESTIMATOR_FILE).write_text(json.dumps(estimator.to_dict()))
    loaded = load_estimator(tmp_path)
    assert isinstance(loaded, BinaryEstimator) and loaded.gaps == estimator.gaps
    x, _ = table(3_000, seed=9, utilisation=(0.5, 1.5), new_purpose=0.2)
    s = model.predict(x)
    assert loaded.estimate(s, x).to_dict() == estimator.estimate(s, x).to_dict()


def test_an_estimator_stored_before_gaps_still_estimates(estimator: BinaryEstimator, tmp_path: Path) -> None:
    old = {k: v for k, v in estimator.to_dict().items() if k != "gaps"} | {"format": "nbops-cbpe/1"}
    (tmp_path / ESTIMATOR_FILE).write_text(json.dumps(old))
    loaded = load_estimator(tmp_path)
    assert isinstance(loaded, BinaryEstimator) and loaded.gaps is None
    x, _ = table(2_000, seed=3, utilisation=(0.5, 1.5))
    est = loaded.estimate(np.full(len(x), 0.3) + 0.4 * x[:, 0] / 1.5, x)  # features ignored: nothing to read them
    assert not est.gaps and 0 <= est.metrics["roc_auc"].low < est.metrics["roc_auc"].high <= 1


def test_features_that_are_not_the_models_inputs_are_refused(estimator: BinaryEstimator) -> None:
    with pytest.raises(
        EstimationError, match=r"expected the model's 3 inputs for each of the 4 scores, found an array"
    ):
        estimator.estimate(np.full(4, 0.2), np.zeros((4, 2)))
    with pytest.raises(EstimationError, match="pass the test split's features in the order of its predictions"):
        fit_binary_estimator(
            np.full(100, 0.2),
            np.r_[np.zeros(50), np.ones(50)],
            booster=object(),
            features=np.zeros((99, 3)),
            feature_names=NAMES,
        )
