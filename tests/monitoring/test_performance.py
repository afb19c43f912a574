"""nbops.monitoring.performance: metrics of a batch on the rows whose labels have arrived, the
expected calibration error over score deciles, and nothing while no label is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from nbops.monitoring.performance import batch_performance


def _scores(n: int = 2_000, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.6, n)
    y = (rng.random(n) < p).astype(float)  # calibrated by construction
    return y, p


def test_binary_metrics_use_only_the_labelled_rows() -> None:
    y, p = _scores()
    partly = y.copy()
    partly[::4] = np.nan  # a quarter of the labels have not arrived
    got = batch_performance("binary", partly, p)
    known = ~np.isnan(partly)
    assert got is not None and got["labelled_rows"] == known.sum() == 1_500
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y[known], p[known]), abs=1e-12)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y[known], p[known]), abs=1e-12)
    assert got["observed_rate"] == pytest.approx(y[known].mean())


def test_calibration_error_is_the_weighted_gap_over_score_deciles() -> None:
    y, p = _scores()
    calibrated = batch_performance("binary", y, p)
    overconfident = batch_performance("binary", y, np.clip(p * 1.6, 0, 1))
    assert calibrated is not None and overconfident is not None
    order = np.argsort(p)
    expected = sum(abs(y[b].mean() - p[b].mean()) * len(b) for b in np.array_split(order, 10)) / len(p)
    assert calibrated["calibration_error"] == pytest.approx(expected, abs=1e-12)
    assert calibrated["calibration_error"] < 0.03 < overconfident["calibration_error"]


def test_regression_reports_errors_not_calibration() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(100, 10, 500)
    p = y + rng.normal(0, 2, 500)
    got = batch_performance("regression", y, p)
    assert got is not None
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(y - p)))
    assert "calibration_error" not in got and "observed_rate" not in got and got["labelled_rows"] == 500


def test_no_label_yet_is_no_performance_and_a_few_labels_still_count() -> None:
    y, p = _scores(n=40)
    assert batch_performance("binary", np.full(40, np.nan), p) is None
    few = np.full(40, np.nan)
    few[:3] = y[:3]  # fewer rows than deciles
    got = batch_performance("binary", few, p)
    assert got is not None and got["labelled_rows"] == 3 and np.isfinite(got["calibration_error"])
