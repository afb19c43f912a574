"""The monitor stage on a Dask cluster: each month's Parquet is checked, scored and compared there.

:func:`monitor_batch_dask` gives what :func:`nbops.monitoring.monitor.monitor_batch` gives for the
same rows (the tests compare them): data quality is counted per partition and summed, drift comes
from :func:`nbops.scale.profile.compare` (identical PSI and distances), and the predictions and labels
come back to the client for the batch's mean score and its labelled performance (eight bytes a row
each: a month that does not fit in memory still has predictions that do). The history row and the
alerts are built by the pandas engine's own :func:`~nbops.monitoring.monitor.summarise_batch`.

:func:`run_monitor_dask` is the stage runner ``nbops.stages.run_monitor`` hands over to when
``engine`` is ``dask``; apart from where the work runs it does what the pandas runner does, in the
same order, with the same products.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.history import read_alerts, replace_alerts, upsert_history
from nbops.monitoring.monitor import AlertRules, BatchMonitoring, summarise_batch
from nbops.monitoring.profile import ReferenceProfile
from nbops.monitoring.quality import ColumnQuality, QualityReport, check_quality
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import InputSchema
from nbops.scale.parquet import empty_frame, frame, plan_pieces
from nbops.scale.profile import compare, predictions_of
from nbops.scale.work import ModelRef, compute_all

if TYPE_CHECKING:
    from distributed import Client

    from nbops.stage import Stage
    from nbops.stages import MonitoringRun


def _labels(part: pd.DataFrame, target: str) -> np.ndarray:
    return part[target].to_numpy(dtype=float, na_value=np.nan)


def merge_quality(reports: list[QualityReport], schema: InputSchema) -> QualityReport:
    """One :class:`QualityReport` from the partitions' reports, as ``check_quality`` gives on the whole."""
    rows = sum(r.rows for r in reports)
    kinds = {f.name: f.kind for f in schema.fields}
    columns: list[ColumnQuality] = []
    for i, first in enumerate(reports[0].columns):
        parts = [r.columns[i] for r in reports]
        null = sum(round(c.missing_rate * r.rows) for c, r in zip(parts, reports, strict=True))
        examples: list[str] = []
        for c in parts:
            for e in c.examples:
                # numeric: the first offending values in row order; categorical: the first distinct ones
                if kinds.get(first.name) == "numeric" or e not in examples:
                    examples.append(e)
        columns.append(ColumnQuality(first.name, float(null / rows) if rows else 0.0, sum(c.wrong_type for c in parts), sum(c.out_of_range for c in parts), sum(c.unseen for c in parts), examples[:3]))
    return QualityReport(rows, reports[0].missing_columns, columns)


def monitor_batch_dask(
    client: Client,
    batch_id: str,
    source: Path,
    *,
    model: ScoringModel,
    profile: ReferenceProfile,
    reference_metrics: dict[str, float],
    rules: AlertRules,
    target: str | None = None,
    month: str | None = None,
    exclude: tuple[str, ...] = (),
) -> BatchMonitoring:
    """Quality, drift, performance (when ``target`` labels are present) and alerts for the Parquet
    batch at ``source`` (a file or a folder), without ``exclude`` columns."""
    import dask

    from nbops.scale.cluster import workers_in_order

    pieces = plan_pieces(source, min_pieces=len(workers_in_order(client)))
    columns = [c for c in empty_frame(source).columns if c not in exclude]
    batch = frame(source, pieces, columns)
    check = dask.delayed(check_quality, pure=True)
    quality = merge_quality(compute_all(client, [check(p, model.schema) for p in batch.to_delayed()], "data quality"), model.schema) if pieces else check_quality(empty_frame(source, columns), model.schema)
    if quality.rows == 0 or quality.missing_columns:
        return summarise_batch(batch_id, month, model, quality, None, None, None, reference_metrics, rules)
    ref = ModelRef(model.booster.model_to_string(), model.feature_transform.to_dict())
    futures = predictions_of(client, batch, ref)
    try:
        drift = compare(client, profile, batch, rules.drift, futures)
        predictions = np.concatenate(client.gather(futures))
    finally:
        client.cancel(futures)
    labels = None
    if target is not None and target in columns:
        labels = np.concatenate(compute_all(client, [dask.delayed(_labels, pure=True)(p, target) for p in frame(source, pieces, [target]).to_delayed()], "labels"))
    return summarise_batch(batch_id, month, model, quality, drift, predictions, labels, reference_metrics, rules)


def run_monitor_dask(stage: Stage) -> MonitoringRun:
    """The monitor stage with ``engine: dask`` (see :func:`nbops.stages.run_monitor`)."""
    from nbops.data.io import write_json
    from nbops.data.simulate import simulate_batch, write_simulation
    from nbops.monitoring.plots import drift_heatmap, performance_over_time
    from nbops.registry.publish import PROFILE_FILE
    from nbops.registry.store import Registry, RegistryError
    from nbops.scale.cluster import get_client
    from nbops.stages import MonitoringRun, drift_recall, read_json
    from nbops.tracking import start_run

    p = stage.params
    client = get_client(p)
    registration = read_json(stage.inp("register", "registration"))
    registry = Registry(registration["registry"])
    version = registry.alias("production")
    if version is None:
        raise RegistryError(f"no production model in {registry.root} to monitor")
    model = ScoringModel.from_folder(version.path)
    profile = ReferenceProfile.load(version.file(PROFILE_FILE))
    reference_metrics = version.metadata["metrics"]
    rules = AlertRules(DriftThresholds(p.psi_threshold, p.min_drifted_features), p.max_auc_drop, p.max_calibration_error)
    target = version.metadata["target"]
    history_path, alerts_path = stage.out("history"), stage.out("alerts")
    batches_dir = stage.out("batches")
    batches_dir.mkdir(parents=True, exist_ok=True)
    results: list[BatchMonitoring] = []
    truth_rows: list[dict[str, Any]] = []
    common = {"model": model, "profile": profile, "reference_metrics": reference_metrics, "rules": rules}

    def record(result: BatchMonitoring, labelled: bool = False) -> None:
        if labelled:
            result.row["labels_arrived_at"] = result.row.pop("monitored_at")
        upsert_history(history_path, [result.row])
        replace_alerts(alerts_path, result.batch_id, result.alerts)
        results.append(result)

    if p.data == "simulate":
        schedule = list(p.drift_schedule) + [None] * p.production_months
        stored: dict[int, tuple[str, Path]] = {}
        for k in tqdm(range(1, p.production_months + 1), desc="monitoring months", unit="month"):
            scenario = schedule[k - 1] or "none"
            df, truth = simulate_batch(k, rows=p.production_rows, seed=p.seed, drift=scenario)
            month = truth.months[0]
            path = batches_dir / f"{month}.parquet"
            write_simulation(df, truth, path)
            stored[k] = (month, path)
            truth_rows.append({"month": month, "scenario": scenario, "drifted_features": ",".join(d.name for d in truth.drifted_features), "concept_drift": truth.concept_drift})
            # Labels are not known yet when a month is first monitored.
            record(monitor_batch_dask(client, month, path, month=month, exclude=(target,), **common))
            arrived = k - p.label_delay
            if arrived >= 1:
                m, stored_path = stored[arrived]
                record(monitor_batch_dask(client, m, stored_path, target=target, month=m, **common), labelled=True)
    else:
        record(monitor_batch_dask(client, "holdout", stage.inp("features", "test"), target=target, month=None, **common))
    history = pd.read_parquet(history_path)
    alerts = read_alerts(alerts_path)
    truth = pd.DataFrame(truth_rows)
    figures = stage.out("figures")
    figures.mkdir(parents=True, exist_ok=True)
    plots = {"drift_heatmap": figures / "drift_heatmap.png", "performance": figures / "performance.png"}
    drift_heatmap(history, p.psi_threshold).savefig(plots["drift_heatmap"], dpi=100)
    metric = "perf__roc_auc" if version.metadata["task_type"] == "binary" else "perf__rmse"
    performance_over_time(history, metric, reference_metrics.get(metric.removeprefix("perf__"))).savefig(plots["performance"], dpi=100)
    found = drift_recall(history, truth) if not truth.empty else {}
    write_json({"model_version": version.version, "batches": int(len(history)), "alerts": len(alerts), "ground_truth": found, "engine": "dask"}, stage.out("summary"))
    with start_run("monitor", config=stage.params.model_dump(), mode=p.tracking, project_dir=stage.project) as run:
        for r in results:
            if r.drift is not None:
                run.log_metrics({"monitor/n_drifted": len(r.drift.drifted), "monitor/dataset_drift": float(r.drift.dataset_drift)})
        if alerts:
            run.log_table("alerts", pd.DataFrame(alerts))
        run.log_table("monitoring_history", history)
        run.log_images(plots)
    return MonitoringRun(history, alerts, results, truth, found, plots)
