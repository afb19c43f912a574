"""Monitor one batch: data quality, drift against the reference profile, performance once labels
arrive, and the alerts that follow. A bad batch (missing columns, wrong types, no rows) is reported
as a data-quality alert, never a crash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbops.modeling.metrics import MONITORED_METRIC
from nbops.monitoring.drift import WATCH_PSI as WATCH_PSI  # re-exported: its home is nbops.monitoring.drift
from nbops.monitoring.drift import DriftReport, DriftThresholds, FeatureDrift, compare
from nbops.monitoring.drift import watch_level as watch_level
from nbops.monitoring.estimate import (
    BinaryEstimator,
    Estimator,
    MulticlassEstimator,
    PerformanceEstimate,
    RegressionEstimator,
)
from nbops.monitoring.performance import batch_performance
from nbops.monitoring.profile import ReferenceProfile
from nbops.monitoring.quality import QualityReport, check_quality
from nbops.runtime.model import ScoringModel


@dataclass(frozen=True)
class AlertRules:
    """Thresholds for alerts (from env.yaml)."""

    drift: DriftThresholds = field(default_factory=DriftThresholds)
    max_auc_drop: float = 0.05  # alert when a batch's ROC AUC is this far below the test AUC
    max_calibration_error: float = 0.05
    max_rmse_increase: float = 0.2  # relative to the test RMSE
    max_log_loss_increase: float = 0.2  # multiclass: relative to the test log loss


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
    estimate: PerformanceEstimate | None = None


def score_for_monitoring(model: ScoringModel, batch: pd.DataFrame) -> np.ndarray:
    """Predictions for every row, bad ones included (unseen categories count as missing here):
    monitoring must describe the batch as it is, not refuse it."""
    return np.asarray(model.booster.predict(model.transform(batch)))


def with_derived_features(model: ScoringModel, batch: pd.DataFrame) -> pd.DataFrame:
    """The batch with the model's derived features computed from its raw columns, so that their drift
    is measured like any feature's (the reference profile has them)."""
    return model.feature_transform.with_derived(batch)


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
    estimator: Estimator | None = None,
) -> BatchMonitoring:
    """Quality, drift, performance (when ``target`` labels are present), the performance estimated
    without labels (when the version has an ``estimator``) and alerts for one batch."""
    quality = check_quality(batch, model.schema)
    if len(batch) == 0 or quality.missing_columns:
        return summarise_batch(batch_id, month, model, quality, None, None, None, reference_metrics, rules)
    features = None
    # The inputs serve the regression estimator's loss models and the binary one's reference gaps.
    wants_inputs = isinstance(estimator, RegressionEstimator) or (
        isinstance(estimator, BinaryEstimator | MulticlassEstimator) and estimator.gaps is not None
    )
    if predictions is None or wants_inputs:
        features = model.transform(batch)
    if predictions is None:
        predictions = np.asarray(model.booster.predict(features))
    drift = compare(profile, with_derived_features(model, batch), rules.drift, predictions)
    labels = model.label_codes(batch[target]) if target is not None and target in batch.columns else None
    return summarise_batch(
        batch_id,
        month,
        model,
        quality,
        drift,
        predictions,
        labels,
        reference_metrics,
        rules,
        estimator=estimator,
        features=features,
    )


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
    *,
    estimator: Estimator | None = None,
    features: np.ndarray | None = None,
) -> BatchMonitoring:
    """The history row and the alerts of a batch from what was measured on it (in one process or on
    a cluster): quality, drift (None for a batch too broken to compare), predictions and labels; with
    an ``estimator`` also the performance estimated without labels (``est__roc_auc`` with
    ``est__roc_auc_low`` / ``_high`` ..., ``est__log_loss`` for a multiclass model, ``est__rmse`` for a
    regression one), recorded whether the labels arrived or not."""
    row: dict[str, Any] = {
        "batch_id": batch_id,
        "month": month,
        "rows": quality.rows,
        "model_version": model.version,
        "monitored_at": time.time(),
    }
    row["quality_issues"] = len(quality.issues)
    performance = None
    estimate = None
    if drift is None or predictions is None:
        drift = None  # too broken to compare: no drift, no performance
    else:
        p = np.asarray(predictions, dtype=np.float64)
        # A multiclass model: each class's mean probability and the drift of its probability.
        classes = [str(c) for c in model.classes] if model.classes is not None and p.ndim == 2 else []
        row.update(
            dataset_drift=drift.dataset_drift,
            drifted_features=",".join(drift.drifted),
            n_drifted=len(drift.drifted),
            max_psi=max((f.score for f in drift.features), default=0.0),
            **({"mean_prediction": float(np.mean(p))} if not classes else {}),
            **{f"mean_prediction__{c}": float(np.mean(p[:, i])) for i, c in enumerate(classes)},
            prediction_psi=drift.prediction.score if drift.prediction else None,
            **{
                f"prediction_psi__{f.name.removeprefix('prediction[').removesuffix(']')}": f.score
                for f in drift.class_predictions
            },
            **{f"psi__{f.name}": f.score for f in drift.features},
            # The levels of each feature at this batch's size (raised above psi_threshold for a small batch).
            psi_threshold=drift.psi_threshold,
            **{f"psi_threshold__{f.name}": levels_of(f, rules)[0] for f in drift.features},
            **{f"psi_watch__{f.name}": levels_of(f, rules)[1] for f in drift.features},
            **{f"missing__{c.name}": c.missing_rate for c in quality.columns},
        )
        if isinstance(estimator, BinaryEstimator) and model.task_type == "binary" and p.ndim == 1 and len(p):
            finite = np.isfinite(p)  # without the inputs (the dask engine), no reference gaps: plain CBPE
            estimate = estimator.estimate(p[finite], None if features is None else np.asarray(features)[finite])
        elif isinstance(estimator, MulticlassEstimator) and p.ndim == 2 and len(p):
            rows = np.isfinite(p).all(axis=1)
            estimate = estimator.estimate(p[rows], None if features is None else np.asarray(features)[rows])
        elif isinstance(estimator, RegressionEstimator) and features is not None and len(p):
            finite = np.isfinite(p)  # the loss models need the inputs (the dask engine does not keep them)
            estimate = estimator.estimate(p[finite], np.asarray(features)[finite])
        if estimate is not None:
            row.update(estimate.history_columns())
        if labels is not None:
            performance = batch_performance(model.task_type, labels, predictions)
        if performance is not None:
            row.update({f"perf__{k}": v for k, v in performance.items()})
        row["labels"] = "arrived" if performance is not None else "pending"
    assessment = assess_batch(quality, drift, performance, model.task_type, reference_metrics, rules, estimate)
    row.update(status=assessment.status, status_reason=assessment.reason, alerts=len(assessment.alerts))
    return BatchMonitoring(batch_id, month, quality, drift, performance, assessment.alerts, row, estimate)


# --------------------------------------------------------------------------- status and severity

STATUSES = ("ok", "watch", "alert")
SEVERITIES = ("info", "warning", "critical")
CRITICAL_FACTOR = 2.0  # an alert is critical at this multiple of its threshold
MANY_DRIFTED = 3  # this many drifted features (or twice min_drifted_features) is critical
QUALITY_WATCH_SHARE = 0.01  # bad values in under 1% of the rows: info (watch)
QUALITY_CRITICAL_SHARE = 0.10  # in 10% of the rows or more: critical


def levels_of(f: FeatureDrift, rules: AlertRules) -> tuple[float, float]:
    """(alert, watch) PSI of a feature for its batch: the levels drift measured at the batch's size, or
    the configured ones for a report without them."""
    alert = f.threshold if f.threshold is not None else rules.drift.psi
    return alert, f.watch if f.watch is not None else watch_level(alert)


def threshold_text(levels: list[float], configured: float, rows: int) -> str:
    """'0.2', or '0.34 for 98 rows (0.2 configured)' when the batch's size raised the threshold."""
    top = max(levels, default=configured)
    if top <= configured:
        return f"{configured:g}"
    low = min(levels)
    shown = f"{top:.2f}" if abs(top - low) < 0.005 else f"{low:.2f}-{top:.2f}"
    return f"{shown} for {rows:,} rows ({configured:g} configured)"


def graded(value: float, threshold: float) -> str:
    """'critical' at CRITICAL_FACTOR times ``threshold`` or more, else 'warning' (the alert fired)."""
    return "critical" if value >= CRITICAL_FACTOR * threshold else "warning"


@dataclass
class Assessment:
    """A batch's alerts and its one status, with the reasons in a sentence."""

    alerts: list[dict[str, Any]]
    status: str
    reasons: list[str]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def assess_batch(
    quality: QualityReport,
    drift: DriftReport | None,
    performance: dict[str, float] | None,
    task_type: str,
    reference_metrics: dict[str, float],
    rules: AlertRules,
    estimate: PerformanceEstimate | None = None,
) -> Assessment:
    """The alerts of a batch, each with a severity, and the batch's one status.

    Severity of an alert (``info`` < ``warning`` < ``critical``):

    - data quality: a missing column or a batch with no rows is ``critical`` (it cannot be compared
      at all). Values of the wrong type, out of the declared range or of an unseen category are graded
      by the share of rows they touch: under 1% ``info``, under 10% ``warning``, else ``critical``.
    - drift (the batch drifted: at least ``min_drifted_features`` features at PSI >= ``psi_threshold``,
      raised for a small batch to what chance alone rarely reaches at its size, see
      :mod:`nbops.monitoring.drift`): ``critical`` when the worst feature's PSI is at least twice its
      threshold or when max(3, 2 x ``min_drifted_features``) features drifted, else ``warning``.
    - prediction drift (PSI of the scores >= its threshold): ``critical`` at twice the threshold.
    - performance (ROC AUC more than ``max_auc_drop`` below the test AUC; multiclass log loss more
      than ``max_log_loss_increase`` above the test log loss; RMSE more than ``max_rmse_increase``
      above the test RMSE) and calibration (error above ``max_calibration_error``): ``critical`` when
      the drop, increase or error is at least twice its limit.
    - estimated performance (labels not arrived yet): the whole band of the estimated ROC AUC (CBPE)
      below the test AUC minus ``max_auc_drop`` (multiclass: of the estimated log loss above the
      test log loss times 1 + ``max_log_loss_increase``; regression, DLE: of the estimated RMSE above
      the test RMSE times 1 + ``max_rmse_increase``); ``critical`` when the band's edge is past twice
      the limit. Once the labels arrive the realised figure decides instead. Concept drift cannot be
      seen this way.

    Status, from the checks (``ok`` < ``watch`` < ``alert``):

    - ``alert``: at least one alert of severity ``warning`` or ``critical``. A batch too broken to
      compare (missing columns, no rows) is an alert too: its reason starts with "not comparable".
    - ``watch``: no such alert, but a signal below the alert level: a feature or the predictions at
      PSI >= :func:`watch_level` (0.1 by default; raised with the threshold for a small batch), features
      over the threshold without the batch
      counting as drifted (fewer than ``min_drifted_features``), or an ``info`` data-quality alert
      (a small share of bad values).
    - ``ok``: nothing of the above.

    Only the alerts' ``kind`` decides a retrain (``nbops retrain``): the kinds and the conditions that
    raise them are unchanged by the grading; ``info`` is only ever a data-quality alert.
    """
    alerts: list[dict[str, Any]] = []
    reasons: dict[str, list[str]] = {s: [] for s in SEVERITIES}
    watch: list[str] = []

    def add(kind: str, severity: str, message: str, reason: str) -> None:
        alerts.append({"kind": kind, "severity": severity, "message": message})
        reasons[severity].append(reason)

    rows = quality.rows
    if rows == 0:
        add("data_quality", "critical", "the batch has no rows", "not comparable: the batch has no rows")
    for name in quality.missing_columns:
        alerts.append({"kind": "data_quality", "severity": "critical", "message": f"column '{name}' is missing"})
    if quality.missing_columns:
        names = quality.missing_columns
        shown = ", ".join(f"'{n}'" for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        reasons["critical"].append(
            f"not comparable: column {shown} is missing"
            if len(names) == 1
            else f"not comparable: {len(names)} columns are missing ({shown})"
        )
    for c in quality.columns:
        for count, what in (
            (c.wrong_type, "values are not numbers"),
            (c.out_of_range, "values outside the declared range"),
            (c.unseen, "rows with categories not in the schema"),
        ):
            if not count:
                continue
            share = count / rows if rows else 1.0
            severity = (
                "info" if share < QUALITY_WATCH_SHARE else ("warning" if share < QUALITY_CRITICAL_SHARE else "critical")
            )
            examples = f"; e.g. {', '.join(c.examples)}" if c.examples else ""
            add(
                "data_quality",
                severity,
                f"'{c.name}': {count:,} {what} ({share:.1%} of {rows:,} rows{examples})",
                f"'{c.name}': {share:.1%} of rows {what.removeprefix('values ').removeprefix('rows ')}",
            )
    if drift is not None:
        configured = rules.drift.psi
        drifted = sorted((f for f in drift.features if f.drifted), key=lambda f: -f.score)
        if drift.dataset_drift and drifted:
            worst = drifted[0]
            many = max(MANY_DRIFTED, 2 * rules.drift.min_drifted_features)
            severe = worst.score >= CRITICAL_FACTOR * levels_of(worst, rules)[0]
            severity = "critical" if (severe or len(drifted) >= many) else "warning"
            at = threshold_text([levels_of(f, rules)[0] for f in drifted], configured, drift.rows)
            add(
                "drift",
                severity,
                f"dataset drift: {len(drifted)} feature(s) over PSI {at}: "
                + ", ".join(f"{f.name} ({f.score:.2f})" for f in drifted),
                f"{len(drifted)} feature(s) drifted (worst: {worst.name} at PSI {worst.score:.2f}; alert at {at})",
            )
        elif drifted:
            at = threshold_text([levels_of(f, rules)[0] for f in drifted], configured, drift.rows)
            watch.append(
                f"{len(drifted)} feature(s) over PSI {at}, fewer than the {rules.drift.min_drifted_features} "
                f"that make the batch drifted ({', '.join(f.name for f in drifted)})"
            )
        near = sorted(
            (f for f in drift.features if levels_of(f, rules)[1] <= f.score < levels_of(f, rules)[0]),
            key=lambda f: -f.score,
        )
        if near:
            shown = ", ".join(f"{f.name} {f.score:.3f}" for f in near[:3]) + (
                f" and {len(near) - 3} more" if len(near) > 3 else ""
            )
            low = min(levels_of(f, rules)[1] for f in near)
            at = threshold_text([levels_of(f, rules)[0] for f in near], configured, drift.rows)
            watch.append(f"PSI between {low:.3g} and {at}: {shown}")
        pred = drift.prediction
        moved = sorted((f for f in drift.class_predictions if f.drifted), key=lambda f: -f.score)
        if pred is not None:
            pred_alert, pred_watch = levels_of(pred, rules)
        if pred is not None and pred.drifted and moved:
            names = [f.name.removeprefix("prediction[").removesuffix("]") for f in moved]
            shown = ", ".join(f"{n} (PSI {f.score:.2f})" for n, f in zip(names, moved, strict=True))
            add(
                "prediction_drift",
                graded(pred.score, pred_alert),
                f"predicted probabilities moved for {len(moved)} class(es): {shown}",
                f"predictions moved (PSI {pred.score:.2f}, class {names[0]})",
            )
        elif pred is not None and pred.drifted:
            add(
                "prediction_drift",
                graded(pred.score, pred_alert),
                f"prediction distribution moved (PSI {pred.score:.2f})",
                f"predictions moved (PSI {pred.score:.2f})",
            )
        elif pred is not None and pred.score >= pred_watch:
            watch.append(f"predictions PSI {pred.score:.3f} (watch from {pred_watch:.3g})")
    if performance is not None:
        for alert in performance_alerts(task_type, performance, reference_metrics, rules):
            add(alert["kind"], alert["severity"], alert["message"], alert["reason"])
    elif estimate is not None:
        for alert in estimated_performance_alerts(estimate, reference_metrics, rules, task_type):
            add(alert["kind"], alert["severity"], alert["message"], alert["reason"])
    if reasons["warning"] or reasons["critical"]:
        status = "alert"
        said = [f"{s}: {r}" for s in ("critical", "warning") for r in reasons[s]] + [
            f"watch: {r}" for r in watch + reasons["info"]
        ]
    elif reasons["info"] or watch:
        status = "watch"
        said = watch + reasons["info"]
    else:
        status = "ok"
        said = ["within every limit"]
    return Assessment(alerts, status, said)


def performance_metric(task_type: str) -> str:
    """The history column a task's labelled performance is watched on: ``perf__roc_auc`` (binary),
    ``perf__log_loss`` (multiclass), ``perf__rmse`` (regression)."""
    return f"perf__{MONITORED_METRIC.get(task_type, 'rmse')}"


def performance_limit(task_type: str, reference: dict[str, float], rules: AlertRules) -> tuple[str, float] | None:
    """(metric, level) past which a labelled batch's performance is an alert: ROC AUC below the test
    AUC minus ``max_auc_drop`` (binary), log loss above the test log loss times 1 +
    ``max_log_loss_increase`` (multiclass), RMSE above the test RMSE times 1 + ``max_rmse_increase``."""
    if task_type == "binary":
        ref = reference.get("roc_auc")
        return ("roc_auc", ref - rules.max_auc_drop) if ref is not None else None
    if task_type == "multiclass":
        ref = reference.get("log_loss")
        return ("log_loss", ref * (1 + rules.max_log_loss_increase)) if ref else None
    ref = reference.get("rmse")
    return ("rmse", ref * (1 + rules.max_rmse_increase)) if ref else None


def estimated_performance_alerts(
    estimate: PerformanceEstimate, reference: dict[str, float], rules: AlertRules, task_type: str = "binary"
) -> list[dict[str, Any]]:
    """An ``estimated_performance`` alert for a batch whose labels have not arrived when its whole
    band is past the alert level: the band's top below the test ROC AUC minus ``max_auc_drop``
    (binary), the band's bottom above the test RMSE times 1 + ``max_rmse_increase`` (regression) or
    above the test log loss times 1 + ``max_log_loss_increase`` (multiclass). A value past the level
    with a band across it is chance or what the reference cannot vouch for, not yet a drop: the
    estimate would raise it on clean batches. ``critical`` when even the band's edge is past twice
    the allowed drop or increase."""
    limit = performance_limit(task_type, reference, rules)
    if limit is None:
        return []
    metric, level = limit
    m, ref = estimate.metrics.get(metric), reference.get(metric)
    if m is None or ref is None or not np.isfinite(m.value):
        return []
    name = {"roc_auc": "ROC AUC", "rmse": "RMSE", "log_loss": "log loss"}[metric]
    band = f"band {m.low:.3f}-{m.high:.3f}, labels pending"
    if metric == "roc_auc":
        if m.high >= level:
            return []
        drop = ref - m.high
        return [
            {
                "kind": "estimated_performance",
                "severity": graded(drop, rules.max_auc_drop),
                "message": f"estimated {name} {m.value:.3f} ({band}): the whole band is below the alert level "
                f"{level:.3f} (the test AUC {ref:.3f} less {rules.max_auc_drop:g}); an estimate from the scores alone, "
                "which concept drift would not show",
                "reason": f"estimated {name} {m.value:.3f}, band below {level:.3f} (labels pending)",
            }
        ]
    if m.low <= level or not ref:
        return []
    allowed = rules.max_rmse_increase if metric == "rmse" else rules.max_log_loss_increase
    rise = m.low / ref - 1
    return [
        {
            "kind": "estimated_performance",
            "severity": graded(rise, allowed),
            "message": f"estimated {name} {m.value:.3f} ({band}): the whole band is above the alert level {level:.3f} "
            f"(the test {name} {ref:.3f} plus {allowed:.0%}); an estimate from "
            + ("the inputs and predictions alone" if metric == "rmse" else "the predicted probabilities alone"),
            "reason": f"estimated {name} {m.value:.3f}, band above {level:.3f} (labels pending)",
        }
    ]


def performance_alerts(
    task_type: str, performance: dict[str, float], reference: dict[str, float], rules: AlertRules
) -> list[dict[str, Any]]:
    """Alerts for a batch whose labelled performance fell below the model's test performance, each
    with a severity and a short ``reason`` (critical at twice the allowed drop, increase or error)."""
    out = []
    if task_type == "binary":
        auc, ref = performance.get("roc_auc"), reference.get("roc_auc")
        if auc is not None and ref is not None and auc < ref - rules.max_auc_drop:
            out.append(
                {
                    "kind": "performance",
                    "severity": graded(ref - auc, rules.max_auc_drop),
                    "message": f"ROC AUC {auc:.3f} is {ref - auc:.3f} below the test AUC {ref:.3f} (alert below "
                    f"{ref - rules.max_auc_drop:.3f})",
                    "reason": f"ROC AUC {auc:.3f}, {ref - auc:.3f} below test",
                }
            )
        ce = performance.get("calibration_error")
        if ce is not None and ce > rules.max_calibration_error:
            out.append(
                {
                    "kind": "calibration",
                    "severity": graded(ce, rules.max_calibration_error),
                    "message": f"calibration error {ce:.3f} over {rules.max_calibration_error:g} (observed rate "
                    f"{performance.get('observed_rate', float('nan')):.3f}, mean prediction "
                    f"{performance.get('mean_prediction', float('nan')):.3f})",
                    "reason": f"calibration error {ce:.3f}",
                }
            )
    elif task_type == "multiclass":
        loss, ref = performance.get("log_loss"), reference.get("log_loss")
        if loss is not None and ref and loss > ref * (1 + rules.max_log_loss_increase):
            accuracy, ref_accuracy = performance.get("accuracy"), reference.get("accuracy")
            also = (
                f"; accuracy {accuracy:.3f} against {ref_accuracy:.3f} on test"
                if accuracy is not None and ref_accuracy is not None
                else ""
            )
            out.append(
                {
                    "kind": "performance",
                    "severity": graded(loss / ref - 1, rules.max_log_loss_increase),
                    "message": f"log loss {loss:.3f} is {loss / ref - 1:.0%} above the test log loss {ref:.3f} (alert "
                    f"above {ref * (1 + rules.max_log_loss_increase):.3f}){also}",
                    "reason": f"log loss {loss:.3f}, {loss / ref - 1:.0%} above test",
                }
            )
    else:
        rmse, ref = performance.get("rmse"), reference.get("rmse")
        if rmse is not None and ref and rmse > ref * (1 + rules.max_rmse_increase):
            out.append(
                {
                    "kind": "performance",
                    "severity": graded(rmse / ref - 1, rules.max_rmse_increase),
                    "message": f"RMSE {rmse:.3f} is {rmse / ref - 1:.0%} above the test RMSE {ref:.3f}",
                    "reason": f"RMSE {rmse:.3f}, {rmse / ref - 1:.0%} above test",
                }
            )
    return out
