"""The runs index: one JSON line per task run under ``<root>/.nbops/runs.jsonl``.

Every task run ``nbops build`` runs is recorded after it ran (nbops.pipeline.runs), and so is every
tuning trial: what it ran with (its parameters, the components of its run identity: code cells,
library files, inputs), what it measured (metrics, segment metrics, learning curves) and where it
came from (build, data fingerprint, git commit, lock hash, W&B run). The index is append-only: a
record is one ``write`` of one line on a file opened for appending, made under a short exclusive
lock of its own (``<root>/.nbops/runs.lock``), so single-task runs finishing side by side (Airflow's)
never interleave or lose a line. A reader never takes the lock: a line cut short by a killed writer
is skipped, and the next writer starts on a new line.

Why JSON lines rather than SQLite: a record is written once and never changed, the file is read
whole (a few thousand runs parse in milliseconds), it stays readable with any tool, and it works on
the shared storage a Dask cluster uses, where SQLite's locking is unreliable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nbops import locks
from nbops.config import paths
from nbops.errors import NbopsError

log = logging.getLogger(__name__)
# The version of a record's layout; a reader keeps what it knows of a newer one.
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed")
# Parameters whose change is a change of the data, not of how it is modelled.
DATA_PARAMS = ("data", "data_version", "labelled_through")
_VERSION = re.compile(r"v(\d{1,6})", re.IGNORECASE)


class RunNotFound(NbopsError):
    """A run, build or version named on the command line matches nothing (or more than one run)."""


@dataclass(frozen=True)
class RunRecord:
    """One task run (or one tuning trial), as the index keeps it.

    ``identity`` is the run identity (``nbops why``; the W&B run's name, the report's header): the
    same code, parameters and inputs give the same identity, so a task forced to run twice has two
    records of one identity, told apart by their build and time. A trial's identity is its own
    (:func:`trial_identity`), and ``parent`` is the identity of the task run it belongs to.
    """

    identity: str
    task: str
    status: str = "ok"  # ok | failed
    build_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # numbers only: the train summary, the test metrics, the monitoring summary...
    metrics: dict[str, float] = field(default_factory=dict)
    # evaluate: one row per segment level (segment, level, rows and each metric)
    segments: list[dict[str, Any]] = field(default_factory=list)
    # train: {"metric": name, "best_iteration": n, "train": [...], "valid": [...]} per boosting round
    curves: dict[str, Any] | None = None
    # what the run produced that is not a number (a gate decision, a wheel's name)
    outputs: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    lock_hash: str | None = None
    version: str | None = None  # register: the registry version it produced
    wandb_run_id: str | None = None
    source: str | None = None  # the notebook's file name
    # what the identity was computed from (nbops.pipeline.lineage): code, params, upstream, library...
    components: dict[str, Any] = field(default_factory=dict)
    library_files: dict[str, str] = field(default_factory=dict)
    cells: list[str] = field(default_factory=list)  # digest of each code cell, in order
    parent: str | None = None
    trial: int | None = None
    error: str | None = None
    recorded_at: float = field(default_factory=time.time)

    @property
    def when(self) -> float:
        """When the run ended (or was recorded)."""
        return self.finished_at if self.finished_at is not None else self.recorded_at

    @property
    def label(self) -> str:
        """``train``, or ``tune #3`` for a trial."""
        return self.task if self.trial is None else f"{self.task} #{self.trial}"

    def upstream(self) -> dict[str, str]:
        """The identities of the runs whose products this run read, by task."""
        up = self.components.get("upstream") or {}
        return {str(k): str(v) for k, v in up.items()} if isinstance(up, Mapping) else {}

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-safe values (NaN and infinities as null, so any JSON reader takes it)."""
        return {"schema": SCHEMA_VERSION, **_json_safe(asdict(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record from its JSON; keys a newer nbops added are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if not isinstance(values.get("identity"), str) or not isinstance(values.get("task"), str):
            raise ValueError("a run record needs 'identity' and 'task'")
        values["metrics"] = {
            str(k): float(v)
            for k, v in (values.get("metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return cls(**values)


def index_path(root: str | Path) -> Path:
    """``<root>/.nbops/runs.jsonl``."""
    return Path(root) / paths.RUNS_INDEX


def record_run(root: str | Path, run: RunRecord) -> RunRecord:
    """Append ``run`` to the index under ``root`` (the products root), atomically.

    One ``write`` of one line, under the index's own lock: two processes recording at once each add
    their whole line. Returns ``run``.
    """
    record_runs(root, [run])
    return run


def record_runs(root: str | Path, runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Append several records at once (one lock, one write)."""
    if not runs:
        return []
    for run in runs:
        if run.status not in STATUSES:
            raise ValueError(f"run status must be one of {', '.join(STATUSES)}, found {run.status!r}")
    data = "".join(json.dumps(r.to_dict(), separators=(",", ":"), allow_nan=False) + "\n" for r in runs).encode()
    path = index_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.project_lock(Path(root) / paths.RUNS_LOCK, command=locks.command_line()):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a writer killed mid-line: its fragment stays a line of its own
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
    return list(runs)


def read_runs(root: str | Path) -> list[RunRecord]:
    """Every record of the index under ``root``, oldest first ([] before the first build). Lines that
    do not parse (one cut short by a killed writer) are skipped."""
    try:
        raw = index_path(root).read_bytes()
    except FileNotFoundError:
        return []
    out: list[RunRecord] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(RunRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            log.debug("%s line %d skipped: %s", index_path(root), number, exc)
    return out


def newest_first(runs: Iterable[RunRecord]) -> list[RunRecord]:
    return sorted(runs, key=lambda r: (r.when, r.recorded_at), reverse=True)


def trial_identity(parent: str | None, trial: int, params: Mapping[str, Any] | None = None) -> str:
    """A tuning trial's own identity (16 hex digits): from the task run it belongs to, its number and
    its parameters, so the same study gives the same trial identities."""
    text = json.dumps({"parent": parent, "trial": trial, "params": dict(params or {})}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def numeric_metrics(values: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """The finite numbers of a summary (nested mappings flattened as ``a.b``, booleans left out)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[name] = float(value)
        elif isinstance(value, Mapping) and depth > 0:
            out.update(numeric_metrics(value, f"{name}.", depth - 1))
    return out


def lineage_params(run: RunRecord, runs: Sequence[RunRecord]) -> dict[str, Any]:
    """The run's parameters and those of the runs it read from, nearest first: an evaluate run's
    ``learning_rate`` is that of the train run whose model it evaluated."""
    by_identity: dict[str, RunRecord] = {}
    for r in runs:  # oldest first: the newest record of an identity wins
        if r.status == "ok":
            by_identity[r.identity] = r
    out: dict[str, Any] = {}
    seen: set[str] = set()
    frontier = [run]
    while frontier:
        following: list[RunRecord] = []
        for current in frontier:
            if current.identity in seen:
                continue
            seen.add(current.identity)
            for key, value in current.params.items():
                out.setdefault(key, value)
            following += [by_identity[i] for i in current.upstream().values() if i in by_identity]
        frontier = following
    return out


# ----------------------------------------------------------------------------- choosing runs


@dataclass(frozen=True)
class Selection:
    """What a name on the command line stands for: one run, a build's runs or a model version's."""

    name: str  # as given
    kind: str  # run | build | version
    description: str  # for the reader: "build 20261201-…", "run 3f2a… (train)", "v0002 (train, evaluate)"
    runs: dict[str, RunRecord]  # by task (or trial label)


def run_selection(run: RunRecord, name: str | None = None) -> Selection:
    """One run as a selection (what the dashboard's pickers compare)."""
    return Selection(
        name or run.identity, "run", f"run {run.identity} ({run.label}, build {run.build_id or '-'})", {run.label: run}
    )


def select(selector: str, runs: Sequence[RunRecord], versions: Mapping[str, str] | None = None) -> Selection:
    """Resolve a run id (a prefix of a run identity), a build id (or a prefix of one) or a registry
    version (``v0002``: the train and evaluate runs that produced it).

    Args:
        runs: the index's records.
        versions: registry version -> the identity of the training run that made it (the registry's
            metadata), for versions whose register run the index does not hold.

    Raises:
        RunNotFound: nothing matches, or a prefix matches more than one run.
    """
    text = selector.strip()
    if not text:
        raise RunNotFound("an empty name: give a run id, a build id or a version (`nbops runs` lists them)")
    if m := _VERSION.fullmatch(text):
        return _select_version(f"v{int(m[1]):04d}", text, runs, versions or {})
    if "-" in text:
        return _select_build(text, runs)
    matched = sorted({r.identity for r in runs if r.identity.startswith(text.lower())})
    if len(matched) == 1:
        return run_selection(newest_first(r for r in runs if r.identity == matched[0])[0], text)
    if len(matched) > 1:
        shown = ", ".join(f"{i} ({_task_of(i, runs)})" for i in matched[:6]) + (" ..." if len(matched) > 6 else "")
        raise RunNotFound(f"run id '{text}' is the start of {len(matched)} runs: {shown}; give more of its digits")
    if any((r.build_id or "").startswith(text) for r in runs):
        return _select_build(text, runs)
    raise RunNotFound(_not_found(text, runs))


def _task_of(identity: str, runs: Sequence[RunRecord]) -> str:
    return next((r.label for r in runs if r.identity == identity), "?")


def _not_found(text: str, runs: Sequence[RunRecord]) -> str:
    if not runs:
        return (
            f"no run matches '{text}': the runs index is empty (a build records every task run it runs); "
            "run `nbops build` first"
        )
    return (
        f"no run, build or version matches '{text}'; expected a run id (the start of one of the "
        f"{len({r.identity for r in runs})} run identities), a build id or a version such as v0001: "
        "`nbops runs` lists them"
    )


def _select_build(text: str, runs: Sequence[RunRecord]) -> Selection:
    builds = sorted({r.build_id for r in runs if r.build_id and r.build_id.startswith(text)})
    if not builds:
        raise RunNotFound(_not_found(text, runs))
    if len(builds) > 1:
        raise RunNotFound(
            f"build id '{text}' is the start of {len(builds)} builds: {', '.join(builds[:6])}; give more of it"
        )
    chosen = {r.label: r for r in sorted(runs, key=lambda r: r.when) if r.build_id == builds[0] and r.trial is None}
    return Selection(text, "build", f"build {builds[0]} ({', '.join(chosen)})", chosen)


def _select_version(version: str, text: str, runs: Sequence[RunRecord], versions: Mapping[str, str]) -> Selection:
    ok = [r for r in runs if r.status == "ok"]
    register = newest_first(r for r in ok if r.task == "register" and r.version == version)
    by_identity = {r.identity: r for r in sorted(ok, key=lambda r: r.when)}
    chosen: dict[str, RunRecord] = {}
    if register:
        upstream = register[0].upstream()
        for task in ("train", "evaluate"):
            if upstream.get(task) in by_identity:
                chosen[task] = by_identity[upstream[task]]
    elif version in versions and versions[version] in by_identity:
        train = by_identity[versions[version]]
        chosen["train"] = train
        evaluated = newest_first(r for r in ok if r.task == "evaluate" and r.upstream().get("train") == train.identity)
        if evaluated:
            chosen["evaluate"] = evaluated[0]
    if not chosen:
        known = sorted({r.version for r in ok if r.version})
        raise RunNotFound(
            f"no recorded run produced {version}: the runs index knows "
            + (f"the versions {', '.join(known)}" if known else "no registered version")
            + " (runs are recorded from the first build that has the index on; `nbops models list` lists the "
            "registry)"
        )
    return Selection(text, "version", f"{version} ({', '.join(chosen)})", chosen)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return _json_safe(value.item())
    return str(value)
