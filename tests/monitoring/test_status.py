"""A batch's one status (ok / watch / alert) and the graded severity of its alerts, from constructed
quality, drift and performance results (the rules are in nbops.monitoring.monitor.assess_batch)."""

from __future__ import annotations

import pandas as pd
import pytest

from nbops.monitoring.drift import DriftReport, DriftThresholds, FeatureDrift
from nbops.monitoring.history import read_history
from nbops.monitoring.monitor import AlertRules, assess_batch, watch_level
from nbops.monitoring.quality import ColumnQuality, QualityReport
from nbops.pipeline.retrain import decide

FEATURES = ("age", "income", "region", "purpose")
RULES = AlertRules()  # PSI 0.2, one drifted feature, AUC drop 0.05, calibration error 0.05


def quality(rows: int = 1000, missing: tuple[str, ...] = (), **bad: tuple[str, int]) -> QualityReport:
    """A quality report; ``bad`` maps a column to (kind, count) with kind wrong_type, out_of_range or unseen."""
    columns = []
    for name in FEATURES:
        if name in missing:
            continue
        kind, count = bad.get(name, ("", 0))
        columns.append(
            ColumnQuality(
                name,
                0.0,
                count if kind == "wrong_type" else 0,
                count if kind == "out_of_range" else 0,
                count if kind == "unseen" else 0,
                ["'x'"] if count else [],
            )
        )
    return QualityReport(rows, list(missing), columns)


def drift(scores: dict[str, float] | None = None, prediction: float = 0.01, rules: AlertRules = RULES) -> DriftReport:
    scores = {**dict.fromkeys(FEATURES, 0.01), **(scores or {})}
    t = rules.drift.psi

    def fd(name: str, score: float, kind: str = "numeric") -> FeatureDrift:
        return FeatureDrift(name, kind, "psi", score, score >= t, None, 0.0, 0.0, 0.0)

    features = [fd(n, s) for n, s in scores.items()]
    n = sum(f.drifted for f in features)
    return DriftReport(
        1000, features, fd("prediction", prediction, "prediction"), n >= rules.drift.min_drifted_features, rules.drift
    )


def assess(
    q: QualityReport | None = None,
    d: DriftReport | None = None,
    perf: dict[str, float] | None = None,
    rules: AlertRules = RULES,
    reference: dict[str, float] | None = None,
):
    return assess_batch(
        q or quality(),
        d if d is not None else drift(rules=rules),
        perf,
        "binary",
        reference or {"roc_auc": 0.80},
        rules,
    )


def severities(a) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alert in a.alerts:
        out.setdefault(alert["kind"], []).append(alert["severity"])
    return out


def test_a_clean_batch_is_ok_without_alerts() -> None:
    a = assess()
    assert (a.status, a.alerts) == ("ok", [])
    assert a.reason == "within every limit"


@pytest.mark.parametrize("psi", [0.10, 0.15, 0.199])
def test_psi_below_the_threshold_but_from_the_watch_level_is_watch(psi: float) -> None:
    a = assess(d=drift({"income": psi}))
    assert a.status == "watch" and a.alerts == []
    assert f"income {psi:.3f}" in a.reason and "PSI between 0.1 and 0.2" in a.reason


def test_the_watch_level_is_at_most_half_the_threshold() -> None:
    assert watch_level(0.2) == 0.1 and watch_level(0.1) == 0.05
    rules = AlertRules(DriftThresholds(psi=0.1))
    assert assess(d=drift({"income": 0.07}, rules=rules), rules=rules).status == "watch"
    assert assess(d=drift({"income": 0.04}, rules=rules), rules=rules).status == "ok"


@pytest.mark.parametrize(
    ("psi", "severity"), [(0.20, "warning"), (0.39, "warning"), (0.40, "critical"), (1.96, "critical")]
)
def test_drift_severity_grows_with_the_psi_relative_to_the_threshold(psi: float, severity: str) -> None:
    a = assess(d=drift({"income": psi}))
    assert a.status == "alert"
    assert severities(a) == {"drift": [severity]}
    assert a.reason.startswith(f"{severity}: 1 feature(s) drifted (worst: income at PSI {psi:.2f}")


def test_many_drifted_features_are_critical_even_just_over_the_threshold() -> None:
    assert severities(assess(d=drift({"age": 0.25, "income": 0.22})))["drift"] == ["warning"]
    assert severities(assess(d=drift({"age": 0.25, "income": 0.22, "region": 0.21})))["drift"] == ["critical"]


def test_features_over_the_threshold_without_batch_drift_are_watch() -> None:
    rules = AlertRules(DriftThresholds(psi=0.2, min_drifted_features=2))
    a = assess(d=drift({"income": 0.3}, rules=rules), rules=rules)
    assert a.status == "watch" and a.alerts == []
    assert "fewer than the 2 that make the batch drifted (income)" in a.reason


@pytest.mark.parametrize(
    ("psi", "status", "severity"), [(0.12, "watch", None), (0.25, "alert", "warning"), (0.5, "alert", "critical")]
)
def test_prediction_drift_is_graded(psi: float, status: str, severity: str | None) -> None:
    a = assess(d=drift(prediction=psi))
    assert a.status == status
    assert severities(a).get("prediction_drift") == ([severity] if severity else None)


@pytest.mark.parametrize(
    ("rows", "count", "status", "severity"),
    [(1000, 5, "watch", "info"), (1000, 50, "alert", "warning"), (10_000, 1_212, "alert", "critical")],
)
def test_unseen_categories_are_graded_by_their_share_of_rows(rows: int, count: int, status: str, severity: str) -> None:
    a = assess(q=quality(rows, purpose=("unseen", count)))
    assert a.status == status
    [alert] = a.alerts
    assert (alert["kind"], alert["severity"]) == ("data_quality", severity)
    assert (
        f"'purpose': {count:,} rows with categories not in the schema ({count / rows:.1%} of {rows:,} rows"
        in alert["message"]
    )


@pytest.mark.parametrize("kind", ["wrong_type", "out_of_range"])
def test_bad_values_are_graded_like_unseen_categories(kind: str) -> None:
    assert severities(assess(q=quality(1000, age=(kind, 3)))) == {"data_quality": ["info"]}
    assert severities(assess(q=quality(1000, age=(kind, 300)))) == {"data_quality": ["critical"]}


def test_a_batch_that_cannot_be_compared_is_a_critical_alert() -> None:
    a = assess_batch(quality(missing=("income",)), None, None, "binary", {"roc_auc": 0.8}, RULES)
    assert a.status == "alert"
    assert a.alerts == [{"kind": "data_quality", "severity": "critical", "message": "column 'income' is missing"}]
    assert a.reason == "critical: not comparable: column 'income' is missing"
    empty = assess_batch(QualityReport(0, [], []), None, None, "binary", {}, RULES)
    assert empty.status == "alert" and "no rows" in empty.reason


@pytest.mark.parametrize(
    ("auc", "severity"), [(0.76, None), (0.74, "warning"), (0.71, "warning"), (0.69, "critical"), (0.59, "critical")]
)
def test_performance_alert_severity_is_the_drop_relative_to_the_allowed_drop(auc: float, severity: str | None) -> None:
    a = assess(perf={"roc_auc": auc, "calibration_error": 0.01})
    assert severities(a).get("performance") == ([severity] if severity else None)
    assert a.status == ("alert" if severity else "ok")


@pytest.mark.parametrize(("error", "severity"), [(0.04, None), (0.06, "warning"), (0.11, "critical")])
def test_calibration_alert_is_graded(error: float, severity: str | None) -> None:
    a = assess(perf={"roc_auc": 0.80, "calibration_error": error, "observed_rate": 0.1, "mean_prediction": 0.1})
    assert severities(a).get("calibration") == ([severity] if severity else None)


def test_regression_performance_is_graded_on_the_rmse_increase() -> None:
    rules = AlertRules(max_rmse_increase=0.2)
    warn = assess_batch(quality(), drift(), {"rmse": 1.3}, "regression", {"rmse": 1.0}, rules)
    crit = assess_batch(quality(), drift(), {"rmse": 1.5}, "regression", {"rmse": 1.0}, rules)
    assert severities(warn) == {"performance": ["warning"]} and severities(crit) == {"performance": ["critical"]}


def test_the_worst_signal_decides_and_every_reason_is_given() -> None:
    a = assess(
        q=quality(1000, purpose=("unseen", 3)),
        d=drift({"income": 0.9, "age": 0.15}, prediction=0.3),
        perf={"roc_auc": 0.78, "calibration_error": 0.07},
    )
    assert a.status == "alert"
    assert severities(a) == {
        "data_quality": ["info"],
        "drift": ["critical"],
        "prediction_drift": ["warning"],
        "calibration": ["warning"],
    }
    # critical first, then warnings; watch-level signals do not lower an alert.
    assert a.reason.index("critical:") < a.reason.index("warning:")
    assert "income at PSI 0.90" in a.reason and "calibration error 0.070" in a.reason


def test_retrain_reads_the_same_kinds_and_never_retrains_on_info_or_quality() -> None:
    history = pd.DataFrame(
        [
            {
                "batch_id": "2025-01",
                "month": "2025-01",
                "drifted_features": "income",
                "labels_arrived_at": float("nan"),
            },
            {"batch_id": "2025-02", "month": "2025-02", "drifted_features": "", "labels_arrived_at": float("nan")},
        ]
    )
    drifted = [dict(x, batch_id="2025-01") for x in assess(d=drift({"income": 1.9})).alerts]
    small = [dict(x, batch_id="2025-02") for x in assess(q=quality(1000, purpose=("unseen", 3))).alerts]
    d = decide(history, drifted + small, {"labelled_through": None, "acted_on": []})
    assert d.needed and d.unhandled == {"2025-01": ["drift"]}
    assert any("data-quality alerts on 2025-02 do not trigger" in r for r in d.reasons)


def test_a_history_written_before_statuses_were_graded_reads_back_graded(tmp_path) -> None:
    path = tmp_path / "history.parquet"
    pd.DataFrame(
        [
            {"batch_id": "2025-01", "status": "ok", "alerts": 0},
            {"batch_id": "2025-02", "status": "ok", "alerts": 3},
            {"batch_id": "2025-03", "status": "invalid", "alerts": 1},
            {"batch_id": "2025-04", "status": "unreadable", "rows": 0},
        ]
    ).to_parquet(path)
    history = read_history(path).set_index("batch_id")
    assert history["status"].to_dict() == {"2025-01": "ok", "2025-02": "alert", "2025-03": "alert", "2025-04": "alert"}
    assert (
        "not comparable" in history.loc["2025-03", "status_reason"]
        and "monitor the batch again" in history.loc["2025-02", "status_reason"]
    )
    # Rows graded by this version are left as they are.
    pd.DataFrame([{"batch_id": "2025-05", "status": "watch", "status_reason": "x", "alerts": 1}]).to_parquet(path)
    assert read_history(path)["status"].tolist() == ["watch"]
