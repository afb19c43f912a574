"""The stage runners: what each stage notebook calls, and what a plain-Python run calls in sequence.

Each runner takes a resolved :class:`~nbops.pipeline.context.Stage` (typed parameters and product paths), does
the stage's work through the library, logs it to W&B, and returns what the notebook shows. Nothing
here knows the order of the stages: that lives in ``pipeline.yaml`` only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd

from nbops.data.ingest import IngestResult, ingest
from nbops.data.io import file_sha256, write_json, write_text
from nbops.data.schema import TableSchema
from nbops.deploy.wheel import build_wheel
from nbops.progress import progress
from nbops.features.build import FeaturesResult, build_features
from nbops.modeling.evaluate import Evaluation, evaluate_model
from nbops.modeling.train import TrainResult, learning_curve, train_model
from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.history import read_alerts, replace_alerts, upsert_history
from nbops.monitoring.monitor import AlertRules, BatchMonitoring, monitor_batch, performance_limit
from nbops.monitoring.plots import (
    drift_heatmap,
    drift_heatmap_svg,
    performance_over_time,
    performance_svg,
)
from nbops.monitoring.profile import ReferenceProfile, build_reference_profile
from nbops.registry.gate import GateDecision, decide, production_metrics_on
from nbops.registry.publish import PROFILE_FILE, register_model, registry_for
from nbops.registry.store import ModelVersion, Registry, RegistryError
from nbops.runtime.model import ScoringModel
from nbops.runtime.transform import FeatureTransform
from nbops.pipeline.context import Stage, run_identity
from nbops.tracking import start_run


def _config(stage: Stage) -> dict[str, Any]:
    return stage.params.model_dump()


def run_ingest(stage: Stage) -> IngestResult:
    """Ingest: read or simulate, validate, quarantine, profile, fingerprint."""
    result = ingest(
        stage.params,
        project=stage.project,
        raw=stage.out("raw"),
        valid=stage.out("valid"),
        quarantine=stage.out("quarantine"),
        summary=stage.out("summary"),
        profile=stage.out("profile"),
    )
    result.schema.save(stage.out("schema"))
    with start_run("ingest", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project, private_columns=result.schema.private) as run:
        summary = result.summary()
        run.log_metrics({k: summary[k] for k in ("rows_read", "rows_valid", "rows_quarantined")})
        run.log_artifact(f"{result.schema.dataset}-valid", "dataset", [stage.product["valid"], stage.product["schema"]], {"fingerprint": result.fingerprint, "source_sha256": result.source_sha256})
        if result.validation.n_quarantined:
            run.log_table("quarantine_reasons", result.validation.reasons)
    return result


def load_schema(stage: Stage) -> TableSchema:
    return TableSchema.load(stage.inp("ingest", "schema"))


def run_features(stage: Stage) -> FeaturesResult:
    """Features: time-ordered split and the fitted feature transform."""
    schema = load_schema(stage)
    result = build_features(
        stage.params,
        schema=schema,
        valid_rows=stage.inp("ingest", "valid"),
        out={k: stage.out(k) for k in ("train", "valid", "test", "transform", "summary")},
    )
    with start_run("features", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project) as run:
        run.log_metrics({f"rows_{k}": v for k, v in result.split.sizes().items()})
        run.log_artifact("feature-transform", "transform", [stage.product["transform"]], {"features": result.transform.feature_names})
    return result


def run_train(stage: Stage) -> TrainResult:
    """Train: LightGBM with early stopping, saved as text."""
    schema = load_schema(stage)
    transform = FeatureTransform.load(stage.inp("features", "transform"))
    if stage.params.engine == "dask":  # lightgbm.dask on the cluster; the same products
        from nbops.engines.dask.cluster import get_client
        from nbops.engines.dask.train import train_model_dask

        result = train_model_dask(get_client(stage.params), stage.params, schema=schema, transform=transform, train_rows=stage.inp("features", "train"), valid_rows=stage.inp("features", "valid"), model_out=stage.out("model"), summary_out=stage.out("summary"))
    else:
        result = train_model(
            stage.params,
            schema=schema,
            transform=transform,
            train_rows=pd.read_parquet(stage.inp("features", "train")),
            valid_rows=pd.read_parquet(stage.inp("features", "valid")),
            model_out=stage.out("model"),
            summary_out=stage.out("summary"),
        )
    curve = stage.out("learning_curve")
    learning_curve(result.history, result.best_iteration).savefig(curve, dpi=200)
    with start_run("train", config={**_config(stage), "booster": result.params}, mode=stage.params.tracking, project_dir=stage.project) as run:
        run.log_metrics({k: v for k, v in result.summary.items() if isinstance(v, int | float)})
        run.log_images({"learning_curve": curve})
        run.log_artifact("model", "model", [stage.product["model"], stage.inp("features", "transform")], {"best_iteration": result.best_iteration})
    return result


def run_evaluate(stage: Stage) -> tuple[Evaluation, GateDecision]:
    """Evaluate: test metrics, plots, SHAP and segments, and the promotion gate against production."""
    schema = load_schema(stage)
    test_rows = pd.read_parquet(stage.inp("features", "test"))
    evaluation = evaluate_model(
        stage.params,
        schema=schema,
        transform=FeatureTransform.load(stage.inp("features", "transform")),
        booster=lgb.Booster(model_file=str(stage.inp("train", "model"))),
        test_rows=test_rows,
        out={k: stage.out(k) for k in ("metrics", "segments", "importance", "predictions", "plots")},
    )
    registry = registry_for(_registry_root(stage), schema.dataset)
    production = registry.alias("production")
    production_metrics = None
    if production is not None:
        model = ScoringModel.from_folder(production.path)
        production_metrics = production_metrics_on(model, test_rows, schema.target, schema.task_type)
    gate = decide(schema.task_type, evaluation.metrics, production_metrics, production.version if production else None, stage.params.promotion_tolerance)
    write_json(gate.to_dict(), stage.out("gate"))
    with start_run("evaluate", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project, private_columns=schema.private) as run:
        run.log_metrics(evaluation.metrics, prefix="test/")
        run.log_metrics({"gate/promote": float(gate.promote)})
        run.log_images(evaluation.plots)
        run.log_table("segment_metrics", evaluation.segments)
    return evaluation, gate


def _registry_root(stage: Stage) -> Path:
    root = Path(stage.params.registry_root)
    return root if root.is_absolute() else stage.project / root


@dataclass
class Registration:
    """What the register stage did."""

    version: ModelVersion
    created: bool
    promoted: bool
    gate: GateDecision
    aliases: dict[str, Any]


def run_register(stage: Stage) -> Registration:
    """Register: an immutable version with lineage and a model card; candidate, then the gate."""
    schema = load_schema(stage)
    gate_data = read_json(stage.inp("evaluate", "gate"))
    gate = GateDecision(**gate_data)
    registry = registry_for(_registry_root(stage), schema.dataset)
    metrics = read_json(stage.inp("evaluate", "metrics"))["metrics"]
    profile = reference_profile_of_training(schema, stage)
    with start_run("register", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project) as run:
        version, created, promoted = register_model(
            registry=registry,
            project=stage.project,
            schema=schema,
            model_file=stage.inp("train", "model"),
            transform_file=stage.inp("features", "transform"),
            ingest_summary=read_json(stage.inp("ingest", "summary")),
            split_summary=read_json(stage.inp("features", "summary")),
            train_summary=read_json(stage.inp("train", "summary"))["summary"],
            metrics=metrics,
            segments=pd.read_parquet(stage.inp("evaluate", "segments")),
            gate=gate,
            params=read_json(stage.inp("train", "summary"))["booster_params"],
            reference_profile=(json.dumps(profile.to_dict()) + "\n").encode(),
            wandb_run_id=run.run_id,
            run_identity=run_identity("train"),  # the training run that made this model
        )
        aliases = registry.aliases()
        names = [a for a in ("candidate", "production") if aliases.get(a) == version.version]
        run.log_artifact(version.metadata["package"], "model", sorted(p for p in version.path.iterdir() if p.is_file()), {"version": version.version, "gate": gate.to_dict()}, aliases=[version.version, *names])
    card = stage.out("card")
    card.mkdir(parents=True, exist_ok=True)
    for name in ("card.md", "card.html"):
        shutil.copyfile(version.file(name), card / name)
    write_json({"version": version.version, "created": created, "promoted": promoted, "aliases": {a: aliases.get(a) for a in ("candidate", "production")}, "registry": str(registry.root)}, stage.out("registration"))
    return Registration(version, created, promoted, gate, aliases)


def reference_profile_of_training(schema: TableSchema, stage: Stage) -> ReferenceProfile:
    """The monitoring reference: the training rows' feature distributions and the model's scores on them."""
    if stage.params.engine == "dask":  # the same profile, computed over partitions on the cluster
        from nbops.engines.dask.profile import reference_profile_of_parquet

        return reference_profile_of_parquet(stage.params, stage.inp("features", "train"), stage.inp("features", "transform"), stage.inp("train", "model"))
    train_rows = pd.read_parquet(stage.inp("features", "train"))
    transform = FeatureTransform.load(stage.inp("features", "transform"))
    booster = lgb.Booster(model_file=str(stage.inp("train", "model")))
    return build_reference_profile(train_rows, transform.numeric, list(transform.categorical), booster.predict(transform.transform(train_rows)))


def run_package(stage: Stage) -> dict[str, Any]:
    """Package: a wheel of the production (or candidate) version in dist/."""
    registration = read_json(stage.inp("register", "registration"))
    registry = Registry(registration["registry"])
    version = registry.alias(stage.params.package_alias)
    if version is None:
        raise RegistryError(f"no '{stage.params.package_alias}' model in {registry.root} to package")
    registry.verify(version.version)
    dist = stage.out("manifest").parent
    wheel = build_wheel(version, dist)
    info = {"wheel": str(wheel), "package": version.metadata["package"], "model_version": version.version, "wheel_sha256": file_sha256(wheel), "alias": stage.params.package_alias}
    write_json(info, stage.out("manifest"))
    return info


def run_batch_score(stage: Stage) -> dict[str, Any]:
    """Batch-score: a new monthly batch scored by the packaged wheel, as a deployment would."""
    info = read_json(stage.inp("package", "manifest"))
    batch_path = stage.out("batch")
    if stage.params.data == "simulate":
        from nbops.data.simulate import simulate_batch, write_simulation

        df, truth = simulate_batch(stage.params.batch, rows=stage.params.batch_rows, seed=stage.params.seed, drift=stage.params.batch_drift or "none")
        write_simulation(df, truth, batch_path)
    else:
        shutil.copyfile(stage.inp("features", "test"), batch_path)
    if stage.params.engine == "dask":  # the wheel's model files, scored by partition on the cluster
        from nbops.engines.dask.score import score_with_wheel_dask

        return score_with_wheel_dask(stage.params, Path(info["wheel"]), info["package"], batch_path, stage.out("predictions"), stage.out("summary"))
    return score_with_wheel(Path(info["wheel"]), info["package"], batch_path, stage.out("predictions"), stage.out("summary"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def score_with_wheel(wheel: Path, package: str, source: Path, dest: Path, summary_out: Path) -> dict[str, Any]:
    """Run ``python -m <package> score`` with only the wheel on the path, as a deployment would."""
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    proc = subprocess.run([sys.executable, "-m", package, "score", str(source), str(dest), "--quiet"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"scoring {source} with {wheel.name} failed:\n{proc.stderr.strip()}")
    scores = pd.read_parquet(dest)["prediction"]
    summary = {
        "wheel": wheel.name,
        "batch": str(source),
        "rows": int(len(scores)),
        "mean_prediction": float(scores.mean()),
        "quantiles": {str(q): float(scores.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "scorer_output": proc.stdout.strip(),
    }
    write_json(summary, summary_out)
    return summary


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
        if self.truth.empty:
            return "No ground truth: these batches are your own data, not simulated."
        found = self.history[["batch_id", "dataset_drift", "drifted_features", "alerts"]].rename(columns={"drifted_features": "found"})
        return self.truth.rename(columns={"drifted_features": "injected"}).merge(found, left_on="month", right_on="batch_id", how="left").drop(columns="batch_id")


def run_monitor(stage: Stage) -> MonitoringRun:
    """Monitor: simulate production months (or take your own batches), score them with the production
    model, and record quality, drift, late-arriving performance and alerts per month.

    Each month is stored as Parquet and checked from there: in this process (pandas engine) or by
    partitions on the Dask cluster (``engine: dask``, :func:`nbops.engines.dask.monitor.monitor_batch_dask`);
    everything else is the same for both.
    """
    p = stage.params
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
    check = _batch_checker(p, model=model, profile=profile, reference_metrics=reference_metrics, rules=rules, target=target)
    results: list[BatchMonitoring] = []
    truth_rows: list[dict[str, Any]] = []

    def record(result: BatchMonitoring, labelled: bool = False) -> None:
        if labelled:
            result.row["labels_arrived_at"] = result.row.pop("monitored_at")
        upsert_history(history_path, [result.row])
        replace_alerts(alerts_path, result.batch_id, result.alerts)
        results.append(result)

    if p.data == "simulate":
        from nbops.data.simulate import simulate_batch, write_simulation

        schedule = list(p.drift_schedule) + [None] * p.production_months
        stored: dict[int, tuple[str, Path]] = {}
        for k in progress(range(1, p.production_months + 1), desc="monitoring months", unit="month"):
            scenario = schedule[k - 1] or "none"
            df, truth = simulate_batch(k, rows=p.production_rows, seed=p.seed, drift=scenario)
            month = truth.months[0]
            path = batches_dir / f"{month}.parquet"
            write_simulation(df, truth, path)
            stored[k] = (month, path)
            truth_rows.append({"month": month, "scenario": scenario, "drifted_features": ",".join(d.name for d in truth.drifted_features), "concept_drift": truth.concept_drift})
            # Labels are not known yet when a month is first monitored.
            record(check(month, path, False, month))
            # The labels of the month `label_delay` months ago arrive now.
            arrived = k - p.label_delay
            if arrived >= 1:
                m, stored_path = stored[arrived]
                record(check(m, stored_path, True, m), labelled=True)
    else:
        record(check("holdout", stage.inp("features", "test"), True, None))
    history = pd.read_parquet(history_path)
    alerts = read_alerts(alerts_path)
    truth = pd.DataFrame(truth_rows)
    figures = stage.out("figures")
    figures.mkdir(parents=True, exist_ok=True)
    plots = {"drift_heatmap": figures / "drift_heatmap.png", "performance": figures / "performance.png"}
    metric = "perf__roc_auc" if version.metadata["task_type"] == "binary" else "perf__rmse"
    limit = performance_limit(version.metadata["task_type"], reference_metrics, rules)
    reference = reference_metrics.get(metric.removeprefix("perf__"))
    # PNG at twice the screen density for the report and W&B; beside it the same chart as SVG, crisp
    # at any size, with every value on hover.
    drift_heatmap(history, p.psi_threshold).savefig(plots["drift_heatmap"], dpi=200)
    performance_over_time(history, metric, reference, limit[1] if limit else None).savefig(plots["performance"], dpi=200)
    write_text(drift_heatmap_svg(history, p.psi_threshold, standalone=True), figures / "drift_heatmap.svg")
    write_text(performance_svg(history, metric, reference, limit[1] if limit else None, standalone=True), figures / "performance.svg")
    found = drift_recall(history, truth) if not truth.empty else {}
    write_json({"model_version": version.version, "batches": int(len(history)), "alerts": len(alerts), "ground_truth": found, "engine": p.engine}, stage.out("summary"))
    with start_run("monitor", config=_config(stage), mode=p.tracking, project_dir=stage.project) as run:
        for r in results:
            if r.drift is not None:
                run.log_metrics({"monitor/n_drifted": len(r.drift.drifted), "monitor/dataset_drift": float(r.drift.dataset_drift)})
        if alerts:
            run.log_table("alerts", pd.DataFrame(alerts))
        run.log_table("monitoring_history", history)
        run.log_images(plots)
    return MonitoringRun(history, alerts, results, truth, found, plots)


def _batch_checker(p: Any, *, target: str, **common: Any) -> Callable[[str, Path, bool, str | None], BatchMonitoring]:
    """``check(batch_id, parquet, labelled, month)`` for the stage's engine; without labels the target
    column is left out, as it is when a month is first monitored."""
    if p.engine == "dask":
        from nbops.engines.dask.cluster import get_client
        from nbops.engines.dask.monitor import monitor_batch_dask

        client = get_client(p)

        def check_dask(batch_id: str, path: Path, labelled: bool, month: str | None) -> BatchMonitoring:
            labels: dict[str, Any] = {"target": target} if labelled else {"exclude": (target,)}
            return monitor_batch_dask(client, batch_id, path, month=month, **labels, **common)

        return check_dask

    def check(batch_id: str, path: Path, labelled: bool, month: str | None) -> BatchMonitoring:
        frame = pd.read_parquet(path)
        if not labelled:
            frame = frame.drop(columns=[target], errors="ignore")
        return monitor_batch(batch_id, frame, target=target if labelled else None, month=month, **common)

    return check


def drift_recall(history: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """How the monitor did against the simulator's ground truth: drifted features found, false alarms."""
    merged = truth.merge(history[["batch_id", "drifted_features", "dataset_drift"]], left_on="month", right_on="batch_id", how="left")
    named = found = false_alarms = clean = 0
    for row in merged.itertuples():
        expected = {f for f in (row.drifted_features_x or "").split(",") if f}
        flagged = {f for f in (row.drifted_features_y or "").split(",") if f} if isinstance(row.drifted_features_y, str) else set()
        named += len(expected)
        found += len(expected & flagged)
        if not expected:
            clean += 1
            false_alarms += bool(row.dataset_drift)
    return {"named_features": named, "found": found, "recall": found / named if named else None, "clean_months": clean, "false_alarms": false_alarms}
