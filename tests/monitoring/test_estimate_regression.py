"""Direct loss estimation for regression models (nbops.monitoring.estimate.RegressionEstimator): on
data whose noise grows with an input, a shift of that input raises the estimated MAE and RMSE as it
raises the realised ones, the band covers them and shrinks with the rows, it is stored as JSON and
gives the same estimate back, it refuses what it cannot use; an estimated RMSE rise is an alert."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from nbops.monitoring.estimate import (
    EstimationError,
    MetricEstimate,
    PerformanceEstimate,
    RegressionEstimator,
    fit_regression_estimator,
    load_estimator,
)
from nbops.monitoring.monitor import AlertRules, assess_batch
from nbops.monitoring.quality import QualityReport
from nbops.runtime.integrity import ESTIMATOR_FILE


def table(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two inputs; the target's noise grows with the first. ``shift`` moves the first towards 1 within
    the range the reference covers (the relation stays): beyond it the loss models extrapolate flat,
    and the estimate is low, as any estimate from a reference is."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(0, 1, n) ** (1 - shift), rng.normal(size=n)])
    y = 2 * x[:, 1] + rng.normal(0, 0.2 + x[:, 0], n)
    return x, y


@pytest.fixture(scope="module")
def fitted() -> tuple[lgb.Booster, RegressionEstimator]:
    x, y = table(8_000, seed=1)
    params = {"objective": "regression", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 0}
    model = lgb.train(params, lgb.Dataset(x, y), num_boost_round=60)
    xr, yr = table(6_000, seed=2)  # the test split: not the training rows
    return model, fit_regression_estimator(xr, model.predict(xr), yr)


def realised(model: lgb.Booster, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    e = y - model.predict(x)
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2)))}


def test_a_shift_into_noisier_inputs_is_estimated_and_covered(fitted: tuple[lgb.Booster, RegressionEstimator]) -> None:
    model, estimator = fitted
    covered = {"mae": 0, "rmse": 0}
    for seed in range(10):
        x, y = table(5_000, seed=100 + seed, shift=0.6)
        est = estimator.estimate(model.predict(x), x)
        truth = realised(model, x, y)
        for name in covered:
            m = est.metrics[name]
            assert m.value == pytest.approx(truth[name], rel=0.06), (name, m, truth)
            covered[name] += m.low <= truth[name] <= m.high
        assert est.metrics["mae"].value > estimator.reference["mae"] * 1.15  # it saw the noisier inputs
    assert covered["mae"] >= 8 and covered["rmse"] >= 8, covered


def test_band_shrinks_with_rows_and_json_gives_the_same_estimate(
    fitted: tuple[lgb.Booster, RegressionEstimator], tmp_path: Path
) -> None:
    model, estimator = fitted
    widths = []
    for n in (300, 3_000, 30_000):
        x, _ = table(n, seed=7)
        m = estimator.estimate(model.predict(x), x).metrics["mae"]
        widths.append(m.high - m.low)
    assert widths[0] > widths[1] > widths[2] > 0
    (tmp_path / ESTIMATOR_FILE).write_text(json.dumps(estimator.to_dict()))
    loaded = load_estimator(tmp_path)
    assert isinstance(loaded, RegressionEstimator)
    x, _ = table(1_000, seed=8)
    assert loaded.estimate(model.predict(x), x).to_dict() == estimator.estimate(model.predict(x), x).to_dict()


def test_bad_input_is_refused(fitted: tuple[lgb.Booster, RegressionEstimator]) -> None:
    model, estimator = fitted
    x, y = table(200, seed=3)
    with pytest.raises(EstimationError, match="needs the model's inputs beside its 200 predictions, found none"):
        estimator.estimate(model.predict(x))
    with pytest.raises(EstimationError, match="at least 50 labelled rows"):
        fit_regression_estimator(x[:20], y[:20], y[:20])
    with pytest.raises(EstimationError, match="one prediction and one target per row"):
        fit_regression_estimator(x, y, y[:100])
    with pytest.raises(EstimationError, match="finite targets"):
        fit_regression_estimator(x, y, np.where(np.arange(200) == 5, np.nan, y))


def test_an_estimated_rmse_rise_is_an_alert_while_labels_are_pending() -> None:
    est = PerformanceEstimate(5_000, float("nan"), {"rmse": MetricEstimate(1.3, 1.25, 1.35, 0.025)})
    quality, reference = QualityReport(5_000, [], []), {"rmse": 1.0}
    alerts = assess_batch(quality, None, None, "regression", reference, AlertRules(max_rmse_increase=0.2), est).alerts
    assert [(a["kind"], a["severity"]) for a in alerts] == [("estimated_performance", "warning")]
    assert alerts[0]["message"].startswith(
        "estimated RMSE 1.300 (band 1.250-1.350, labels pending): the whole band is above the alert level 1.200"
    )
    fine = PerformanceEstimate(5_000, float("nan"), {"rmse": MetricEstimate(1.1, 1.05, 1.15, 0.025)})
    assert not assess_batch(quality, None, None, "regression", reference, AlertRules(), fine).alerts
    # Past the level, but with a band across it: not yet a rise.
    across = PerformanceEstimate(5_000, float("nan"), {"rmse": MetricEstimate(1.25, 1.15, 1.35, 0.05)})
    assert not assess_batch(quality, None, None, "regression", reference, AlertRules(), across).alerts
