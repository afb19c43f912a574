"""Performance estimated before the labels arrive (CBPE, nbops.monitoring.estimate): on scores whose
calibration is known, the estimate matches the realised metric, its band covers it and shrinks with
the batch's rows; bad input is refused with a message saying what to do; stored as JSON it gives the
same estimate; an estimated drop is an alert that the retrain decision acts on, saying it is an estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nbops.monitoring.estimate import (
    BinaryEstimator,
    EstimationError,
    MetricEstimate,
    PerformanceEstimate,
    confusion_metrics,
    expected_auc,
    fit_binary_estimator,
    load_estimator,
)
from nbops.monitoring.monitor import AlertRules, assess_batch
from nbops.monitoring.quality import QualityReport
from nbops.pipeline.retrain import decide
from nbops.runtime.integrity import ESTIMATOR_FILE


def calibrated(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are true probabilities (labels drawn from them); ``shift`` moves the inputs (the
    logit's mean), which changes the scores' distribution but not P(label | score)."""
    rng = np.random.default_rng(seed)
    score = 1 / (1 + np.exp(-(rng.normal(-1.5 + shift, 1.3, n))))
    return score, (rng.random(n) < score).astype(float)


@pytest.fixture(scope="module")
def estimator() -> BinaryEstimator:
    s, y = calibrated(20_000, seed=1)
    return fit_binary_estimator(s, y)


def test_expected_auc_of_certain_labels_is_the_realised_auc() -> None:
    s = np.random.default_rng(0).random(500)
    y = (np.random.default_rng(1).random(500) < s).astype(float)
    s[::7] = s[1::7][: len(s[::7])]  # ties
    assert expected_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_estimate_on_its_own_reference_equals_the_realised_metrics() -> None:
    s, y = calibrated(20_000, seed=1)
    est = fit_binary_estimator(s, y).estimate(s)
    assert est.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, s), abs=0.005)
    realised = confusion_metrics(s >= 0.5, y)
    for name in ("precision", "recall", "accuracy", "f1"):
        assert est.metrics[name].value == pytest.approx(float(realised[name]), abs=0.01), name


def test_estimate_follows_a_covariate_shift_and_its_band_covers_the_realised_auc(estimator: BinaryEstimator) -> None:
    covered, errors = 0, []
    for seed in range(20):
        s, y = calibrated(5_000, seed=100 + seed, shift=1.0)  # riskier applicants: AUC changes
        m = estimator.estimate(s).metrics["roc_auc"]
        realised = roc_auc_score(y, s)
        errors.append(abs(m.value - realised))
        covered += m.low <= realised <= m.high
    assert np.mean(errors) < 0.012
    assert covered >= 18  # of 20 (a 95% band)


def test_band_shrinks_with_the_batch_rows(estimator: BinaryEstimator) -> None:
    widths = []
    for n in (500, 5_000, 50_000):
        m = estimator.estimate(calibrated(n, seed=7)[0]).metrics["roc_auc"]
        widths.append(m.high - m.low)
        assert m.low < m.value < m.high
    assert widths[0] > widths[1] > widths[2] > 0


def test_stored_as_json_it_estimates_the_same(estimator: BinaryEstimator, tmp_path: Path) -> None:
    (tmp_path / ESTIMATOR_FILE).write_text(json.dumps(estimator.to_dict()))
    loaded = load_estimator(tmp_path)
    assert loaded is not None
    s = calibrated(3_000, seed=9)[0]
    assert loaded.estimate(s).to_dict() == estimator.estimate(s).to_dict()
    assert load_estimator(tmp_path / "elsewhere") is None


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        (np.full(30, 0.5), np.r_[np.zeros(15), np.ones(15)], "at least 50 labelled rows"),
        (np.full(200, 0.5), np.zeros(200), "at least 10 rows of each class"),
        (np.full(200, 0.5), np.r_[np.zeros(100), np.full(100, 2.0)], "expected labels 0 or 1"),
        (np.full(200, 1.5), np.r_[np.zeros(100), np.ones(100)], "probabilities in [0, 1]"),
        (np.full(200, 0.5), np.zeros(150), "one label per score"),
    ],
)
def test_bad_reference_is_refused(scores: np.ndarray, labels: np.ndarray, expected: str) -> None:
    with pytest.raises(EstimationError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        fit_binary_estimator(scores, labels)


def test_bad_batch_and_bad_file_are_refused(estimator: BinaryEstimator, tmp_path: Path) -> None:
    with pytest.raises(EstimationError, match="no rows"):
        estimator.estimate(np.array([]))
    with pytest.raises(EstimationError, match=r"1 of 3 outside \(first: nan\)"):
        estimator.estimate(np.array([0.1, np.nan, 0.3]))
    (tmp_path / ESTIMATOR_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(EstimationError, match="expected a performance estimator of format 'nbops-cbpe/2'"):
        load_estimator(tmp_path)


def an_estimate(auc: float, half_width: float = 0.02) -> PerformanceEstimate:
    band = MetricEstimate(auc, auc - half_width, auc + half_width, half_width / 2)
    return PerformanceEstimate(5_000, 0.5, {"roc_auc": band})


def test_an_estimated_drop_is_an_alert_only_while_labels_are_pending() -> None:
    rules, reference, quality = AlertRules(max_auc_drop=0.05), {"roc_auc": 0.82}, QualityReport(5_000, [], [])
    pending = assess_batch(quality, None, None, "binary", reference, rules, an_estimate(0.74))
    assert [(a["kind"], a["severity"]) for a in pending.alerts] == [("estimated_performance", "warning")]
    assert pending.alerts[0]["message"].startswith(
        "estimated ROC AUC 0.740 (band 0.720-0.760, labels pending): the whole band is below the alert level 0.770"
    )
    assert pending.status == "alert"
    assert not assess_batch(quality, None, None, "binary", reference, rules, an_estimate(0.79)).alerts
    # The estimate is past the level, but its band reaches above it: chance, not yet a drop.
    assert not assess_batch(quality, None, None, "binary", reference, rules, an_estimate(0.76)).alerts
    critical = assess_batch(quality, None, None, "binary", reference, rules, an_estimate(0.68)).alerts
    assert [a["severity"] for a in critical] == ["critical"]  # even the band's top is 0.12 below the test AUC
    arrived = assess_batch(quality, None, {"roc_auc": 0.80}, "binary", reference, rules, an_estimate(0.74))
    assert not arrived.alerts  # the labels decide once they are here


def test_retrain_acts_on_an_estimate_and_says_so() -> None:
    import pandas as pd

    history = pd.DataFrame([{"batch_id": "2025-03", "month": "2025-03", "labels_arrived_at": np.nan}])
    alerts = [{"batch_id": "2025-03", "kind": "estimated_performance", "message": "estimated ROC AUC 0.740 ..."}]
    d = decide(history, alerts, {"labelled_through": None, "acted_on": []})
    assert d.needed
    assert d.reasons == [
        "alert not acted on yet: 2025-03: estimated performance, acting on an estimate (labels not arrived yet) "
        "(estimated ROC AUC 0.740 ...)"
    ]
