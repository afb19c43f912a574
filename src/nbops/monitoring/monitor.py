"""Monitor one batch: data quality, drift against the reference profile, performance once labels
arrive, and the alerts that follow. A bad batch (missing columns, wrong types, no rows) is reported
as a data-quality alert, never a crash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbops.monitoring.drift import DriftReport, DriftThresholds, compare
from nbops.monitoring.performance import batch_performance
from nbops.monitoring.profile import ReferenceProfile
from nbops.monitoring.quality import QualityReport, check_quality
from nbops.runtime.model import ScoringModel


@dataclass(frozen=True)
class AlertRules:
    """Thresholds for alerts (from env.yaml)."""

    drift: DriftThresholds = field(default_factory=DriftThresholds)
    max_auc_drop: float = 0.05          # alert when a batch's ROC AUC is this far below the test AUC
    max_calibration_error: float = 0.05
    max_rmse_increase: float = 0.2      # relative to the test RMSE


@dataclass
class BatchMonitoring:
    """Everything known about one batch."""

    batch_id: str
    month: str | None
    quality: QualityReport
    drift: DriftReport | None
    performance: dict[str, float] | None
    alerts: list[dict[str, Any]]
    row: dict[str, Any]


def score_for_monitoring(model: ScoringModel, batch: pd.DataFrame) -> np.ndarray:
    """Predictions for every row, bad ones included (unseen categories count as missing here):
    monitoring must describe the batch as it is, not refuse it."""
    return model.booster.predict(model.transform(batch))


def monitor_batch(
    batch_id: str,
    batch: pd.DataFrame,
    *,
    model: ScoringModel,
    profile: ReferenceProfile,
    reference_metrics: dict[str, float],
    rules: AlertRules,
    target: str | None = None,
    predictions: np.ndarray | None = None,
    month: str | None = None,
) -> BatchMonitoring:
    """Quality, drift, performance (when ``target`` labels are present) and alerts for one batch."""
    quality = check_quality(batch, model.schema)
    if len(batch) == 0 or quality.missing_columns:
        return summarise_batch(batch_id, month, model, quality, None, None, None, reference_metrics, rules)
    if predictions is None:
        predictions = score_for_monitoring(model, batch)
    drift = compare(profile, batch, rules.drift, predictions)
    labels = batch[target].to_numpy(dtype=float, na_value=np.nan) if target is not None and target in batch.columns else None
    return summarise_batch(batch_id, month, model, quality, drift, predictions, labels, reference_metrics, rules)


def summarise_batch(
    batch_id: str,
    month: str | None,
    model: ScoringModel,
    quality: QualityReport,
    drift: DriftReport | None,
    predictions: np.ndarray | None,
    labels: np.ndarray | None,
    reference_metrics: dict[str, float],
    rules: AlertRules,
) -> BatchMonitoring:
    """The history row and the alerts of a batch from what was measured on it (in one process or on
    a cluster): quality, drift (None for a batch too broken to compare), predictions and labels."""
    alerts: list[dict[str, Any]] = []
    row: dict[str, Any] = {"batch_id": batch_id, "month": month, "rows": quality.rows, "model_version": model.version, "monitored_at": time.time()}
    for issue in quality.issues:
        alerts.append({"kind": "data_quality", "severity": "error" if ("missing" in issue or "no rows" in issue) else "warning", "message": issue})
    row["quality_issues"] = len(quality.issues)
    if drift is None or predictions is None:
        row["status"] = "invalid"
        return BatchMonitoring(batch_id, month, quality, None, None, alerts, row)
    row.update(
        status="ok",
        dataset_drift=drift.dataset_drift,
        drifted_features=",".join(drift.drifted),
        n_drifted=len(drift.drifted),
        mean_prediction=float(np.mean(predictions)),
        prediction_psi=drift.prediction.score if drift.prediction else None,
        **{f"psi__{f.name}": f.score for f in drift.features},
        **{f"missing__{c.name}": c.missing_rate for c in quality.columns},
    )
    if drift.dataset_drift:
        alerts.append({"kind": "drift", "severity": "warning", "message": f"dataset drift: {len(drift.drifted)} feature(s) over PSI {rules.drift.psi:g}: " + ", ".join(f"{f.name} ({f.score:.2f})" for f in drift.features if f.drifted)})
    if drift.prediction is not None and drift.prediction.drifted:
        alerts.append({"kind": "prediction_drift", "severity": "warning", "message": f"prediction distribution moved (PSI {drift.prediction.score:.2f})"})
    performance = None
    if labels is not None:
        performance = batch_performance(model.task_type, labels, predictions)
        if performance is not None:
            row.update({f"perf__{k}": v for k, v in performance.items()})
            alerts.extend(performance_alerts(model.task_type, performance, reference_metrics, rules))
    row["alerts"] = len(alerts)
    return BatchMonitoring(batch_id, month, quality, drift, performance, alerts, row)


def performance_alerts(task_type: str, performance: dict[str, float], reference: dict[str, float], rules: AlertRules) -> list[dict[str, Any]]:
    """Alerts for a batch whose labelled performance fell below the model's test performance."""
    out = []
    if task_type == "binary":
        auc, ref = performance.get("roc_auc"), reference.get("roc_auc")
        if auc is not None and ref is not None and auc < ref - rules.max_auc_drop:
            out.append({"kind": "performance", "severity": "error", "message": f"ROC AUC {auc:.3f} is {ref - auc:.3f} below the test AUC {ref:.3f}"})
        ce = performance.get("calibration_error")
        if ce is not None and ce > rules.max_calibration_error:
            out.append({"kind": "calibration", "severity": "warning", "message": f"calibration error {ce:.3f} (observed rate {performance.get('observed_rate', float('nan')):.3f}, mean prediction {performance.get('mean_prediction', float('nan')):.3f})"})
    else:
        rmse, ref = performance.get("rmse"), reference.get("rmse")
        if rmse is not None and ref and rmse > ref * (1 + rules.max_rmse_increase):
            out.append({"kind": "performance", "severity": "error", "message": f"RMSE {rmse:.3f} is {rmse / ref - 1:.0%} above the test RMSE {ref:.3f}"})
    return out
