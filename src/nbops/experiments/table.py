"""The runs as a table: filtered, sorted by a metric (best first, by its direction), one row per run.

The same rows feed ``nbops runs`` (as text), the experiments dashboard and the static site (as HTML).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from nbops.errors import NbopsError
from nbops.experiments.diff import format_number
from nbops.experiments.index import RunRecord, newest_first
from nbops.modeling.metrics import metric_direction

# Parameters that differ between runs without being a modelling choice.
QUIET_PARAMS = ("tracking", "data_version", "labelled_batches")
MAX_PARAM_COLUMNS = 6
MAX_METRIC_COLUMNS = 8


def metric_names(runs: Sequence[RunRecord]) -> list[str]:
    """Every metric name the runs carry, in the order first seen."""
    names: list[str] = []
    for r in runs:
        names += [n for n in r.metrics if n not in names]
    return names


def sort_runs(
    runs: Sequence[RunRecord], *, task: str | None = None, sort: str | None = None, limit: int | None = None
) -> list[RunRecord]:
    """The runs of ``task`` (or all; a trial counts as its task's), newest first, or by metric ``sort``
    best first (higher first for a metric nbops knows no direction of), runs without it last.

    Raises:
        NbopsError: ``task`` has no run, or no run has metric ``sort``.
    """
    chosen = [r for r in runs if task is None or r.task == task]
    if task is not None and not chosen:
        tasks = sorted({r.task for r in runs})
        raise NbopsError(
            f"--task {task}: no run of that task in the runs index; "
            + (f"it holds runs of {', '.join(tasks)}" if tasks else "it is empty (run `nbops build` first)")
        )
    ordered = newest_first(chosen)
    if sort is not None:
        having = [r for r in ordered if sort in r.metrics]
        if not having:
            names = metric_names(chosen)
            raise NbopsError(
                f"--sort {sort}: no {'run of ' + task if task else 'run'} has that metric; expected one of "
                f"{', '.join(names) if names else '(none: no run recorded a metric)'}"
            )
        higher = metric_direction(sort) is not False
        having.sort(key=lambda r: r.metrics[sort], reverse=higher)  # stable: newest first among equals
        ordered = having + [r for r in ordered if sort not in r.metrics]
    return ordered[:limit] if limit else ordered


def headline(run: RunRecord, n: int = 2) -> str:
    """The run's first metrics, those with a direction first: ``roc_auc 0.7650, pr_auc 0.3683``."""
    names = sorted(run.metrics, key=lambda k: metric_direction(k) is None)[:n]
    if not names:  # a task that measures nothing: what it produced (package: the wheel's model version)
        texts = [(k, v) for k, v in run.outputs.items() if isinstance(v, str) and v][:n]
        return ", ".join(f"{k} {v}" for k, v in texts)
    return ", ".join(f"{k} {format_number(run.metrics[k])}" for k in names)


def when_text(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else ""


def runs_rows(
    runs: Sequence[RunRecord], *, task: str | None = None, sort: str | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per run (values as recorded: numbers stay numbers).

    Without ``task``: run, finished, task, status, seconds, build, version, metrics (the headline).
    With ``task``: the parameters that differ between the runs and every metric as columns.
    """
    base = ["run", "finished", "task", "status", "seconds", "build"]
    rows: list[dict[str, Any]] = []
    for r in runs:
        rows.append(
            {
                "run": r.identity,
                "finished": when_text(r.when),
                "task": r.label,
                "status": r.status,
                "seconds": round(r.duration_s, 1) if r.duration_s is not None else None,
                "build": r.build_id or "",
                "version": r.version or "",
            }
        )
    if task is None:
        for row, r in zip(rows, runs, strict=True):
            row["metrics"] = headline(r) if r.status == "ok" else f"failed: {(r.error or '').splitlines()[0][:80]}"
        return [*base, "version", "metrics"], rows
    varying = [
        k
        for k in _keys(r.params for r in runs)
        if k not in QUIET_PARAMS and len({repr(r.params.get(k)) for r in runs}) > 1
    ][:MAX_PARAM_COLUMNS]
    metrics = metric_names(runs)
    if sort and sort in metrics:
        metrics.remove(sort)
        metrics.insert(0, sort)
    metrics = sorted(metrics, key=lambda k: (k != sort, metric_direction(k) is None))[:MAX_METRIC_COLUMNS]
    for row, r in zip(rows, runs, strict=True):
        row.update({k: r.params.get(k) for k in varying})
        row.update({k: r.metrics.get(k) for k in metrics})
    has_version = any(r.version for r in runs)
    columns = [c for c in base if c != "task" or any(r.trial is not None for r in runs)]
    return [*columns, *varying, *metrics, *(["version"] if has_version else [])], rows


def as_text(value: Any, column: str = "") -> str:
    """A cell for the terminal."""
    if value is None:
        return ""
    if column == "seconds" and isinstance(value, int | float):
        return f"{value:.1f}"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _keys(dicts: Any) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out += [k for k in d if k not in out]
    return out
