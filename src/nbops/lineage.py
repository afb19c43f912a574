"""Run identities: one id per task run, from its code, its parameters and its inputs' identities.

``nbops build`` records each task's identity and the state of its products after a successful
build. The next build recomputes the identities (in milliseconds, without Ploomber); when nothing
differs and every product is as it was left, it says so and skips starting Ploomber at all.
When something differs, the components say what: which code, which parameter, which input.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops import __version__
from nbops.pipeline_spec import TaskSpec

STATE_FILE = ".nbops/lineage.json"


def notebook_code(source: Path) -> str:
    """The code a notebook runs: its code cells' sources, without outputs or metadata."""
    if source.suffix == ".ipynb":
        cells = json.loads(source.read_text())["cells"]
        return "\n# --- cell ---\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return source.read_text()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def identities(tasks: list[TaskSpec]) -> dict[str, dict[str, Any]]:
    """Each task's identity and the components it was computed from, in DAG order."""
    by_name = {t.name: t for t in tasks}
    out: dict[str, dict[str, Any]] = {}

    def visit(name: str) -> str:
        if name in out:
            return out[name]["identity"]
        task = by_name[name]
        components = {
            "code": hashlib.sha256(notebook_code(task.source).encode()).hexdigest(),
            "params": {k: _digest(v) for k, v in sorted(task.params.items())},
            "products": _digest(task.product),
            "upstream": {u: visit(u) for u in task.upstream},
            "nbops": __version__,
        }
        out[name] = {"identity": _digest(components)[:16], "components": components}
        return out[name]["identity"]

    for task in tasks:
        visit(task.name)
    return out


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
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def save_state(root: Path, tasks: list[TaskSpec], build_id: str) -> dict[str, Any]:
    """Record every task's identity and product state after a successful build."""
    ids = identities(tasks)
    state = {
        t.name: {**ids[t.name], "products": product_state(t.product), "build_id": build_id, "recorded_at": time.time()}
        for t in tasks
    }
    path = root / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)
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
                reasons.append(f"notebook code changed ({task.source.name})")
            for key in sorted(set(old["params"]) | set(new["params"])):
                if old["params"].get(key) != new["params"].get(key):
                    reasons.append(f"parameter '{key}' changed")
            if old["products"] != new["products"]:
                reasons.append("product paths changed")
            for up, ident in new["upstream"].items():
                if old["upstream"].get(up) != ident:
                    reasons.append(f"input from '{up}' changed")
            if old.get("nbops") != new["nbops"]:
                reasons.append("nbops version changed")
            if before.get("products") != product_state(task.product):
                reasons.append("a product was modified or removed since the last build")
        out[task.name] = reasons
    return out
