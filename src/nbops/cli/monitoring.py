"""``nbops drift``, ``nbops estimate`` and ``nbops monitor``: compare tables for drift; estimate a
table's performance before its labels arrive; monitor pending batches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from nbops.cli.common import add_env_args, registry_of
from nbops.errors import NbopsError

if TYPE_CHECKING:
    import pandas as pd

    from nbops.monitoring.columns import DriftColumns


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drift", help="compare two tables (or a stored reference profile and a table) for drift")
    p.add_argument("reference", help="a CSV/Parquet table, or a reference_profile.json from a model version")
    p.add_argument("current", help="the CSV/Parquet table to compare")
    p.add_argument(
        "--json",
        action="store_true",
        help="print {dataset_drift, rows, psi_threshold, features: [{name, score, threshold, drifted, ...}], left_out}",
    )
    p.add_argument(
        "--psi-threshold",
        type=float,
        default=0.2,
        help="PSI at which a feature drifts (raised for a small batch to what chance alone rarely reaches)",
    )
    p.add_argument("--min-drifted", type=int, default=1, help="drifted features that make the dataset drifted")
    p.add_argument(
        "--schema",
        default=None,
        help="the dataset's schema file (default: the project's schema that declares the reference's columns, "
        "else the schema ingest would infer)",
    )
    p.add_argument("--target", default=None, help="the target column, for an inferred schema (default: env.yaml's)")
    p.add_argument("--exclude", action="append", default=[], help="more columns to leave out")
    p.set_defaults(func=drift)
    p = sub.add_parser(
        "estimate",
        help="estimate a table's performance before its labels arrive (binary and multiclass: CBPE; regression: DLE)",
    )
    p.add_argument(
        "batch",
        help="the CSV/Parquet table to estimate (its target column, if present, is compared); a batch-scored "
        "Parquet file (prediction and model_version columns) is estimated from its scores, without the model",
    )
    p.add_argument("--version", default=None, help="a version such as v0003 (default: production)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print {version, rows, threshold, metrics: {name: {value, low, high, se}}, ...}",
    )
    add_env_args(p)
    p.set_defaults(func=estimate)
    p = sub.add_parser("monitor", help="monitor every batch not monitored yet (and the serving prediction log)")
    add_env_args(p)
    p.set_defaults(func=monitor)


def drift(args: argparse.Namespace) -> int:
    from nbops.monitoring.batches import read_frame
    from nbops.monitoring.drift import DriftThresholds, compare
    from nbops.monitoring.profile import ReferenceProfile

    reference = Path(args.reference)
    if args.schema is not None and not Path(args.schema).exists():
        raise NbopsError(f"--schema {args.schema}: file not found; pass the dataset's schema YAML (schemas/*.yaml)")
    if reference.suffix.lower() == ".json" and not reference.exists():
        raise NbopsError(f"{reference}: file not found")
    columns = None
    if reference.suffix == ".json":
        profile = ReferenceProfile.load(reference)
    else:
        from nbops.monitoring.columns import INFER_ROWS

        # The roles from the reference's first rows; then only its features are read.
        columns = table_columns(args, read_frame(reference, rows=INFER_ROWS))
        profile = columns.profile(read_frame(reference, columns=[*columns.numeric, *columns.categorical]))
    current = read_frame(args.current, columns=profile.features)
    if current.empty:
        raise NbopsError(
            f"{args.current} has no rows: there is nothing to compare (a batch with no rows is a data-quality problem, "
            "not drift)"
        )
    report = compare(profile, current, DriftThresholds(psi=args.psi_threshold, min_drifted_features=args.min_drifted))
    threshold = f"{args.psi_threshold:g}"
    if report.raised:
        low = min(f.threshold or args.psi_threshold for f in report.features)
        threshold = (
            f"{low:.2f}-{report.psi_threshold:.2f}" if report.psi_threshold - low >= 0.005 else f"{low:.2f}"
        ) + f" for {report.rows:,} rows ({args.psi_threshold:g} configured, raised: chance alone reaches it)"
    if args.json:
        out: dict[str, object] = {
            "dataset_drift": report.dataset_drift,
            "rows": report.rows,
            "reference_rows": profile.rows,
            "psi_threshold": report.psi_threshold,
            "features": [
                {
                    "name": f.name,
                    "method": f.method,
                    "score": round(f.score, 6),
                    "threshold": round(f.threshold if f.threshold is not None else args.psi_threshold, 6),
                    "drifted": f.drifted,
                }
                for f in report.features
            ],
        }
        if report.missing_columns:
            out["missing_columns"] = report.missing_columns
        if columns is not None:
            out["left_out"] = columns.left_out
            out["schema"] = columns.schema
        print(json.dumps(out))
        return 0
    frame = report.frame()[["name", "kind", "method", "score", "threshold", "drifted", "wasserstein", "jensen_shannon"]]
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        f"\ndataset drift: {report.dataset_drift} ({len(report.drifted)} of {len(report.features)} features at PSI >= "
        f"{threshold})"
    )
    if columns is not None:
        print(f"left out (not drift features): {columns.left_out_text() or 'none'}; roles from {columns.schema}")
    if report.missing_columns:
        print(f"missing columns: {', '.join(report.missing_columns)}")
    return 0


def table_columns(args: argparse.Namespace, table: pd.DataFrame) -> DriftColumns:
    """The drift features of a reference table: the schema's (``--schema``, or the project's that
    declares the table's columns), else those the ingest stage would infer."""
    from nbops.config.paths import project_root
    from nbops.errors import ConfigError
    from nbops.monitoring.columns import TableSettings, drift_columns

    try:
        project: Path | None = project_root(args.project)
    except ConfigError:
        project = None
    settings = TableSettings.of_project(project)
    if args.target is not None:
        import dataclasses

        settings = dataclasses.replace(settings, target=args.target, source="--target")
    return drift_columns(
        table,
        file=args.reference,
        schema_file=Path(args.schema) if args.schema else None,
        project=project,
        settings=settings,
        exclude=tuple(args.exclude),
    )


def estimate(args: argparse.Namespace) -> int:
    from nbops.pipeline.runners.scored import estimate_batch

    registry, _ = registry_of(args)
    if not Path(args.batch).exists():
        raise NbopsError(
            f"{args.batch}: file not found; pass a CSV or Parquet table of the model's input columns (or the "
            "batch-scoring output, whose scores are used as they are)"
        )
    result = estimate_batch(registry, Path(args.batch), args.version)
    if args.json:
        print(json.dumps(result.to_dict(), default=float))
        return 0
    est = result.estimate
    how = (
        f"CBPE; threshold {est.threshold:g}"
        if "roc_auc" in est.metrics
        else ("CBPE, each class calibrated" if "log_loss" in est.metrics else "DLE")
    )
    print(f"{args.batch}: {est.rows:,} rows, estimated with {result.version.version} ({how})")
    realised = result.realised or {}
    width = max(len(n) for n in est.metrics)
    for name, m in est.metrics.items():
        ref = est.reference.get(name)
        line = f"  {name:<{width}}  {m.value:.4f}  band {m.low:.4f}-{m.high:.4f}"
        line += f"  (test {ref:.4f})" if ref is not None else ""
        line += f"  realised {realised[name]:.4f}" if name in realised else ""
        print(line)
    for gap in est.gaps:
        low, high = gap["change"]
        metric = {"roc_auc": "ROC AUC", "log_loss": "log loss"}.get(gap["metric"], gap["metric"])
        names = gap["features"]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        verb = "are" if gap["kind"].startswith("beyond") else "have"
        print(
            f"  band widened: {gap['rows']:.1%} of rows {verb} {gap['kind']} ({shown}), which the test split cannot "
            f"vouch for: {metric} {low:+.4f} to {high:+.4f} across the readings of them"
        )
    print(
        "an estimate without labels: it follows covariate shift, not concept drift (a changed relation "
        "between inputs and outcome shows only in realised performance, once labels arrive)"
    )
    return 0


def monitor(args: argparse.Namespace) -> int:
    from nbops.config.params import MonitorParams, validate_params
    from nbops.pipeline.runners.monitor import monitor_pending

    registry, checked = registry_of(args)
    task = next((t for t in checked.tasks if t.name == "monitor"), None)
    if task is None:
        raise NbopsError(
            "pipeline.yaml has no monitor task: `nbops monitor` records into its history and alerts products"
        )
    params = validate_params(
        MonitorParams,
        {k: v for k, v in task.params.items() if k in MonitorParams.model_fields},
        where="task 'monitor' in pipeline.yaml",
    )
    batches, history, alerts = (Path(task.product[k]) for k in ("batches", "history", "alerts"))
    outcomes = monitor_pending(
        params,
        registry,
        batches=batches,
        prediction_log=Path(checked.settings.root) / "data" / "prediction_log",
        history=history,
        alerts=alerts,
    )
    if not outcomes:
        print(f"nothing to monitor: every batch in {batches} is in {history}")
        return 0
    for o in outcomes:
        print(
            f"{o.batch_id}: {o.rows:,} rows, {o.status} ({o.reason}), {len(o.alerts)} alert(s)"
            + "".join(f"\n  - {a['severity']}: {a['message']}" for a in o.alerts)
        )
    print(f"history: {history}\nalerts: {alerts}")
    return 0
