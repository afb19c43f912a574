"""Run identities: one id per task run, from its code, its parameters and its inputs' identities.

``nbops build`` computes every task's identity before Ploomber starts and hands them to the
stages (``NBOPS_RUN_IDENTITIES``), so the same id names the task's W&B run, heads its executed
report and, for training, is stored with the registered model version and in the wheel. After the
build the id is written into Ploomber's metadata beside each product, and recorded here with the
reasons the task ran. The next build recomputes the identities (in milliseconds, without
Ploomber); when nothing differs and every product is as it was left, it skips starting Ploomber at
all. When something differs, the components say what: which code cell, which parameter (old and new
value), which input. ``nbops why TASK`` prints it.

The raw data enters through ``data_version`` (size and modification time of the data file) and
``labelled_through``, the project's feature module through its content (``feature_code``); every
other input is a product of an upstream task, whose identity stands in for its fingerprint: the
same code and parameters on the same inputs give the same products.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from nbops import __version__, locks
from nbops.config import paths
from nbops.config.spec import TaskSpec
from nbops.errors import ConfigError
from nbops.files import write_json
from nbops.pipeline.code_deps import library_fingerprint

STATE_FILE = paths.LINEAGE_FILE
LOCK_FILE = "requirements.lock"
# A task parameter naming a file of the project whose content the task runs (the feature module):
# the content, not only the name, is part of the task's identity.
CODE_PARAMS = ("feature_code",)


class TaskIdentity(TypedDict):
    """A task's identity and what it was computed from (the start of its record in the state file)."""

    identity: str
    components: dict[str, Any]  # code, params, products, upstream, nbops, library, lock, options
    library_files: dict[str, str]  # digest of each library file the notebook runs


def code_cells(source: Path) -> list[str]:
    """The code a notebook runs, cell by cell: sources only, without outputs or metadata."""
    if source.suffix == ".ipynb":
        cells = json.loads(source.read_text())["cells"]
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [source.read_text()]


def notebook_code(source: Path) -> str:
    """The code a notebook runs: its code cells' sources joined, without outputs or metadata."""
    return "\n# --- cell ---\n".join(code_cells(source))


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def identities(tasks: list[TaskSpec]) -> dict[str, TaskIdentity]:
    """Each task's identity and the components it was computed from, in DAG order."""
    by_name = {t.name: t for t in tasks}
    out: dict[str, TaskIdentity] = {}

    def visit(name: str) -> str:
        if name in out:
            return out[name]["identity"]
        task = by_name[name]
        code = notebook_code(task.source)
        library = library_fingerprint(code)
        components: dict[str, Any] = {
            "code": hashlib.sha256(code.encode()).hexdigest(),
            "params": {k: _digest(v) for k, v in sorted(task.params.items())},
            "products": _digest(task.product),
            "upstream": {u: visit(u) for u in task.upstream},
            "nbops": __version__,
            # the library code the notebook runs, and the pinned environment it runs in
            "library": _digest(library),
            "lock": lock_digest(task.project),
            "options": _digest(task.options),
        }
        project_code = project_code_digests(task)
        if project_code:
            components["project_code"] = project_code
        out[name] = {"identity": _digest(components)[:16], "components": components, "library_files": library}
        return out[name]["identity"]

    for task in tasks:
        visit(task.name)
    return out


def project_code_digests(task: TaskSpec) -> dict[str, str | None]:
    """SHA-256 (16 hex digits; None for a missing file) of each project file a parameter of the task
    names as code it runs (``feature_code: features.py``), keyed by the parameter's value."""
    out: dict[str, str | None] = {}
    for key in CODE_PARAMS:
        value = task.params.get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value) if Path(value).is_absolute() or task.project is None else task.project / value
        try:
            out[value] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError:
            out[value] = None
    return out


def lock_digest(project: Path | None) -> str | None:
    """SHA-256 of the project's requirements.lock (None when the project has none)."""
    if project is None:
        return None
    try:
        return hashlib.sha256((project / LOCK_FILE).read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None


def product_state(product: Mapping[str, str]) -> dict[str, list[int] | None]:
    """Size and modification time of each product and of Ploomber's metadata beside it."""
    state: dict[str, list[int] | None] = {}
    for path in map(Path, product.values()):
        for p in (path, path.parent / f".{path.name}.metadata"):
            try:
                st = p.stat()
                state[str(p)] = [st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0]
            except FileNotFoundError:
                state[str(p)] = None
    return state


def load_state(root: Path) -> dict[str, Any]:
    path = root / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return state


def save_state(
    root: Path,
    tasks: list[TaskSpec],
    build_id: str,
    ran: Mapping[str, bool] | None = None,
    reasons: Mapping[str, list[str]] | None = None,
    only: set[str] | None = None,
) -> dict[str, Any]:
    """Record the tasks' identities, product states and why each ran, after a successful build.

    The record is read, changed and written back under the root's state lock: single-task runs (an
    Airflow DAG's independent stages) finish side by side, and each must keep what the others wrote.

    Args:
        ran: per task, whether it ran in this build (default: unknown, recorded as ran).
        reasons: per task, what differed from the previous record before the build.
        only: record just these tasks and keep the others' records (a one-task build).
    """
    ids = identities(tasks)  # reads the notebooks and library files: done before taking the lock
    with locks.project_lock(root / paths.STATE_LOCK, command=locks.command_line()):
        return _save_state_locked(root, tasks, ids, build_id, ran, reasons, only)


def _save_state_locked(
    root: Path,
    tasks: list[TaskSpec],
    ids: Mapping[str, TaskIdentity],
    build_id: str,
    ran: Mapping[str, bool] | None,
    reasons: Mapping[str, list[str]] | None,
    only: set[str] | None,
) -> dict[str, Any]:
    before = load_state(root)
    # a one-task build keeps the other records; a whole build rewrites them all
    state = dict(before) if only is not None else {}
    for t in tasks:
        if only is not None and t.name not in only:
            continue
        previous = before.get(t.name) or {}
        did_run = True if ran is None else bool(ran.get(t.name, False))
        why = list((reasons or {}).get(t.name, []))
        state[t.name] = {
            **ids[t.name],
            "values": {k: _short(v) for k, v in sorted(t.params.items())},
            "cells": [hashlib.sha256(c.encode()).hexdigest()[:12] for c in code_cells(t.source)],
            "products": product_state(t.product),
            "build_id": build_id,
            "recorded_at": time.time(),
            # the last build that ran the task, and why; a skipped task keeps the one before
            "last_run": {"build_id": build_id, "at": time.time(), "reasons": why}
            if did_run
            else previous.get("last_run"),
            "last_build": {"build_id": build_id, "ran": did_run, "reasons": why},
        }
    write_json(state, root / STATE_FILE, indent=1)
    return state


def changes(tasks: list[TaskSpec], root: Path) -> dict[str, list[str]]:
    """Per task, what differs from the last recorded build (empty list: nothing)."""
    recorded = load_state(root)
    ids = identities(tasks)
    out: dict[str, list[str]] = {}
    for task in tasks:
        before = recorded.get(task.name)
        now = ids[task.name]
        reasons: list[str] = []
        if before is None:
            reasons.append("never built")
        else:
            old, new = before["components"], now["components"]
            if old["code"] != new["code"]:
                reasons.append(_code_change(task, before.get("cells")))
            values = before.get("values", {})
            for key in sorted(set(old["params"]) | set(new["params"])):
                if old["params"].get(key) != new["params"].get(key):
                    reasons.append(_param_change(key, values.get(key), task.params.get(key, "(removed)")))
            if old["products"] != new["products"]:
                reasons.append("product paths changed")
            for up, ident in new["upstream"].items():
                if old["upstream"].get(up) != ident:
                    reasons.append(f"input from '{up}' changed")
            if old.get("nbops") != new["nbops"]:
                reasons.append("nbops version changed")
            if old.get("project_code", {}) != new.get("project_code", {}):
                reasons.append(_project_code_change(old.get("project_code", {}), new.get("project_code", {})))
            if old.get("library") != new["library"]:
                reasons.append(_library_change(before.get("library_files") or {}, now["library_files"]))
            if old.get("options", new["options"]) != new["options"]:
                reasons.append(
                    f"the task's settings in pipeline.yaml changed ({', '.join(sorted(task.options)) or 'removed'})"
                )
            if old.get("lock") != new["lock"]:
                reasons.append(f"the environment changed ({LOCK_FILE})")
            if before.get("products") != product_state(task.product):
                reasons.append(_product_change(before.get("products") or {}, product_state(task.product)))
        out[task.name] = reasons
    # A task that will run remakes its products, so the tasks that read them run after it, even when
    # its identity did not change (a removed or hand-edited product).
    for task in topological(tasks):
        why = out[task.name]
        if "never built" in why:
            continue
        for up in task.upstream:
            if out.get(up) and f"input from '{up}' changed" not in why:
                why.append(f"input from '{up}' will be rebuilt")
    return out


def topological(tasks: list[TaskSpec]) -> list[TaskSpec]:
    """The tasks with each one after every task it depends on (declaration order among equals)."""
    by_name = {t.name: t for t in tasks}
    done: set[str] = set()
    order: list[TaskSpec] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in done or name not in by_name:
            return
        if name in path:
            raise ConfigError(f"pipeline.yaml: the tasks depend on each other in a cycle: {' -> '.join((*path, name))}")
        for up in by_name[name].upstream:
            visit(up, (*path, name))
        done.add(name)
        order.append(by_name[name])

    for t in tasks:
        visit(t.name)
    return order


def _code_change(task: TaskSpec, old_cells: list[str] | None) -> str:
    new_cells = [hashlib.sha256(c.encode()).hexdigest()[:12] for c in code_cells(task.source)]
    if old_cells is None:
        return f"notebook code changed ({task.source.name})"
    if len(old_cells) != len(new_cells):
        return f"notebook code changed ({task.source.name}: {len(old_cells)} -> {len(new_cells)} code cells)"
    changed = [str(i + 1) for i, (a, b) in enumerate(zip(old_cells, new_cells, strict=True)) if a != b]
    return f"notebook code changed ({task.source.name}: code cell {', '.join(changed)} of {len(new_cells)})"


def _library_change(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
    if not changed:
        return "library code changed"
    shown = ", ".join(f"src/nbops/{f}" for f in changed[:4]) + (
        f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    )
    return f"library code changed ({shown})"


def _project_code_change(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> str:
    changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
    return f"feature code changed ({', '.join(changed)})"


def _param_change(key: str, old: str | None, new: Any) -> str:
    if key == "data_version":
        return "the data file changed (its size or modification time differs)"
    if old is None:
        return f"parameter '{key}' changed (now {_short(new)})"
    return f"parameter '{key}' changed: {old} -> {_short(new)}"


def _product_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    gone = [Path(p).name for p, st in new.items() if st is None and not Path(p).name.endswith(".metadata")]
    edited = [
        Path(p).name
        for p, st in new.items()
        if st is not None and old.get(p) != st and not Path(p).name.endswith(".metadata")
    ]
    if gone:
        return f"a product was removed since the last build ({', '.join(gone)})"
    if edited:
        return f"a product was modified since the last build ({', '.join(edited)})"
    return "a product was modified or removed since the last build"


def forget_ploomber_metadata(task: TaskSpec) -> None:
    """Remove Ploomber's metadata beside ``task``'s products, so Ploomber considers it outdated."""
    for path in map(Path, task.product.values()):
        (path.parent / f".{path.name}.metadata").unlink(missing_ok=True)


def stamp_ploomber_metadata(task: TaskSpec, identity: str, build_id: str) -> None:
    """Write the run identity into Ploomber's metadata file beside each product of ``task``.

    Ploomber reads only its own keys (timestamp, stored_source_code, params) and rewrites the file
    when the task next runs, so the stamp always belongs to the run that made the product.
    """
    for path in map(Path, task.product.values()):
        meta = path.parent / f".{path.name}.metadata"
        try:
            data = json.loads(meta.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or data.get("nbops_run_identity") == identity:
            continue
        data["nbops_run_identity"] = identity
        data["nbops_build_id"] = build_id
        write_json(data, meta, indent=None, sort_keys=False)


def why_text(tasks: list[TaskSpec], root: Path, task: str | None = None) -> str:
    """Why each task (or ``task``) ran or was skipped in the last build, and whether it would run now."""
    names = [t.name for t in tasks]
    if task is not None and task not in names:
        raise ConfigError(f"nbops why {task}: no such task in pipeline.yaml; the tasks are {', '.join(names)}")
    recorded = load_state(root)
    pending = changes(tasks, root)
    ids = identities(tasks)
    lines: list[str] = []
    for t in tasks:
        if task is not None and t.name != task:
            continue
        rec = recorded.get(t.name)
        lines.append(f"{t.name}  (identity now {ids[t.name]['identity']})")
        if rec is None:
            lines.append("  never built: it will run in the next build")
            continue
        last_build, last_run = rec.get("last_build") or {}, rec.get("last_run") or {}
        if last_build.get("ran"):
            why = "; ".join(last_build.get("reasons") or []) or "forced or first recorded build"
            lines.append(f"  last build {last_build.get('build_id')}: ran because {why}")
        elif last_build:
            lines.append(
                f"  last build {last_build.get('build_id')}: skipped, up to date (identity {rec['identity']} unchanged)"
            )
            if last_run:
                lines.append(
                    f"  last ran in build {last_run.get('build_id')} because "
                    f"{'; '.join(last_run.get('reasons') or []) or 'forced or first recorded build'}"
                )
        lines.append(
            f"  products made by run {rec['identity']} (stamped in Ploomber's metadata, its W&B run and report)"
        )
        if pending[t.name]:
            lines.append(f"  next build: will run, because {'; '.join(pending[t.name])}")
        else:
            lines.append("  next build: up to date, will be skipped")
    return "\n".join(lines)
