"""Monitor: score production batches with the production model and record quality, drift,
late-arriving performance and alerts per batch. The monitor stage and ``nbops monitor`` (batches
dropped in a folder, the serving prediction log) record through the same :class:`BatchLog`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbops.config.params import MonitorParams
from nbops.data.io import write_json, write_text
from nbops.engines import engine_for
from nbops.errors import NbopsError
from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.estimate import BinaryEstimator, Estimator, PerformanceEstimate, load_estimator
from nbops.monitoring.ground_truth import drift_recall, truth_table
from nbops.monitoring.history import read_alerts, replace_alerts, upsert_history
from nbops.monitoring.monitor import AlertRules, BatchMonitoring, performance_limit, performance_metric
from nbops.monitoring.profile import ReferenceProfile
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import read_json, track
from nbops.progress import progress
from nbops.registry.store import ModelVersion, Registry, RegistryError
from nbops.runtime.integrity import ESTIMATOR_FILE, PROFILE_FILE
from nbops.runtime.model import ScoringModel


@dataclass
class ProductionReference:
    """What a batch is compared with: the production version, its model and reference profile."""

    version: ModelVersion
    model: ScoringModel
    profile: ReferenceProfile
    estimator: Estimator | None = None  # estimates performance before the labels arrive

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.version.metadata["metrics"])

    @property
    def target(self) -> str:
        return str(self.version.metadata["target"])

    @property
    def task_type(self) -> str:
        return str(self.version.metadata["task_type"])


def production_reference(registry: Registry) -> ProductionReference:
    """The production version of ``registry``, loaded and verified; a clear error when there is none."""
    version = registry.alias("production")
    if version is None:
        raise RegistryError(f"no production model in {registry.root} to monitor against; run `make run` first")
    return ProductionReference(
        version,
        ScoringModel.from_folder(version.path),
        ReferenceProfile.load(version.file(PROFILE_FILE)),
        load_estimator(version.path),
    )


def alert_rules(p: MonitorParams) -> AlertRules:
    return AlertRules(DriftThresholds(p.psi_threshold, p.min_drifted_features), p.max_auc_drop, p.max_calibration_error)


class BatchLog:
    """The monitoring history and alerts: one row per batch (re-monitoring replaces it)."""

    def __init__(self, history: Path, alerts: Path) -> None:
        self.history, self.alerts = history, alerts
        self.results: list[BatchMonitoring] = []

    def record(self, result: BatchMonitoring, labelled: bool = False) -> BatchMonitoring:
        if labelled:
            result.row["labels_arrived_at"] = result.row.pop("monitored_at")
        upsert_history(self.history, [result.row])
        replace_alerts(self.alerts, result.batch_id, result.alerts)
        self.results.append(result)
        return result

    def unreadable(self, batch_id: str, path: Path, exc: Exception) -> dict[str, Any]:
        """A batch file that cannot be read is a critical data-quality alert, never a crash."""
        row = {
            "batch_id": batch_id,
            "status": "alert",
            "status_reason": "critical: not comparable: the file could not be read",
            "rows": 0,
        }
        alert = {"kind": "data_quality", "severity": "critical", "message": f"{path.name}: {exc}"}
        upsert_history(self.history, [row])
        replace_alerts(self.alerts, batch_id, [alert])
        return {**row, "alerts": [alert]}


@dataclass
class MonitoringRun:
    """What the monitor stage did."""

    history: pd.DataFrame
    alerts: list[dict[str, Any]]
    batches: list[BatchMonitoring]
    truth: pd.DataFrame
    ground_truth: dict[str, Any]
    plots: dict[str, Path]

    def truth_table(self) -> pd.DataFrame | str:
        """Per simulated month: what the simulator injected against what the monitor found."""
        return truth_table(self.history, self.truth)


def run_monitor(stage: Stage[MonitorParams]) -> MonitoringRun:
    """Simulate production months (or take your own test split as one labelled batch), check each
    with the production model on the chosen engine, and record it; labels arrive ``label_delay``
    months after a month was first monitored."""
    p = stage.params
    reference = production_reference(Registry(read_json(stage.inp("register", "registration"))["registry"]))
    rules = alert_rules(p)
    log = BatchLog(stage.out("history"), stage.out("alerts"))
    batches_dir = stage.out("batches")
    batches_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(p)

    def check(batch_id: str, path: Path, labelled: bool, month: str | None) -> BatchMonitoring:
        return engine.monitor_batch(
            batch_id,
            path,
            labelled=labelled,
            month=month,
            model=reference.model,
            profile=reference.profile,
            reference_metrics=reference.metrics,
            rules=rules,
            target=reference.target,
            estimator=reference.estimator,
        )

    truth_rows = _simulated_months(p, batches_dir, check, log) if p.data == "simulate" else []
    if p.data != "simulate":
        log.record(check("holdout", stage.inp("features", "test"), True, None))
    history = pd.read_parquet(log.history)
    alerts = read_alerts(log.alerts)
    truth = pd.DataFrame(truth_rows)
    plots = _figures(stage, history, reference, rules)
    found = drift_recall(history, truth) if not truth.empty else {}
    write_json(
        {
            "model_version": reference.version.version,
            "batches": int(len(history)),
            "alerts": len(alerts),
            "ground_truth": found,
            "engine": p.engine,
        },
        stage.out("summary"),
    )
    with track(stage) as run:
        for r in log.results:
            if r.drift is not None:
                run.log_metrics(
                    {"monitor/n_drifted": len(r.drift.drifted), "monitor/dataset_drift": float(r.drift.dataset_drift)}
                )
        if alerts:
            run.log_table("alerts", pd.DataFrame(alerts))
        run.log_table("monitoring_history", history)
        run.log_images(plots)
    return MonitoringRun(history, alerts, log.results, truth, found, plots)


def _simulated_months(
    p: MonitorParams, folder: Path, check: Callable[[str, Path, bool, str | None], BatchMonitoring], log: BatchLog
) -> list[dict[str, Any]]:
    """The simulator's production months, each monitored on arrival and again when its labels come."""
    from nbops.data.simulate import simulate_batch, write_simulation

    schedule = list(p.drift_schedule) + [None] * p.production_months
    stored: dict[int, tuple[str, Path]] = {}
    truth_rows = []
    for k in progress(range(1, p.production_months + 1), desc="monitoring months", unit="month"):
        scenario = schedule[k - 1] or "none"
        df, truth = simulate_batch(k, rows=p.production_rows, seed=p.seed, drift=scenario)
        month = truth.months[0]
        path = folder / f"{month}.parquet"
        write_simulation(df, truth, path)
        stored[k] = (month, path)
        truth_rows.append(
            {
                "month": month,
                "scenario": scenario,
                "drifted_features": ",".join(d.name for d in truth.drifted_features),
                "concept_drift": truth.concept_drift,
            }
        )
        log.record(check(month, path, False, month))  # labels are not known when a month first arrives
        arrived = k - p.label_delay  # the labels of the month label_delay months ago arrive now
        if arrived >= 1:
            m, stored_path = stored[arrived]
            log.record(check(m, stored_path, True, m), labelled=True)
    return truth_rows


def _figures(
    stage: Stage[MonitorParams], history: pd.DataFrame, reference: ProductionReference, rules: AlertRules
) -> dict[str, Path]:
    """PNG at twice the screen density for the report and W&B; beside each the same chart as SVG,
    crisp at any size, with every value on hover."""
    # matplotlib is imported here, not with the module: `nbops estimate` scores through this module.
    from nbops.monitoring.plots import drift_heatmap, drift_heatmap_svg, performance_over_time, performance_svg

    figures = stage.out("figures")
    figures.mkdir(parents=True, exist_ok=True)
    plots = {"drift_heatmap": figures / "drift_heatmap.png", "performance": figures / "performance.png"}
    metric = performance_metric(reference.task_type)
    limit = performance_limit(reference.task_type, reference.metrics, rules)
    level = reference.metrics.get(metric.removeprefix("perf__"))
    psi = stage.params.psi_threshold
    drift_heatmap(history, psi).savefig(plots["drift_heatmap"], dpi=200)
    performance_over_time(history, metric, level, limit[1] if limit else None).savefig(plots["performance"], dpi=200)
    write_text(drift_heatmap_svg(history, psi, standalone=True), figures / "drift_heatmap.svg")
    write_text(
        performance_svg(history, metric, level, limit[1] if limit else None, standalone=True),
        figures / "performance.svg",
    )
    return plots


def logged_predictions(frame: pd.DataFrame, model: ScoringModel) -> Any:
    """The scores the serving log recorded with its records: a number per record, or a multiclass
    model's probabilities in the order of its classes; None when the log lacks them (then monitoring
    scores the records itself)."""
    from nbops.runtime.model import probability_column

    if model.classes is not None:
        columns = [probability_column(c) for c in model.classes]
        return frame[columns].to_numpy(dtype=float) if all(c in frame.columns for c in columns) else None
    return frame["prediction"].to_numpy() if "prediction" in frame.columns else None


@dataclass
class BatchOutcome:
    """One batch ``nbops monitor`` checked (or could not read)."""

    batch_id: str
    rows: int
    status: str
    reason: str
    alerts: list[dict[str, Any]]


def monitor_pending(
    params: MonitorParams, registry: Registry, *, batches: Path, prediction_log: Path, history: Path, alerts: Path
) -> list[BatchOutcome]:
    """Every batch file in ``batches`` not monitored yet, and the serving prediction log, checked in
    this process against production and recorded as the monitor stage records its months. A batch
    with the target column counts as labelled; the prediction log's own scores are used as they are."""
    from nbops.monitoring.batches import pending_batches, read_frame, read_prediction_log
    from nbops.monitoring.monitor import monitor_batch

    reference = production_reference(registry)
    rules = alert_rules(params)
    log = BatchLog(history, alerts)
    out = []
    for batch_id, path in pending_batches(batches, prediction_log, history):
        try:
            frame = read_prediction_log(path) if path.suffix == ".jsonl" else read_frame(path)
        except (NbopsError, OSError, ValueError) as exc:
            row = log.unreadable(batch_id, path, exc)
            out.append(BatchOutcome(batch_id, 0, row["status"], row["status_reason"], row["alerts"]))
            continue
        predictions = logged_predictions(frame, reference.model) if path.suffix == ".jsonl" else None
        target = reference.target if reference.target in frame.columns else None
        result = log.record(
            monitor_batch(
                batch_id,
                frame,
                model=reference.model,
                profile=reference.profile,
                reference_metrics=reference.metrics,
                rules=rules,
                target=target,
                predictions=predictions,
                month=batch_id,
                estimator=reference.estimator,
            )
        )
        out.append(
            BatchOutcome(
                batch_id, len(frame), str(result.row["status"]), str(result.row.get("status_reason", "")), result.alerts
            )
        )
    return out


@dataclass
class BatchEstimate:
    """``nbops estimate``: a table's performance estimated from its scores by a version's estimator,
    and the realised figures when the table happens to carry its labels."""

    version: ModelVersion
    estimate: PerformanceEstimate
    realised: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        metrics = self.version.metadata.get("metrics", {})
        return {
            "version": self.version.version,
            **self.estimate.to_dict(),
            **{
                f"test_{k}": metrics.get(k)
                for k in self.estimate.metrics
                if k in ("roc_auc", "rmse", "mae", "log_loss")
                or (k in ("accuracy", "f1_macro") and "log_loss" in metrics)
            },
            "realised": self.realised,
        }


def estimate_table(registry: Registry, table: Path, version: str | None = None) -> BatchEstimate:
    """Estimate a table's performance with ``version`` (default: production) before its labels arrive.

    Raises:
        RegistryError: no such version, or no production model.
        EstimationError: the version has no estimator (a multiclass model, or registered before
            nbops estimated performance: register it again), or the table cannot be scored.
    """
    from nbops.monitoring.batches import read_frame
    from nbops.monitoring.estimate import EstimationError, confusion_metrics
    from nbops.monitoring.performance import batch_performance

    chosen = registry.get(version) if version else registry.alias("production")
    if chosen is None:
        raise RegistryError(
            f"no production model in {registry.root} to estimate with; run `make run` or pass --version"
        )
    estimator = load_estimator(chosen.path)
    if estimator is None:
        raise EstimationError(
            f"version {chosen.version} in {registry.root} has no {ESTIMATOR_FILE}: it was registered before nbops "
            "stored an estimator with each version (for a multiclass model, before it estimated multiclass "
            "performance), or its test split was too small; register it again (`make run`, or "
            "`nbops build --force --task register`)"
        )
    model = ScoringModel.from_folder(chosen.path)
    frame = read_frame(table)
    if frame.empty:
        raise EstimationError(f"{table} has no rows: there is nothing to estimate; check the batch file")
    missing = [f.name for f in model.schema.fields if f.name not in frame.columns]
    if missing:
        raise EstimationError(
            f"{table}: expected the model's input columns, found {len(missing)} missing ({', '.join(missing[:5])}); "
            "pass a table of the same columns the model was trained on"
        )
    features = model.transform(frame)
    scores = np.asarray(model.booster.predict(features))
    target = str(chosen.metadata.get("target"))
    realised = None
    if target in frame.columns:
        labels = model.label_codes(frame[target])
        realised = batch_performance(model.task_type, labels, scores)
        known = ~np.isnan(labels)
        if realised is not None and isinstance(estimator, BinaryEstimator):
            flagged = scores[known] >= estimator.threshold
            realised.update({k: float(v) for k, v in confusion_metrics(flagged, labels[known]).items()})
    return BatchEstimate(chosen, estimator.estimate(scores, features), realised)
