"""The batch_score stage's products: a new month scored by the packaged wheel, as a deployment would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.registry.store import Registry
from nbops.runtime import ScoringModel

pytestmark = pytest.mark.slow

ROOT = "build/test"


@pytest.fixture(scope="module")
def products(packaged_project: Path) -> dict:
    root = packaged_project / ROOT
    return {
        "batch": pd.read_parquet(root / "data/batches/batch.parquet"),
        "scored": pd.read_parquet(root / "data/scored/batch_predictions.parquet"),
        "summary": json.loads((root / "reports/batch_score_summary.json").read_text()),
        "package": json.loads((root / "dist/package.json").read_text()),
        "registration": json.loads((root / "models/registration.json").read_text()),
        "root": root,
    }


def _months(values: pd.Series) -> pd.Series:
    """Months as periods, whether stored as 'YYYY-MM' text or as timestamps."""
    return pd.to_datetime(
        values.astype(str) if not pd.api.types.is_datetime64_any_dtype(values) else values
    ).dt.to_period("M")


def test_one_prediction_per_batch_row_in_the_batch_order(products):
    batch, scored = products["batch"], products["scored"]
    assert len(batch) > 0
    assert len(scored) == len(batch)
    assert batch["application_id"].is_unique
    assert scored["application_id"].astype(str).tolist() == batch["application_id"].astype(str).tolist()


def test_scores_are_probabilities_from_the_packaged_version(products):
    scores = products["scored"]["prediction"].to_numpy(dtype=float)
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.std() > 0, "every row got the same score"
    production = Registry(products["registration"]["registry"]).alias("production")
    assert products["package"]["model_version"] == production.version
    assert (products["scored"]["model_version"] == production.version).all()


def test_scores_are_what_the_production_model_gives_the_batch(products):
    production = Registry(products["registration"]["registry"]).alias("production")
    model = ScoringModel.from_folder(production.path)
    expected = model.predict(products["batch"])
    np.testing.assert_allclose(products["scored"]["prediction"].to_numpy(dtype=float), expected, rtol=0, atol=1e-12)


def test_summary_agrees_with_the_predictions_file(products):
    summary, scores = products["summary"], products["scored"]["prediction"]
    assert summary["rows"] == len(scores) == len(products["batch"])
    assert summary["mean_prediction"] == pytest.approx(float(scores.mean()), rel=1e-12, abs=1e-15)
    quantiles = {float(q): v for q, v in summary["quantiles"].items()}
    assert quantiles, "the summary has no quantiles"
    for q, value in quantiles.items():
        assert value == pytest.approx(float(scores.quantile(q)), rel=1e-12, abs=1e-15), q
    assert sorted(quantiles.values()) == [quantiles[q] for q in sorted(quantiles)]
    assert summary["wheel"] == Path(products["package"]["wheel"]).name
    assert Path(summary["batch"]) == products["root"] / "data/batches/batch.parquet"


def test_the_batch_is_a_month_after_all_training_data(products):
    root = products["root"]
    batch_months = _months(products["batch"]["month"])
    assert batch_months.notna().all()
    train_months = _months(pd.read_parquet(root / "data/processed/train.parquet", columns=["month"])["month"])
    assert train_months.notna().all() and len(train_months) > 0
    assert batch_months.min() > train_months.max()
    # and after the held-out months too: the batch is new data, not a slice of the history
    test_months = _months(pd.read_parquet(root / "data/processed/test.parquet", columns=["month"])["month"])
    assert batch_months.min() > test_months.max()
    # the scored file carries the batch's month through unchanged
    assert _months(products["scored"]["month"]).tolist() == batch_months.tolist()
