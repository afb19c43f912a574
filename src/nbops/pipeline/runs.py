"""The runs index for a project: every task run a build ran, recorded from its products after
Ploomber ran, and what ``nbops runs`` and ``nbops runs diff`` read.

A build records each task that ran (and the one that failed, with its error) from what the task left:
its typed parameters and run identity (computed before Ploomber started), its products (the train
summary and learning curves, the test and segment metrics, the monitoring summary, the registered
version), the stages' events (when it started, its W&B run), the data fingerprint of the ingest it
read, the git commit and the lock hash. The notebooks write nothing for it.

A task that records runs of its own, such as the trials of a tuning study, calls
:func:`record_stage_run` with its :class:`~nbops.pipeline.context.Stage`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbops import progress as events
from nbops.config.spec import TaskSpec
from nbops.experiments.diff import RunDiff, diff_selections
from nbops.experiments.index import (
    RunRecord,
    numeric_metrics,
    read_runs,
    record_runs,
    select,
    trial_identity,
)
from nbops.pipeline import lineage
from nbops.pipeline.check import CheckedProject
from nbops.pipeline.context import BUILD_ID_ENV, Stage, run_identities

log = logging.getLogger(__name__)
# Product keys whose JSON a task's metrics are read from, in this order.
SUMMARY_KEYS = ("summary", "metrics")


def runs_root(checked: CheckedProject) -> Path:
    """The products root the index lives under (``root`` in the env file)."""
    root = Path(checked.settings.root)
    return root if root.is_absolute() or checked.project is None else checked.project / root


def record_build_runs(
    checked: CheckedProject,
    ran: Mapping[str, bool],
    ids: Mapping[str, lineage.TaskIdentity],
    build_id: str,
    events_path: Path,
    failure: Mapping[str, Any] | None = None,
) -> list[RunRecord]:
    """Record every task that ran in this build (and the failed one) in the runs index.

    Never fails the build: a task whose products cannot be read is recorded with what could be.
    """
    project = checked.project or Path.cwd()
    stream = events.read_events(events_path)[0]
    started: dict[str, float] = {}
    failed_at: dict[str, float] = {}
    wandb: dict[str, str] = {}
    for event in stream:
        task, at = event.get("task"), event.get("at")
        if not task:
            continue
        if event.get("event") == "start" and isinstance(at, int | float):
            started[task] = float(at)
        elif event.get("event") == "failed" and isinstance(at, int | float):
            failed_at[task] = float(at)
        elif event.get("event") == "tracked" and event.get("wandb_run_id"):
            identity = event.get("identity")
            if identity is None or (task in ids and identity == ids[task]["identity"]):
                wandb[task] = str(event["wandb_run_id"])
    failed_task = (failure or {}).get("task")
    git = _git(project)
    fingerprints = _fingerprints(checked.tasks)
    records: list[RunRecord] = []
    for spec in checked.tasks:
        if not ran.get(spec.name) and spec.name != failed_task:
            continue
        ident = ids[spec.name]
        status = "failed" if spec.name == failed_task else "ok"
        measured: dict[str, Any] = {}
        if status == "ok":
            try:
                measured = measure(spec)
            except Exception as exc:  # a product that cannot be read must not fail a build that succeeded
                log.warning("runs index: could not read the products of task '%s': %s", spec.name, exc)
        finished = failed_at.get(spec.name) if status == "failed" else _finished(spec)
        start = started.get(spec.name)
        error = None
        if status == "failed":
            error = f"{(failure or {}).get('error') or 'error'}: {(failure or {}).get('message') or ''}".strip()
        records.append(
            RunRecord(
                identity=ident["identity"],
                task=spec.name,
                status=status,
                build_id=build_id,
                started_at=start,
                finished_at=finished if finished is not None else time.time(),
                duration_s=round(finished - start, 3) if finished is not None and start is not None else None,
                params=dict(spec.params),
                metrics=measured.get("metrics", {}),
                segments=measured.get("segments", []),
                curves=measured.get("curves"),
                outputs=measured.get("outputs", {}),
                data_fingerprint=fingerprints.get(spec.name),
                git_commit=git[0],
                git_dirty=git[1],
                lock_hash=ident["components"].get("lock"),
                version=measured.get("version"),
                wandb_run_id=wandb.get(spec.name),
                source=spec.source.name,
                components=dict(ident["components"]),
                library_files=dict(ident["library_files"]),
                cells=_cells(spec),
                error=error,
            )
        )
    try:
        record_runs(runs_root(checked), records)
    except OSError as exc:
        log.warning("could not write the runs index: %s", exc)
    return records


def measure(spec: TaskSpec) -> dict[str, Any]:
    """What a task's products say it measured: metrics, segments, learning curves, outputs, version."""
    product = {k: Path(v) for k, v in spec.product.items()}
    metrics: dict[str, float] = {}
    out: dict[str, Any] = {"outputs": {}}
    for key in SUMMARY_KEYS:
        data = _json(product.get(key))
        if not isinstance(data, Mapping):
            continue
        if "booster_params" in data and isinstance(data.get("summary"), Mapping):  # train
            metrics.update(numeric_metrics(data["summary"], depth=0))
            curves = data.get("learning_curves")
            if isinstance(curves, Mapping):
                out["curves"] = dict(curves)
        elif isinstance(data.get("metrics"), Mapping):  # evaluate: headline metrics first
            values = numeric_metrics(data["metrics"], depth=0)
            first = [k for k in data.get("headline", []) if k in values]
            metrics.update({k: values[k] for k in [*first, *(k for k in values if k not in first)]})
            if data.get("task_type"):
                out["outputs"]["task_type"] = data["task_type"]
        else:
            metrics.update(numeric_metrics(data))
    segments = product.get("segments")
    if segments is not None and segments.suffix == ".parquet" and segments.is_file():
        import pandas as pd

        frame = pd.read_parquet(segments)
        out["segments"] = json.loads(frame.to_json(orient="records"))
    gate = _json(product.get("gate"))
    if isinstance(gate, Mapping):
        out["outputs"].update({"gate_metric": gate.get("metric"), "promote": gate.get("promote")})
    registration = _json(product.get("registration"))
    if isinstance(registration, Mapping):
        out["version"] = registration.get("version")
        out["outputs"].update({"created": registration.get("created"), "promoted": registration.get("promoted")})
    manifest = _json(product.get("manifest"))
    if isinstance(manifest, Mapping):
        out["outputs"].update(
            {"model_version": manifest.get("model_version"), "wheel": Path(str(manifest.get("wheel", ""))).name}
        )
    out["metrics"] = metrics
    return out


def record_stage_run(
    stage: Stage[Any],
    *,
    trial: int,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    curves: Mapping[str, Any] | None = None,
    wandb_run_id: str | None = None,
    duration_s: float | None = None,
    status: str = "ok",
    error: str | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Record one run a task makes itself (a tuning trial) in the index of the stage's root.

    Args:
        stage: the task's stage context (its run identity becomes the record's ``parent``).
        trial: the trial's number (part of its identity, with ``params``).
        params: what the trial ran with (the values it tried).
        metrics: what it measured (``valid_binary_logloss``...; names nbops knows get a direction).
        curves: its learning curves, as :func:`nbops.modeling.train.learning_curves` returns them.
        status: ``ok``, or ``failed`` with ``error`` (a pruned trial is ``ok`` with what it measured;
            say it in ``outputs``).

    Under a build the record carries the build id and the task's inputs; run by hand (JupyterLab)
    it goes to the interactive root's own index.
    """
    root = stage.root or stage.project
    identities = run_identities()
    fingerprint = None
    for products in stage.upstream.values():
        data = _json(products.get("summary"))
        if isinstance(data, Mapping) and isinstance(data.get("fingerprint"), str):
            fingerprint = data["fingerprint"]
            break
    git = _git(stage.project)
    now = time.time()
    run = RunRecord(
        identity=trial_identity(stage.identity, trial, params),
        task=stage.name,
        status=status,
        build_id=os.environ.get(BUILD_ID_ENV) or None,
        started_at=now - duration_s if duration_s is not None else None,
        finished_at=now,
        duration_s=duration_s,
        params=dict(params),
        metrics={k: float(v) for k, v in metrics.items()},
        curves=dict(curves) if curves is not None else None,
        outputs=dict(outputs or {}),
        data_fingerprint=fingerprint,
        git_commit=git[0],
        git_dirty=git[1],
        lock_hash=lineage.lock_digest(stage.project),
        wandb_run_id=wandb_run_id,
        components={"upstream": {u: identities[u] for u in stage.upstream if u in identities}},
        parent=stage.identity,
        trial=trial,
        error=error,
    )
    record_runs(root, [run])
    return run


# ----------------------------------------------------------------------------- reading


def registry_versions(checked: CheckedProject) -> dict[str, str]:
    """Each registry version's training run identity, from the registry's metadata (for versions whose
    register run the index does not hold)."""
    from nbops.config.paths import registry_dir

    out: dict[str, str] = {}
    folder = registry_dir(runs_root(checked))
    for meta in sorted(folder.glob("*/versions/v*/metadata.json")) if folder.is_dir() else []:
        try:
            identity = json.loads(meta.read_text()).get("run_identity")
        except (OSError, ValueError):
            continue
        if isinstance(identity, str):
            out[meta.parent.name] = identity
    return out


def diff(checked: CheckedProject, a: str, b: str, runs: Sequence[RunRecord] | None = None) -> RunDiff:
    """``nbops runs diff A B``: A and B are run ids (identity prefixes), build ids or versions."""
    runs = list(read_runs(runs_root(checked)) if runs is None else runs)
    versions = registry_versions(checked)
    return diff_selections(select(a, runs, versions), select(b, runs, versions), runs)


# ----------------------------------------------------------------------------- helpers


def _json(path: Path | None) -> Any:
    if path is None or path.suffix != ".json" or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finished(spec: TaskSpec) -> float | None:
    """When the task ended: Ploomber's timestamp beside its executed notebook, else the file's time."""
    nb = Path(spec.product.get("nb", ""))
    meta = _json(nb.parent / f".{nb.name}.metadata") if nb.name else None
    if isinstance(meta, Mapping) and isinstance(meta.get("timestamp"), int | float):
        return float(meta["timestamp"])
    try:
        return nb.stat().st_mtime
    except OSError:
        return None


def _cells(spec: TaskSpec) -> list[str]:
    import hashlib

    try:
        return [hashlib.sha256(c.encode()).hexdigest()[:12] for c in lineage.code_cells(spec.source)]
    except (OSError, ValueError, KeyError):
        return []


def _git(project: Path) -> tuple[str | None, bool | None]:
    from nbops.registry.publish import git_commit, git_dirty

    return git_commit(project), git_dirty(project)


def _fingerprints(tasks: Sequence[TaskSpec]) -> dict[str, str]:
    """Per task, the fingerprint of the ingested data it (or a task it depends on) read."""
    by_name = {t.name: t for t in tasks}
    own: dict[str, str] = {}
    for t in tasks:
        data = _json(Path(t.product["summary"])) if "summary" in t.product else None
        if isinstance(data, Mapping) and isinstance(data.get("fingerprint"), str):
            own[t.name] = data["fingerprint"]
    out: dict[str, str] = {}

    def find(name: str, seen: frozenset[str] = frozenset()) -> str | None:
        if name in own:
            return own[name]
        for up in by_name[name].upstream if name in by_name else []:
            if up not in seen and (found := find(up, seen | {name})):
                return found
        return None

    for t in tasks:
        if (fp := find(t.name)) is not None:
            out[t.name] = fp
    return out
