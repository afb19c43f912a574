"""Derived features: the project's own feature code, run inside the feature transform.

A feature module is plain Python. Each public function ``name(df: pandas.DataFrame) -> pandas.Series``
returns one derived column, named after the function, computed from the model's raw input features
(``df`` holds exactly those: numbers as float64, categories as text, indexed 0..n-1). Helpers are
private (a leading underscore).

The module travels with the model as a file of its own (``feature_code.py``, checksummed with the
model's other files and copied unchanged into the wheel). It is executed from those verified bytes
under a module name of its own, never imported through ``sys.path``, so the code that scores is byte
for byte the code that trained. Training, evaluation, batch scoring, the REST service and monitoring
all compute derived columns here, from raw records; a client never sends them.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = "numeric", "categorical"
# How many rows an error names, and how many are tried one by one to find the rows a function fails on.
SHOWN_ROWS = 10
PROBED_ROWS = 2000
# Rows recomputed alone at fit time to prove a function depends only on its own row.
ROW_WISE_PROBES = 20


class FeatureCodeError(ValueError):
    """A feature function (or the feature module) cannot produce a derived column.

    ``rows`` are 0-based positions in the table the function was given.
    """

    def __init__(
        self,
        problem: str,
        *,
        function: str | None = None,
        rows: Sequence[int] = (),
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problem, self.function, self.rows = problem, function, [int(r) for r in rows]
        self.expected, self.found, self.hint, self.line = expected, found, hint, line
        parts = [f"feature function '{function}': {problem}" if function else problem]
        if line is not None:
            parts.append(f"line {line}")
        if self.rows:
            more = f" and {len(self.rows) - SHOWN_ROWS:,} more" if len(self.rows) > SHOWN_ROWS else ""
            parts.append("rows " + ", ".join(map(str, self.rows[:SHOWN_ROWS])) + more)
        if expected:
            parts.append(f"expected {expected}")
        if found:
            parts.append(f"found {found}")
        if hint:
            parts.append(f"what to do: {hint}")
        super().__init__("; ".join(parts))


def sha256_text(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


@dataclass(frozen=True)
class FeatureCode:
    """A loaded feature module: its verified source, the module, and its feature functions in order."""

    source: bytes
    name: str  # the file name the project gave it (features.py)
    module: types.ModuleType
    functions: dict[str, Callable[[pd.DataFrame], Any]]

    @property
    def sha256(self) -> str:
        return sha256_text(self.source)

    @classmethod
    def from_source(cls, source: bytes, name: str = "features.py") -> FeatureCode:
        """Execute ``source`` as a module of its own and collect its public functions.

        Raises :class:`FeatureCodeError` if it does not parse, fails while being imported, defines no
        public function, or a public function does not take exactly one argument.
        """
        digest = sha256_text(source)
        module_name = f"_nbops_feature_code_{digest[:16]}"
        filename = f"{name} (feature code {digest[:12]})"
        text = source.decode("utf-8")
        try:
            code = compile(text, filename, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise FeatureCodeError(
                f"{name} is not valid Python: {exc.msg}",
                line=exc.lineno,
                hint="fix the syntax; the module must import on its own",
            ) from None
        module = sys.modules.get(module_name)
        if module is None:
            module = types.ModuleType(module_name, f"feature code {name}")
            module.__file__ = filename
            # Tracebacks (and inspect.getsource) show the lines of this exact source.
            linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
            sys.modules[module_name] = module  # dataclasses and typing look their module up here
            try:
                exec(code, module.__dict__)
            except ImportError as exc:
                del sys.modules[module_name]
                raise FeatureCodeError(
                    f"{name} failed to import: {type(exc).__name__}: {exc}",
                    line=_line_in(exc, filename),
                    hint="a feature module may import the standard library, numpy and pandas (what the scoring "
                    "wheel carries)",
                ) from None
            except Exception as exc:
                del sys.modules[module_name]
                raise FeatureCodeError(
                    f"{name} failed while being imported: {type(exc).__name__}: {exc}",
                    line=_line_in(exc, filename),
                    hint="module-level code runs on every load: keep it to imports, constants and functions",
                ) from None
        functions = public_functions(module)
        if not functions:
            raise FeatureCodeError(
                f"{name} defines no public function",
                expected="at least one `def name(df: pandas.DataFrame) -> pandas.Series` (its name is the "
                "derived column's)",
                hint="helpers start with an underscore; every other function is a derived feature",
            )
        for fname, fn in functions.items():
            problem = signature_problem(fn)
            if problem:
                raise FeatureCodeError(
                    f"takes {problem}",
                    function=fname,
                    line=fn.__code__.co_firstlineno,
                    expected="one argument, the DataFrame of raw features",
                    hint=f"a public function is a derived feature; rename a helper with a leading underscore "
                    f"(_{fname})",
                )
        return cls(source, name, module, functions)

    # -- computing --------------------------------------------------------------------------------

    def compute(self, frame: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, pd.Series]:
        """Each function's column on ``frame`` (raw features, RangeIndex), checked for shape.

        Raises :class:`FeatureCodeError` when a function raises, or returns something that is not a
        Series of one value per row aligned with ``frame``.
        """
        out: dict[str, pd.Series] = {}
        for name in names if names is not None else self.functions:
            out[name] = self._call(name, frame)
        return out

    def evaluate(self, frame: pd.DataFrame) -> dict[str, tuple[str, pd.Series]]:
        """The strict check of the features stage: every column's kind (numeric or categorical), with
        the values proven usable and row-wise. Raises :class:`FeatureCodeError` naming the rows."""
        out: dict[str, tuple[str, pd.Series]] = {}
        for name in self.functions:
            values = self._call(name, frame)
            kind = value_kind(name, values)
            if kind == NUMERIC:
                numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                infinite = np.flatnonzero(np.isinf(numbers))
                if infinite.size:
                    raise FeatureCodeError(
                        "returned infinite values",
                        function=name,
                        rows=infinite.tolist(),
                        expected="finite numbers, or NaN for a missing value",
                        found=f"{_short(numbers[infinite[0]])} at row {infinite[0]}",
                        hint="guard divisions by zero (for example `.where(df['x'] > 0)` on the divisor) so the "
                        "value is NaN",
                    )
            self._check_row_wise(name, frame, values, kind)
            out[name] = (kind, values)
        return out

    def _call(self, name: str, frame: pd.DataFrame) -> pd.Series:
        fn = self.functions[name]
        try:
            result = fn(frame)
        except KeyError as exc:
            missing = exc.args[0] if exc.args else None
            if isinstance(missing, str) and missing not in frame.columns:
                raise FeatureCodeError(
                    f"reads column '{missing}', which is not a raw feature of the model",
                    function=name,
                    line=_line_in(exc, self.module.__file__ or ""),
                    expected="columns among the raw features: " + ", ".join(map(str, frame.columns)),
                    found=f"df[{missing!r}]",
                    hint="use a feature column of the schema (identifiers, the target, the time column and "
                    "ignored columns are not given to the feature code)",
                ) from None
            raise self._raised(name, fn, frame, exc) from None
        except Exception as exc:
            raise self._raised(name, fn, frame, exc) from None
        return check_shape(name, result, frame)

    def _raised(
        self, name: str, fn: Callable[[pd.DataFrame], Any], frame: pd.DataFrame, exc: Exception
    ) -> FeatureCodeError:
        return FeatureCodeError(
            f"raised {type(exc).__name__}: {exc}",
            function=name,
            line=_line_in(exc, self.module.__file__ or ""),
            rows=self._failing_rows(fn, frame),
            hint="fix the function (try it in a notebook: nbops.features.load_feature_code()); "
            "a value that cannot be computed should be NaN, not an exception",
        )

    def _failing_rows(self, fn: Callable[[pd.DataFrame], Any], frame: pd.DataFrame) -> list[int]:
        """The first rows the function raises on when given that row alone (empty: none alone does)."""
        rows: list[int] = []
        for i in range(min(len(frame), PROBED_ROWS)):
            try:
                fn(frame.iloc[i : i + 1].reset_index(drop=True))
            except Exception:
                rows.append(i)
                if len(rows) > SHOWN_ROWS:
                    break
        return rows

    def _check_row_wise(self, name: str, frame: pd.DataFrame, values: pd.Series, kind: str) -> None:
        """A derived value must not depend on the other rows scored with it (a REST request scores one)."""
        n = len(frame)
        for i in sorted({int(i) for i in np.linspace(0, n - 1, num=min(n, ROW_WISE_PROBES))}) if n else []:
            alone = self._call(name, frame.iloc[i : i + 1].reset_index(drop=True)).iloc[0]
            whole = values.iloc[i]
            if not same_value(whole, alone, kind):
                raise FeatureCodeError(
                    "is not computed row by row: a row's value depends on the other rows of the table",
                    function=name,
                    rows=[i],
                    expected="each row's value computed from that row's raw features only (serving scores one "
                    "record at a time)",
                    found=f"{_short(whole)} with the whole table but {_short(alone)} for row {i} alone",
                    hint="replace a statistic of the table (a mean, a rank, a quantile) by a constant written in "
                    "the function",
                )


def public_functions(module: types.ModuleType) -> dict[str, Callable[[pd.DataFrame], Any]]:
    """The module's own public functions, in the order they are defined (imported ones are not its own)."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__
    }


def signature_problem(fn: Callable[..., Any]) -> str | None:
    """None if ``fn`` can be called with one positional argument, else what it takes instead."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_required = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if keyword_required or len(required) > 1 or (not positional and not takes_varargs):
        shown = ", ".join(p.name for p in params) or "no argument"
        return f"({shown})"
    return None


def check_shape(name: str, result: Any, frame: pd.DataFrame) -> pd.Series:
    """``result`` as a Series aligned with ``frame``, or a :class:`FeatureCodeError` saying what it is."""
    if not isinstance(result, pd.Series):
        kind = type(result).__module__.split(".")[0] + "." + type(result).__qualname__
        if type(result).__module__ == "builtins":
            kind = type(result).__qualname__
        raise FeatureCodeError(
            "did not return a pandas Series",
            function=name,
            expected="a pandas.Series with one value per row of the DataFrame it was given",
            found=f"{kind} {_short(result)}",
            hint="build the column from df's columns (df['a'] / df['b']) or wrap values: "
            "pandas.Series(values, index=df.index)",
        )
    if len(result) != len(frame):
        raise FeatureCodeError(
            f"returned {len(result):,} values for {len(frame):,} rows",
            function=name,
            expected=f"one value per row ({len(frame):,})",
            found=f"a Series of length {len(result):,}",
            hint="do not filter, drop missing values, aggregate or deduplicate: return NaN for a row without a value",
        )
    if not result.index.equals(frame.index):
        differs = np.flatnonzero(np.asarray(result.index != frame.index))
        raise FeatureCodeError(
            "returned a Series whose index is not the DataFrame's (rows would be matched to the wrong values)",
            function=name,
            rows=differs.tolist(),
            expected=f"the index of df (0..{len(frame) - 1})",
            found=f"index labels {', '.join(map(repr, result.index[differs[:3]].tolist()))} at those rows",
            hint="keep df's index: no sort_values, reset_index or a new Series without index=df.index",
        )
    return result


def value_kind(name: str, values: pd.Series) -> str:
    """``numeric`` (numbers, booleans) or ``categorical`` (text or pandas categories); anything else is
    a :class:`FeatureCodeError` naming the rows that hold it."""
    dtype = values.dtype
    is_object = pd.api.types.is_object_dtype(dtype)
    if isinstance(dtype, pd.CategoricalDtype) or (pd.api.types.is_string_dtype(dtype) and not is_object):
        return CATEGORICAL
    if pd.api.types.is_bool_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return NUMERIC
    if is_object:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "string":
            return CATEGORICAL
        if inferred in ("empty", "boolean", "integer", "floating", "mixed-integer-float", "decimal"):
            return NUMERIC
        present = values.notna().to_numpy()
        text = np.array([isinstance(v, str) for v in values], dtype=bool)
        numbers = np.array(
            [isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values],
            dtype=bool,
        )
        # A mix: the rows that are neither what most rows hold.
        majority_text = text.sum() >= numbers.sum()
        bad = np.flatnonzero(present & ~(text if majority_text else numbers))
    else:
        bad = np.flatnonzero(values.notna().to_numpy())
    first = values.iloc[bad[0]] if bad.size else None
    raise FeatureCodeError(
        f"returned values that are neither numbers nor categories (dtype {dtype})",
        function=name,
        rows=bad.tolist(),
        expected="numbers (float, int, bool) or categories (text, pandas Categorical), one kind per column",
        found=f"{type(first).__name__} {_short(first)}" if bad.size else str(dtype),
        hint="return numbers (for a date, `.dt.month` or days since a date) or text (`.astype(str)`)",
    )


def same_value(a: Any, b: Any, kind: str) -> bool:
    """Equal values, missing equal to missing (numbers within rounding of the last bits)."""
    a_missing, b_missing = bool(pd.isna(a)), bool(pd.isna(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    if kind == NUMERIC:
        x, y = float(a), float(b)
        return x == y or abs(x - y) <= 1e-12 * max(abs(x), abs(y))
    return str(a) == str(b)


def _short(value: Any, limit: int = 80) -> str:
    """A value as a user wrote it (``inf``, ``0.25``, ``'a'``; never ``np.float64(0.25)``), cut to ``limit``."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The line of the feature module where ``exc`` was raised (its innermost frame in the module)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line
