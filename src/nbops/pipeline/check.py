"""``nbops check``: validate env and pipeline parameters before any kernel starts.

Runs in well under a second because it imports neither Ploomber nor Jupyter: it reads the two YAML
files and each notebook's parameters cell, and validates every value against the typed stage models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops.config.notebook_params import is_builtin, task_model
from nbops.config.params import EnvSettings, unknown_key_message, validate_params
from nbops.config.spec import TaskSpec, load_env, load_tasks, notebook_parameters
from nbops.errors import ConfigError, missing_column_found

# Names Ploomber injects into every notebook; they are not stage parameters.
INJECTED = {"upstream", "product"}
# Stage parameters that pipeline.yaml computes from other values, never read from the env file.
TASK_ONLY = {"labelled_batches"}


@dataclass(frozen=True)
class CheckedProject:
    """The result of a successful check: typed settings and the rendered tasks."""

    settings: EnvSettings
    env: dict[str, Any]
    tasks: list[TaskSpec]
    project: Path | None = None


def check_project(
    project: Path, env_file: str = "env.yaml", overrides: Mapping[str, Any] | None = None
) -> CheckedProject:
    """Validate the env file, the overrides and every task's parameters; raise one ConfigError listing all problems.

    Args:
        project: the folder holding pipeline.yaml.
        env_file: the env file name, relative to ``project``.
        overrides: values given on the command line (``--set key=value``); strings are coerced.

    Returns:
        The typed settings and the tasks with rendered parameters.
    """
    problems: list[str] = []
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in EnvSettings.model_fields:
            problems.append(unknown_key_message(key, list(EnvSettings.model_fields), where="command line"))
    if problems:
        raise ConfigError("\n".join(problems))
    env = load_env(project, env_file, overrides)
    for key in TASK_ONLY & set(env):
        problems.append(
            f"{env_file}: '{key}' is derived in pipeline.yaml from 'root'; remove it from the env file and set 'root' "
            "instead"
        )
    settings = None
    try:
        settings = validate_params(EnvSettings, env, where=env_file)
    except ConfigError as exc:
        problems.append(str(exc))
    tasks: list[TaskSpec] = []
    try:
        tasks = load_tasks(project, env)
    except ConfigError as exc:
        problems.append(str(exc))
    names = {t.name for t in tasks}
    for task in tasks:
        problems.extend(_check_task(task, names))
    if settings is not None and settings.data != "simulate":
        problems.extend(_check_data_file(project, settings.data, settings.target))
    if settings is not None and settings.feature_code:
        problems.extend(_check_feature_code(project, settings.feature_code))
    if settings is not None and settings.engine == "dask" and not problems:
        # A scheduler that does not answer fails here, in seconds, not after the first stages ran.
        from nbops.engines.dask.cluster import preflight

        try:
            preflight(settings.dask_scheduler)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("parameters check failed before running anything:\n" + "\n".join(problems))
    assert settings is not None
    # Typed values (coerced from command-line strings) are what the pipeline receives.
    typed_env = {**env, **settings.model_dump(include=set(env))}
    return CheckedProject(settings=settings, env=typed_env, tasks=load_tasks(project, typed_env), project=project)


def _check_data_file(project: Path, data: str, target: str) -> list[str]:
    """Fail fast on what can be seen from the file's header: missing file, wrong type, no target."""
    from nbops.errors import DataError

    path = Path(data) if Path(data).is_absolute() else project / data
    try:
        columns = table_columns(path)
    except DataError as exc:
        return [str(exc)]
    if target not in columns:
        return [
            str(
                DataError(
                    "the target column is missing",
                    file=str(path),
                    column=target,
                    expected=f"a column named '{target}'",
                    found=missing_column_found(target, columns),
                    hint="set TARGET=<column> (or `target` in env.yaml) to the outcome column",
                )
            )
        ]
    return []


def _check_feature_code(project: Path, value: str) -> list[str]:
    """Fail fast on a feature module that is missing, does not parse or has no feature function; what
    its functions compute is checked by the features stage, on the data."""
    import ast

    from nbops.errors import DataError
    from nbops.features.code import feature_code_path

    path = feature_code_path(project, value)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except FileNotFoundError:
        return [
            str(
                DataError(
                    "the feature module does not exist",
                    file=str(path),
                    expected=f"a Python file at {value} (feature_code, relative to the project folder)",
                    hint="create it, or set `feature_code: none` in env.yaml",
                )
            )
        ]
    except SyntaxError as exc:
        return [
            str(
                DataError(
                    f"the feature module is not valid Python: {exc.msg}",
                    file=str(path),
                    line=exc.lineno,
                    hint="fix the syntax (feature_code in env.yaml names this file)",
                )
            )
        ]
    functions = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
    ]
    if not functions:
        return [
            str(
                DataError(
                    "the feature module defines no public function",
                    file=str(path),
                    expected="at least one `def name(df: pandas.DataFrame) -> pandas.Series` (its name is the "
                    "derived column's)",
                    hint="helpers start with an underscore; every other function is a derived feature",
                )
            )
        ]
    return []


def table_columns(path: Path) -> list[str]:
    """Column names from a CSV header or a Parquet schema, without reading the rows."""
    from nbops.data.io import SUPPORTED_SUFFIXES, csv_header, refuse_duplicates
    from nbops.errors import DataError

    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            "unknown file type",
            file=str(path),
            expected=f"a table ending in {', '.join(SUPPORTED_SUFFIXES)}",
            found=f"'{path.suffix or '(no suffix)'}'",
            hint="convert the file to CSV or Parquet",
        )
    if not path.exists():
        raise DataError("data file not found", file=str(path), hint="check the `data` key in env.yaml or DATA=...")
    if path.stat().st_size == 0:
        raise DataError(
            "the file is empty (0 bytes)", file=str(path), expected="a header row and at least one data row"
        )
    if path.suffix.lower() == ".csv":
        names = csv_header(path)
    else:
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:
            raise DataError("not a readable Parquet file", file=str(path), found=str(exc)) from exc
    refuse_duplicates(names, path)
    return names


def _check_task(task: TaskSpec, names: set[str]) -> list[str]:
    where = f"pipeline.yaml task '{task.name}'"
    problems: list[str] = []
    try:
        model = task_model(task.name, task.source)
    except ConfigError as exc:
        return [f"{where}: {exc}"]
    if is_builtin(task.name):
        # A built-in stage's model is the one home of its parameters: the notebook declares only what
        # Ploomber needs (upstream, product); any default it shows must be the model's (tests/repo).
        declared = notebook_parameters(task.source)
        for key in sorted(set(declared) - INJECTED - set(model.model_fields)):
            problems.append(
                f"{task.source.name}: parameter '{key}' is not a field of {model.__name__}; "
                f"declare it in src/nbops/config/params.py or remove it from the parameters cell"
            )
        fix = "src/nbops/config/params.py"
    else:
        # Your own notebook: its annotated parameters cell is the model.
        fix = f"the parameters cell of {task.source.name}"
    fields = sorted(model.model_fields)
    for key in task.params:
        if key not in model.model_fields:
            problems.append(
                unknown_key_message(key, fields, where=f"{where} params") + f" (parameters are declared in {fix})"
            )
    for up in task.upstream:
        if up not in names:
            problems.append(
                f"{task.source.name}: upstream '{up}' is not a task in pipeline.yaml ({', '.join(sorted(names))})"
            )
    try:
        validate_params(
            model, {k: v for k, v in task.params.items() if k in model.model_fields}, where=f"{where} params"
        )
    except ConfigError as exc:
        problems.append(str(exc))
    return problems
