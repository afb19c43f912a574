"""The project's own feature code (env key ``feature_code``): loading it, trying it, and its errors.

The feature module is a file of the project (``features.py``): each public function
``name(df: pandas.DataFrame) -> pandas.Series`` is one derived feature, computed from the raw
features. The features stage runs it through :class:`nbops.runtime.derived.FeatureCode` (what the
wheel runs too) and turns its problems into errors that name the file, the function and the rows.

In a notebook::

    from nbops.features import load_feature_code, try_feature_code
    features = load_feature_code()          # env.yaml's feature_code, as a module
    features.loan_to_income(df)             # one function on any DataFrame
    try_feature_code(df)                    # every function, with the features stage's checks
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config.paths import project_root
from nbops.config.spec import load_env, ploomber_cast
from nbops.errors import ConfigError, DataError
from nbops.runtime.derived import FeatureCode, FeatureCodeError
from nbops.runtime.transform import TEXT, level_strings

ENV_KEY = "feature_code"


def feature_code_path(project: Path, value: str) -> Path:
    """The feature module's file: ``value`` relative to the project root (or absolute)."""
    path = Path(value)
    return path if path.is_absolute() else project / path


def read_feature_code(project: Path, value: str) -> FeatureCode:
    """Load the feature module named by ``feature_code``; a :class:`DataError` names what is wrong."""
    path = feature_code_path(project, value)
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            "the feature module does not exist",
            file=str(path),
            expected=f"a Python file at {value} (relative to the project folder {project})",
            hint="create it, or set `feature_code: none` in env.yaml",
        ) from None
    try:
        return FeatureCode.from_source(source, path.name)
    except FeatureCodeError as exc:
        raise feature_code_error(exc, value) from None  # the file as env.yaml names it


def feature_code_error(exc: FeatureCodeError, file: Path | str, table: str | None = None) -> DataError:
    """A runtime :class:`FeatureCodeError` in the house style: file, function, line and rows named."""
    where_rows = f" (positions in {table})" if table and exc.rows else ""
    return DataError(
        exc.problem + where_rows,
        file=str(file),
        function=exc.function,
        line=exc.line,
        rows=exc.rows or None,
        expected=exc.expected,
        found=exc.found,
        hint=exc.hint,
    )


def default_feature_code(project: Path | None = None, env_file: str = "env.yaml") -> tuple[Path, str]:
    """The project folder and the ``feature_code`` value of its env file (a ConfigError if it is none)."""
    project = project or project_root()
    value = ploomber_cast(load_env(project, env_file).get(ENV_KEY))
    if not value:
        raise ConfigError(
            f"{env_file}: '{ENV_KEY}' is none, so the project has no feature module; set it to a file such as "
            "features.py, or give the path: load_feature_code('features.py')"
        )
    return project, str(value)


def load_feature_code(path: str | Path | None = None, *, project: Path | None = None) -> types.ModuleType:
    """The feature module as a Python module, to try its functions on a DataFrame in a notebook.

    Args:
        path: the module's file, relative to the project folder (or absolute); default: env.yaml's
            ``feature_code``.
        project: the project folder (default: found from the working directory).

    The module is loaded exactly as the pipeline and the wheel load it (from the file's bytes, under a
    name of its own): ``load_feature_code().loan_to_income(df)``.
    """
    return _feature_code(path, project).module


def try_feature_code(df: pd.DataFrame, path: str | Path | None = None, *, project: Path | None = None) -> pd.DataFrame:
    """Every derived column of ``df``'s rows, checked as the features stage checks them (a function that
    raises, returns the wrong length or index, or values that are neither numbers nor categories fails
    with the function and the rows named). ``df`` holds the raw columns, as the data files do."""
    code = _feature_code(path, project)
    frame = as_raw_features(df)
    try:
        values = code.evaluate(frame)
    except FeatureCodeError as exc:
        raise feature_code_error(exc, code.name, "the DataFrame given") from None
    return pd.DataFrame({name: series for name, (_, series) in values.items()}).set_axis(df.index)


def as_raw_features(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` the way the pipeline hands raw features to the feature code: numbers as float64, text as
    pandas' string type (missing: NaN), index 0..n-1."""
    columns: dict[str, Any] = {}
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            columns[name] = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
        elif pd.api.types.is_string_dtype(col) or isinstance(col.dtype, pd.CategoricalDtype):
            columns[name] = level_strings(col).astype(TEXT).array
        else:
            columns[name] = col.to_numpy()
    return pd.DataFrame(columns, index=pd.RangeIndex(len(df)), columns=df.columns)


def _feature_code(path: str | Path | None, project: Path | None) -> FeatureCode:
    if path is None:
        root, value = default_feature_code(project)
        return read_feature_code(root, value)
    if project is None:
        try:
            project = project_root()
        except ConfigError:
            project = Path.cwd()
    return read_feature_code(project, str(path))
