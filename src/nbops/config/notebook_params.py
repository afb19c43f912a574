"""The typed parameters of a notebook you add to the pipeline: read from its annotated parameters cell.

A built-in stage's parameters are declared in :mod:`nbops.config.params`. A notebook of your own
declares them where Papermill and Ploomber already look, its ``parameters`` cell, with the type
annotations Python already has::

    threshold: float = 0.5
    segments: list[str] = []
    min_rows: Annotated[int, Field(ge=10)] = 50      # a bound, with pydantic's Field
    mode: Literal["fast", "full"] = "fast"

``nbops check`` builds the same kind of typed model from that cell (without running it: the cell is
parsed, only its annotations are evaluated) and validates the task's ``params`` in pipeline.yaml and
the env values behind them, before any kernel starts, with the messages the built-in stages give.
An assignment without an annotation takes the type of its literal default (``n = 3`` is an int).
"""

from __future__ import annotations

import ast
import functools
import typing
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, create_model

from nbops.config.params import STAGES, StageParams
from nbops.config.spec import parameters_cell
from nbops.errors import ConfigError

# Names Ploomber injects; they are not parameters.
INJECTED = ("upstream", "product")
# What an annotation may use without importing it in the cell.
_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "None": None,
    "Field": Field,
    "typing": typing,
    **{name: getattr(typing, name) for name in ("Annotated", "Literal", "Optional", "Union", "Any")},
}


def task_model(task: str, source: Path) -> type[StageParams]:
    """The parameter model of a task: a built-in stage's from :mod:`nbops.config.params`, any other
    task's from its notebook's annotated parameters cell."""
    if task in STAGES:
        return STAGES[task]
    stat = source.stat()
    return _cached_model(source.resolve(), task, stat.st_mtime_ns, stat.st_size)


def is_builtin(task: str) -> bool:
    """Whether ``task`` is one of nbops' own stages (its parameters typed in nbops.config.params)."""
    return task in STAGES


@functools.lru_cache(maxsize=64)
def _cached_model(source: Path, task: str, mtime_ns: int, size: int) -> type[StageParams]:
    return notebook_model(source, task)


def notebook_model(source: Path, task: str) -> type[StageParams]:
    """The parameter model of ``task`` from its notebook's parameters cell.

    Raises:
        ConfigError: the cell is missing, does not parse, or an annotation or default is unusable
            (naming the notebook, the line and the parameter).
    """
    code = parameters_cell(source)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ConfigError(f"{source.name}: the parameters cell does not parse (line {exc.lineno}: {exc.msg})") from exc
    namespace = dict(_NAMES)
    fields: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            _run_import(node, namespace, source)
            continue
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation_node, value = node.target.id, node.annotation, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation_node, value = node.targets[0].id, None, node.value
        else:
            continue
        if name in INJECTED:
            continue
        default = _default(value, name, source, node.lineno)
        if annotation_node is None:
            annotation: Any = Any if default is None or default is ... else type(default)
        else:
            try:
                annotation = eval(compile(ast.Expression(annotation_node), str(source), "eval"), namespace)  # noqa: S307 (the user's own cell)
            except Exception as exc:
                raise ConfigError(
                    f"{source.name} line {node.lineno}: the type of parameter '{name}' cannot be read "
                    f"({ast.unparse(annotation_node)}: {exc}); use int, float, str, bool, list[...], "
                    "Literal[...], Optional[...] or Annotated[..., Field(...)]"
                ) from exc
        if default is not ...:
            _check_default(annotation, default, name, source, node.lineno)
        fields[name] = (annotation, default)
    model_name = "".join(part.title() for part in task.replace("-", "_").split("_")) + "Params"
    try:
        return create_model(model_name, __base__=StageParams, **fields)
    except Exception as exc:  # pydantic refuses the declaration itself (e.g. a default of the wrong type)
        raise ConfigError(f"{source.name}: the parameters cell does not declare usable parameters: {exc}") from exc


def _check_default(annotation: Any, default: Any, name: str, source: Path, line: int) -> None:
    """The cell's default must be a value of its own type: a notebook run on its own uses it."""
    try:
        TypeAdapter(annotation).validate_python(default, strict=False)
    except ValidationError as exc:
        shown_type = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        reason = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        raise ConfigError(
            f"{source.name} line {line}: the default of parameter '{name}' ({default!r}) is not a valid "
            f"{shown_type}: {reason}; change the default or the annotation"
        ) from exc


def _default(value: ast.expr | None, name: str, source: Path, line: int) -> Any:
    """A literal default, or ``...`` (required) when there is none."""
    if value is None:
        return ...
    try:
        return ast.literal_eval(value)
    except ValueError as exc:
        raise ConfigError(
            f"{source.name} line {line}: the default of parameter '{name}' is not a literal "
            f"({ast.unparse(value)}); write a number, a string, a list, a dict, True/False or None"
        ) from exc


def _run_import(node: ast.Import | ast.ImportFrom, namespace: dict[str, Any], source: Path) -> None:
    """An import in the parameters cell (``from typing import Annotated``), so annotations can use it.
    Only typing, pydantic and annotated_types are honoured: the check must not run the user's code."""
    module = node.module if isinstance(node, ast.ImportFrom) else None
    allowed = ("typing", "pydantic", "annotated_types", "typing_extensions")
    names = [a.name for a in node.names]
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in allowed:
                namespace[alias.asname or alias.name] = __import__(alias.name)
        return
    if module is None or module.split(".")[0] not in allowed:
        return
    imported = __import__(module, fromlist=names)
    for alias in node.names:
        if alias.name != "*" and hasattr(imported, alias.name):
            namespace[alias.asname or alias.name] = getattr(imported, alias.name)
