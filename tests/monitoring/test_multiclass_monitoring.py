"""Monitoring a multiclass model: the reference profile holds each class's probability, prediction
drift is measured per class (and names the class), data drift is as for any model, and performance
once labels arrive is log loss, accuracy and macro F1, with an alert when log loss rises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from nbops.monitoring.drift import compare
from nbops.monitoring.monitor import (
    AlertRules,
    monitor_batch,
    performance_alerts,
    performance_limit,
    performance_metric,
)
from nbops.monitoring.performance import batch_performance
from nbops.monitoring.profile import ReferenceProfile, build_reference_profile
from nbops.pipeline.runners.monitor import logged_predictions
from tests.support.multiclass import MulticlassModel, multiclass_table, train_multiclass_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("multiclass-monitoring"), 2000)


@pytest.fixture(scope="module")
def profile(trained: MulticlassModel) -> ReferenceProfile:
    t = trained.transform
    p = trained.booster.predict(t.transform(trained.train))
    return build_reference_profile(trained.train, t.numeric, list(t.categorical), p, trained.schema.classes)


def test_the_reference_profile_holds_each_class_probability(profile, trained):
    classes = profile.prediction["classes"]
    assert list(classes) == trained.schema.classes
    p = trained.booster.predict(trained.transform.transform(trained.train))
    for i, name in enumerate(trained.schema.classes):
        assert classes[name]["mean"] == pytest.approx(p[:, i].mean())
        assert len(classes[name]["edges"]) == 9
    again = ReferenceProfile.from_dict(profile.to_dict())  # stored as JSON with the version
    assert list(again.prediction["classes"]) == trained.schema.classes


def test_prediction_drift_is_measured_per_class_and_names_the_class_that_moved(profile, trained):
    batch = trained.test
    p = trained.booster.predict(trained.transform.transform(batch))
    steady = compare(profile, batch, predictions=p)
    assert [f.name for f in steady.class_predictions] == [f"prediction[{c}]" for c in trained.schema.classes]
    assert steady.prediction is not None and steady.prediction.score == max(f.score for f in steady.class_predictions)
    moved = p.copy()
    moved[:, 3] += 0.5  # the model suddenly favours 'premium'
    moved /= moved.sum(axis=1, keepdims=True)
    shifted = compare(profile, batch, predictions=moved)
    worst = max(shifted.class_predictions, key=lambda f: f.score)
    assert worst.name == "prediction[premium]" and worst.drifted
    assert shifted.prediction is not None and shifted.prediction.drifted
    alerts = _monitor(trained, profile, batch, None, predictions=moved).alerts
    (alert,) = [a for a in alerts if a["kind"] == "prediction_drift"]
    assert alert["message"].startswith("predicted probabilities moved for ") and "premium (PSI " in alert["message"]


def _monitor(trained: MulticlassModel, profile: ReferenceProfile, batch: pd.DataFrame, target: str | None, **kw):
    reference = {"log_loss": 0.9, "accuracy": 0.6}
    return monitor_batch(
        "2025-01",
        batch,
        model=trained.scoring_model(),
        profile=profile,
        reference_metrics=reference,
        rules=AlertRules(),
        target=target,
        month="2025-01",
        **kw,
    )


def test_a_labelled_batch_with_raw_text_labels_gets_log_loss_accuracy_and_macro_f1(trained, profile):
    batch = multiclass_table(800, seed=21, start="2025-01", months=1)  # a new month, labels as the user has them
    result = _monitor(trained, profile, batch, "plan")
    p = trained.booster.predict(trained.transform.transform(batch))
    y = np.array([trained.schema.classes.index(v) for v in batch["plan"]])
    row = result.row
    assert row["labels"] == "arrived"
    assert row["perf__log_loss"] == pytest.approx(skm.log_loss(y, p, labels=range(4)), rel=1e-9)
    assert row["perf__accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))
    assert row["perf__f1_macro"] == pytest.approx(skm.f1_score(y, p.argmax(axis=1), average="macro"))
    for i, name in enumerate(trained.schema.classes):
        assert row[f"mean_prediction__{name}"] == pytest.approx(p[:, i].mean())
        assert row[f"prediction_psi__{name}"] >= 0
    assert "mean_prediction" not in row  # a mean over all classes' probabilities means nothing
    assert {"psi__usage_hours", "psi__region"} <= set(row)  # data drift as for any model


def test_without_labels_the_batch_waits_for_them(trained, profile):
    batch = multiclass_table(300, seed=22, start="2025-02", months=1).drop(columns=["plan"])
    result = _monitor(trained, profile, batch, None)
    assert result.row["labels"] == "pending" and "perf__log_loss" not in result.row


def test_log_loss_above_the_test_log_loss_plus_the_allowed_increase_is_an_alert():
    rules = AlertRules(max_log_loss_increase=0.2)
    reference = {"log_loss": 0.8, "accuracy": 0.65}
    assert performance_limit("multiclass", reference, rules) == ("log_loss", pytest.approx(0.96))
    assert performance_metric("multiclass") == "perf__log_loss"
    assert performance_alerts("multiclass", {"log_loss": 0.95, "accuracy": 0.6}, reference, rules) == []
    (alert,) = performance_alerts("multiclass", {"log_loss": 1.0, "accuracy": 0.55}, reference, rules)
    assert alert["kind"] == "performance" and alert["severity"] == "warning"
    assert "log loss 1.000 is 25% above the test log loss 0.800 (alert above 0.960)" in alert["message"]
    assert "accuracy 0.550 against 0.650 on test" in alert["message"]
    (worse,) = performance_alerts("multiclass", {"log_loss": 1.2}, reference, rules)
    assert worse["severity"] == "critical"  # 50% up: twice the allowed increase


def test_batch_performance_uses_only_the_labelled_rows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600).astype(float)
    p = rng.dirichlet([1, 1, 1], 600)
    y[::3] = np.nan
    got = batch_performance("multiclass", y, p)
    known = ~np.isnan(y)
    assert got is not None and got["labelled_rows"] == known.sum()
    assert got["accuracy"] == pytest.approx(np.mean(p[known].argmax(axis=1) == y[known]))
    assert batch_performance("multiclass", np.full(5, np.nan), p[:5]) is None


def test_the_serving_logs_probabilities_are_read_back_in_class_order(trained):
    m = trained.scoring_model()
    frame = pd.DataFrame({"proba_premium": [0.1], "proba_basic": [0.6], "proba_plus": [0.2], "proba_business": [0.1]})
    assert logged_predictions(frame, m).tolist() == [[0.6, 0.1, 0.2, 0.1]]
    assert logged_predictions(frame.drop(columns=["proba_plus"]), m) is None  # then monitoring scores itself
