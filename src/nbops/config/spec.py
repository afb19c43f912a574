"""Read ``pipeline.yaml`` and the env file without Ploomber.

Ploomber stays at the edge: this module only reads the two YAML files it already uses, so that
parameters are checked before anything runs (``nbops check``) and a notebook opened on its own finds
the same products as under the pipeline. ``pipeline.yaml`` remains the only place that knows the DAG.
"""

from __future__ import annotations

import ast
import getpass
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nbops.config.paths import PIPELINE_FILE
from nbops.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class TaskSpec:
    """One task of the DAG as declared in pipeline.yaml, with placeholders rendered."""

    name: str
    source: Path
    product: dict[str, str]
    params: dict[str, Any]
    upstream: list[str] = field(default_factory=list)
    raw_params: dict[str, Any] = field(default_factory=dict)
    project: Path | None = None
    # everything else pipeline.yaml says of the task (executor, report export settings, ...)
    options: dict[str, Any] = field(default_factory=dict)


def load_yaml(path: Path) -> dict[str, Any]:
    """Load a YAML mapping, naming the file and line when it does not parse."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    problem = _alias_problem(data)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, found {type(data).__name__}")
    return data


# More values than this, counted through aliases, is an alias bomb ("billion laughs"), not settings.
MAX_VALUES = 100_000


def _alias_problem(value: Any) -> str | None:
    """What is wrong with a YAML document's aliases, or None for ordinary settings: a key whose
    value contains itself, or values that expand through aliases beyond MAX_VALUES."""
    count = 0

    def walk(item: Any, path: str, open_at: dict[int, str]) -> str | None:
        nonlocal count
        count += 1
        if count > MAX_VALUES:
            return (
                f"key '{path}' expands through YAML aliases to more than {MAX_VALUES:,} values (an alias bomb); "
                "write the values out instead"
            )
        if not isinstance(item, dict | list):
            return None
        if id(item) in open_at:
            return (
                f"key '{open_at[id(item)] or '(top level)'}' refers to itself through a YAML alias "
                "(&name ... *name inside it); write its value out instead"
            )
        inner = {**open_at, id(item): path}
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            found = walk(child, f"{path}.{key}" if path else str(key), inner)
            if found is not None:
                return found
        return None

    return walk(value, "", {})


def render(value: Any, env: Mapping[str, Any], *, where: str) -> Any:
    """Substitute ``{{key}}`` placeholders as Ploomber does: a lone placeholder keeps its type."""
    if isinstance(value, dict):
        return {k: render(v, env, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, env, where=where) for v in value]
    if not isinstance(value, str):
        return value
    lone = _PLACEHOLDER.fullmatch(value.strip())
    if lone:
        return ploomber_cast(_lookup(lone.group(1), env, where))
    return _PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), env, where)), value)


def ploomber_cast(value: Any) -> Any:
    """Ploomber turns a rendered string into a Python value when it can ("none" -> None, "1" -> 1).

    The check applies the same cast, so it validates exactly the value a notebook will receive.
    """
    if not isinstance(value, str):
        return value
    lower = value.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower in ("none", "null"):
        return None
    try:
        return ast.literal_eval(value)
    except Exception:
        return value


def _lookup(key: str, env: Mapping[str, Any], where: str) -> Any:
    if key not in env:
        raise ConfigError(
            f"{where}: placeholder '{{{{{key}}}}}' is not defined in the env file; "
            f"add '{key}: ...' to env.yaml (defined: {', '.join(sorted(env))})"
        )
    return env[key]


def builtin_placeholders(env_file: Path) -> dict[str, Any]:
    """The placeholders Ploomber defines itself and that nbops uses."""
    return {"here": str(env_file.parent.resolve()), "cwd": str(Path.cwd()), "user": getpass.getuser()}


def load_env(
    project: Path, env_file: str | Path = "env.yaml", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Load the env file, apply overrides, and render placeholders inside its own values."""
    path = (project / env_file).resolve()
    raw = load_yaml(path)
    raw.update(overrides or {})
    builtins = builtin_placeholders(path)
    env = dict(raw)
    for _ in range(3):  # values may refer to built-ins through other values ({{root}} -> {{here}})
        env = {k: render(v, {**builtins, **env}, where=f"{path.name}:{k}") for k, v in env.items()}
    return env


def parameters_cell(source: Path) -> str:
    """The code of a notebook's ``parameters`` cell (.ipynb or a jupytext percent script)."""
    if source.suffix == ".ipynb":
        try:
            cells = json.loads(source.read_text())["cells"]
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{source}: not a readable notebook ({exc}); open and save it in JupyterLab") from exc
        code = next(
            ("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])),
            None,
        )
    else:
        match = re.search(r"# %%.*parameters.*\n(.*?)(?=\n# %%|\Z)", source.read_text(), re.S)
        code = match.group(1) if match else None
    if code is None:
        raise ConfigError(
            f"{source}: no cell tagged 'parameters'; Ploomber needs one to inject values "
            "(in JupyterLab: select the cell, open the property inspector, add the tag 'parameters')"
        )
    return code


def notebook_parameters(source: Path) -> dict[str, Any]:
    """Names and default values assigned in a notebook's ``parameters`` cell.

    Supports .ipynb and jupytext percent scripts. Values that are not literals map to ``...``;
    annotated assignments (``threshold: float = 0.5``) count, and one without a value maps to ``...``.
    """
    found: dict[str, Any] = {}
    for node in ast.parse(parameters_cell(source)).body:
        value: ast.expr | None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, value = node.target.id, node.value
        else:
            continue
        try:
            found[name] = ast.literal_eval(value) if value is not None else ...
        except ValueError:
            found[name] = ...
    return found


# Task keys TaskSpec holds in fields of their own.
_DECLARED = ("source", "name", "product", "params", "upstream")


def load_tasks(project: Path, env: Mapping[str, Any]) -> list[TaskSpec]:
    """The tasks of ``pipeline.yaml`` with placeholders rendered from ``env``."""
    spec_path = project / PIPELINE_FILE
    spec = load_yaml(spec_path)
    # the placeholders Ploomber defines itself ({{here}}: pipeline.yaml's folder), under the env's
    env = {**builtin_placeholders(spec_path), **env}
    tasks = []
    for i, raw in enumerate(spec.get("tasks", [])):
        where = f"{PIPELINE_FILE} task #{i + 1}"
        if "source" not in raw:
            raise ConfigError(f"{where}: every task needs a 'source' notebook")
        source = (project / raw["source"]).resolve()
        name = raw.get("name") or source.stem
        where = f"{PIPELINE_FILE} task '{name}'"
        if not source.exists():
            raise ConfigError(f"{where}: source {raw['source']} does not exist")
        product = render(raw.get("product", {}), env, where=f"{where} product")
        if isinstance(product, str):
            product = {"nb": product}
        upstream = raw.get("upstream") or []
        if isinstance(upstream, str):
            upstream = [upstream]
        tasks.append(
            TaskSpec(
                name=name,
                source=source,
                product={k: str(v) for k, v in product.items()},
                params=render(raw.get("params", {}), env, where=f"{where} params"),
                upstream=list(upstream),
                raw_params=dict(raw.get("params", {})),
                project=project.resolve(),
                options=render({k: v for k, v in raw.items() if k not in _DECLARED}, env, where=f"{where} settings"),
            )
        )
    return tasks
