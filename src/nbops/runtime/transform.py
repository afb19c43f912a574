"""The one feature transform, fitted on training data and applied identically at scoring time.

Numeric features pass through as float64; categorical features become integer codes over the levels
seen in training, which LightGBM treats as categories. Missing values stay NaN, which LightGBM
routes down its learned missing-value branch. The fitted state is plain JSON: never pickled.

Derived features (the project's feature code, :mod:`.derived`) are computed here too, from the raw
features, on every path: a DataFrame, a list of records (the REST service), a batch file. Their code
is a file beside the transform's JSON (``feature_code.py``), whose SHA-256 the JSON records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .derived import CATEGORICAL, FeatureCode, FeatureCodeError, sha256_text
from .integrity import FEATURE_CODE_FILE, IntegrityError

FORMAT_VERSION = 1
# Format 2 is format 1 with derived features (the keys "derived" and "feature_code").
DERIVED_FORMAT_VERSION = 2
# How derived features see the raw categorical features: text, missing as NaN (pandas' default string type).
TEXT = pd.StringDtype(na_value=np.nan)


class UnseenCategoryError(ValueError):
    """A categorical value was not seen in training and ``strict`` was requested."""

    def __init__(self, column: str, values: Sequence[str], rows: Sequence[int], allowed: Sequence[str]):
        self.column, self.values, self.rows, self.allowed = column, list(values), list(rows), list(allowed)
        shown = ", ".join(map(repr, self.values[:5]))
        super().__init__(
            f"column '{column}': unseen categor{'y' if len(self.values) == 1 else 'ies'} {shown} "
            f"at rows {', '.join(map(str, self.rows[:10]))}; expected one of {', '.join(self.allowed[:10])}"
        )


def level_strings(col: pd.Series) -> pd.Series:
    """Categorical values as text, the same way at fit and at scoring time.

    Whole numbers print without a decimal point, so a code column read as float because it has a
    missing value (1.0) still matches the level learned as "1".
    """
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype=float, na_value=np.nan)
        finite = values[~np.isnan(values)]
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: not whole
            whole = finite.size == 0 or bool(np.all(np.mod(finite, 1) == 0))
        if whole:
            return col.astype("Int64").astype("string")
    return col.astype("string")


def _level_key(value: Any) -> Any:
    """A record value as the level text ``level_strings`` would give it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


@dataclass
class FeatureTransform:
    """Maps a table to the exact float64 matrix the booster is trained on and scores.

    ``numeric`` and ``categorical`` name every feature of the matrix, derived ones included;
    ``derived`` says which are computed by the feature code (``code``), and of what kind.
    """

    numeric: list[str]
    categorical: dict[str, list[str]]
    feature_names: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    derived: dict[str, str] = field(default_factory=dict)
    # {"file": "feature_code.py", "name": "features.py", "sha256": ...}: the code of the derived features
    feature_code: dict[str, str] | None = None
    code: FeatureCode | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.feature_names:
            self.feature_names = [*self.numeric, *self.categorical]
        if self.derived:
            if self.code is None or self.feature_code is None:
                raise ValueError(
                    f"the feature transform has derived features ({', '.join(self.derived)}) but no feature code"
                )
            if self.code.sha256 != self.feature_code["sha256"]:
                raise IntegrityError(
                    f"the feature code ({self.feature_code.get('name')}) is not the one the transform was fitted "
                    f"with: SHA-256 {self.code.sha256[:12]}… != recorded {self.feature_code['sha256'][:12]}…"
                )
        self.raw_names = [n for n in self.feature_names if n not in self.derived]
        self._raw_numeric = [n for n in self.raw_names if n not in self.categorical]
        self._raw_categorical = [n for n in self.raw_names if n in self.categorical]
        self._raw_columns = pd.Index([*self._raw_numeric, *self._raw_categorical])
        self._index = {name: pd.Index(levels) for name, levels in self.categorical.items()}
        # Per feature: None for numeric, or the level -> code lookup (the serving path).
        self._plan = [
            (name, {lv: float(i) for i, lv in enumerate(self.categorical[name])} if name in self.categorical else None)
            for name in self.feature_names
        ]

    @classmethod
    def fit(
        cls, df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], code: FeatureCode | None = None
    ) -> FeatureTransform:
        """Learn the categorical levels from training rows (sorted, so the codes are deterministic).

        With ``code``, every feature function is run on the rows' raw features and checked (it must
        return one number or category per row, row by row): a :class:`FeatureCodeError` names the
        function, the problem and the rows. Its columns follow the raw features in the matrix.
        """
        levels = {name: sorted(level_strings(df[name]).dropna().unique().tolist()) for name in categorical}
        if code is None:
            return cls(numeric=list(numeric), categorical=levels)
        raw = [*numeric, *categorical]
        for name in code.functions:
            if name in raw:
                raise FeatureCodeError(
                    f"is named like the raw feature '{name}'",
                    function=name,
                    expected="a new column name (the function's name)",
                    hint=f"rename the function (for example {name}_derived)",
                )
        plain = cls(numeric=list(numeric), categorical=levels)
        values = code.evaluate(plain.input_frame(df))
        derived = {name: kind for name, (kind, _) in values.items()}
        derived_levels = {
            name: sorted(level_strings(v).dropna().unique().tolist())
            for name, (kind, v) in values.items()
            if kind == CATEGORICAL
        }
        return cls(
            numeric=[*numeric, *(n for n, k in derived.items() if k != CATEGORICAL)],
            categorical={**levels, **derived_levels},
            feature_names=[*numeric, *categorical, *derived],
            format_version=DERIVED_FORMAT_VERSION,
            derived=derived,
            feature_code={"file": FEATURE_CODE_FILE, "name": code.name, "sha256": code.sha256},
            code=code,
        )

    # -- derived features ---------------------------------------------------------------------------

    def input_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """The raw features as the feature code sees them: float64 numbers, text categories, index 0..n-1."""
        columns: dict[str, Any] = {}
        for name in self._raw_numeric:
            columns[name] = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for name in self._raw_categorical:
            columns[name] = level_strings(df[name]).astype(TEXT).array
        return pd.DataFrame(columns, index=pd.RangeIndex(len(df)), columns=self._raw_columns)

    def input_frame_records(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """``input_frame(pd.DataFrame(records))``, built from the records directly (a test proves them
        equal): the numbers as one float64 block, each category column as one text array."""
        n = len(records)
        # None becomes NaN in a float64 array; numbers convert as float() converts them.
        numbers = np.array(
            [[record.get(name) for record in records] for name in self._raw_numeric], dtype=np.float64
        ).reshape(len(self._raw_numeric), n)
        texts = [
            text_array([None if (v := record.get(name)) is None else _level_key(v) for record in records])
            for name in self._raw_categorical
        ]
        return frame_of_blocks(numbers, texts, self._raw_columns, n)

    def derive(self, df: pd.DataFrame) -> dict[str, pd.Series]:
        """The derived columns of ``df`` (computed from its raw features; index 0..n-1)."""
        if not self.derived:
            return {}
        assert self.code is not None
        return self.code.compute(self.input_frame(df), list(self.derived))

    def with_derived(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with its derived columns added (replacing any of the same name), on ``df``'s index."""
        if not self.derived:
            return df
        derived = self.derive(df)
        return df.assign(**{name: values.set_axis(df.index) for name, values in derived.items()})

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical features in the matrix (for LightGBM)."""
        return [self.feature_names.index(n) for n in self.categorical]

    def transform(self, df: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """Return the feature matrix, columns in ``feature_names`` order.

        Vectorised column by column: numbers are copied as float64 and categories become their
        level's position through :func:`level_codes` (no Python object per row for text, category,
        integer or whole-number columns).

        Args:
            df: rows with at least the feature columns (other columns are ignored).
            strict: raise :class:`UnseenCategoryError` on a category not seen in training instead of
                treating it as missing.
        """
        missing = [n for n in self.raw_names if n not in df.columns]
        if missing:
            raise KeyError(f"missing feature columns: {', '.join(missing)}")
        derived = self.derive(df)
        # Column by column into a feature-major buffer (contiguous writes), then one transposing copy
        # into the row-major matrix the boosters read: a third of the time of strided column writes.
        columns = np.empty((len(self.feature_names), len(df)), dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            col = derived[name] if name in derived else df[name]
            if name in self._index:
                codes = level_codes(col, self._index[name])
                if strict and name not in derived:
                    unseen = np.isnan(codes) & col.notna().to_numpy()
                    if unseen.any():
                        rows = np.flatnonzero(unseen)
                        raise UnseenCategoryError(
                            name,
                            pd.unique(col.to_numpy()[rows]).astype(str).tolist(),
                            rows.tolist(),
                            self.categorical[name],
                        )
                columns[j] = codes
            else:
                columns[j] = as_numbers(col)
        return np.ascontiguousarray(columns.T)

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The same matrix as ``transform(pd.DataFrame(records))``, without building a DataFrame.

        A one-row DataFrame costs several times the prediction itself, so serving encodes records
        directly; a test proves both paths give identical matrices.
        """
        if self.derived:
            return self._transform_records_derived(records)
        out = np.empty((len(records), len(self._plan)), dtype=np.float64)
        nan = np.nan
        for i, record in enumerate(records):
            row = out[i]
            for j, (name, codes) in enumerate(self._plan):
                value = record.get(name)
                if codes is None:
                    row[j] = nan if value is None else float(value)
                else:
                    row[j] = nan if value is None else codes.get(_level_key(value), nan)
        return out

    def _transform_records_derived(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``transform_records`` with derived features: the raw features go through the feature code
        as a DataFrame of the records (the code's convention), then everything is encoded as usual."""
        assert self.code is not None
        derived = self.code.compute(self.input_frame_records(records), list(self.derived))
        columns: dict[int, np.ndarray] = {}
        for j, (name, codes) in enumerate(self._plan):
            if name in derived:
                values = derived[name]
                if codes is None:
                    columns[j] = as_numbers(values)
                else:
                    found = self._index[name].get_indexer(pd.Index(level_strings(values).astype(object)))
                    columns[j] = np.where(found < 0, np.nan, found)
        out = np.empty((len(records), len(self._plan)), dtype=np.float64)
        nan = np.nan
        for i, record in enumerate(records):
            row = out[i]
            for j, (name, codes) in enumerate(self._plan):
                if j in columns:
                    row[j] = columns[j][i]
                    continue
                value = record.get(name)
                if codes is None:
                    row[j] = nan if value is None else float(value)
                else:
                    row[j] = nan if value is None else codes.get(_level_key(value), nan)
        return out

    def to_dict(self, *, include_code: bool = False) -> dict[str, Any]:
        """The fitted state as JSON. ``include_code`` adds the feature code's text (to ship the
        transform to Dask workers); on disk the code is a file of its own beside the JSON."""
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "feature_names": self.feature_names,
        }
        if self.derived:
            data["derived"] = self.derived
            data["feature_code"] = dict(self.feature_code or {})
            if include_code and self.code is not None:
                data["feature_code"]["source"] = self.code.source.decode("utf-8")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], code: bytes | None = None) -> FeatureTransform:
        """Rebuild a fitted transform; ``code`` is the feature code file's bytes when it has derived features."""
        version = data.get("format_version")
        expected = DERIVED_FORMAT_VERSION if "derived" in data else FORMAT_VERSION
        if version != expected:
            raise ValueError(f"feature transform format {version} is not supported (expected {expected})")
        if "derived" not in data:
            return cls(numeric=data["numeric"], categorical=data["categorical"], feature_names=data["feature_names"])
        ref = dict(data["feature_code"])
        source = code if code is not None else ref.pop("source", "").encode("utf-8") or None
        ref.pop("source", None)
        if source is None:
            raise ValueError(
                f"the feature transform's derived features ({', '.join(data['derived'])}) need their feature code "
                f"({ref['file']}, from {ref['name']}), which was not found beside it"
            )
        if sha256_text(source) != ref["sha256"]:
            raise IntegrityError(
                f"refusing the feature code {ref['file']} (from {ref['name']}): its SHA-256 "
                f"{sha256_text(source)[:12]}… is not the {ref['sha256'][:12]}… the transform was fitted with"
            )
        return cls(
            numeric=data["numeric"],
            categorical=data["categorical"],
            feature_names=data["feature_names"],
            format_version=version,
            derived=dict(data["derived"]),
            feature_code=ref,
            code=FeatureCode.from_source(source, ref["name"]),
        )

    def save(self, path: str | Path) -> Path:
        """Write the JSON (and, with derived features, the feature code file beside it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.derived and self.code is not None and self.feature_code is not None:
            code_file = path.parent / self.feature_code["file"]
            tmp_code = code_file.with_suffix(code_file.suffix + ".tmp")
            tmp_code.write_bytes(self.code.source)
            tmp_code.replace(code_file)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureTransform:
        """Read a saved transform (and its feature code file beside it, when it has derived features)."""
        path = Path(path)
        data = json.loads(path.read_text())
        code = None
        if "derived" in data:
            code_file = path.parent / data["feature_code"]["file"]
            try:
                code = code_file.read_bytes()
            except FileNotFoundError:
                code = None
        return cls.from_dict(data, code=code)


def level_codes(col: pd.Series, index: pd.Index) -> np.ndarray:
    """Each value's position among the learned levels ``index`` as float64, NaN for a missing value or
    one that is not a level: ``index.get_indexer(level_strings(col))``, the codes the booster takes.

    The reference computes a Python string per row. The same positions come without one where the
    column allows (a test holds every path equal to the reference): Arrow-backed text is looked up in
    Arrow (``pyarrow.compute.index_in``); a pandas Categorical maps its categories once and takes by
    its codes; plain text, integers, booleans and whole-number floats are factorised, their distinct
    values mapped once and taken by the factor codes. Anything else (mixed objects, fractional
    floats) goes the reference way.
    """
    fast = _fast_level_codes(col, index)
    if fast is not None:
        return fast
    return _positions(index.get_indexer(pd.Index(level_strings(col).astype(object))))


def _positions(found: np.ndarray) -> np.ndarray:
    """``get_indexer`` results as float64 codes: -1 (not found) becomes NaN."""
    out = found.astype(np.float64)
    out[found < 0] = np.nan
    return out


def _taken(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` with -1 (missing) as NaN: NaN is appended, so -1 picks it."""
    taken: np.ndarray = np.append(table, np.nan)[codes]
    return taken


def _fast_level_codes(col: pd.Series, index: pd.Index) -> np.ndarray | None:
    """:func:`level_codes` without a string per row, or None where the column needs the reference way."""
    dtype = col.dtype
    arrow_text = (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or (
        isinstance(dtype, pd.ArrowDtype) and str(dtype.pyarrow_dtype) in ("string", "large_string")
    )
    if arrow_text:
        import pyarrow as pa
        import pyarrow.compute as pc

        data = col.array.__arrow_array__()  # the column's own Arrow data (no copy)
        found = pc.index_in(data, value_set=pa.array(list(index), type=data.type))
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.float64)  # null -> NaN
    if isinstance(dtype, pd.CategoricalDtype):
        # level_strings writes a Categorical as its categories' text, each category once.
        categories = pd.Series(col.cat.categories).astype("string").astype(object)
        table = _positions(index.get_indexer(pd.Index(categories)))
        return _taken(table, col.cat.codes.to_numpy())
    factorisable = (
        isinstance(dtype, pd.StringDtype)
        or pd.api.types.is_integer_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_float_dtype(dtype)
        or (pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(col, skipna=True) == "string")
    )
    if not factorisable:
        return None
    codes, uniques = pd.factorize(col)
    distinct = pd.Series(uniques)
    if pd.api.types.is_float_dtype(distinct):
        values = distinct.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: not whole
            whole = bool(np.all(np.mod(values, 1) == 0))
        if not whole:  # fractional floats: -0.0 and 0.0 factorise as one, but read "-0.0" and "0.0"
            return None
    # level_strings decides a float column's form from its finite values, which are the distinct ones.
    table = _positions(index.get_indexer(pd.Index(level_strings(distinct).astype(object))))
    return _taken(table, np.asarray(codes))


def as_numbers(col: pd.Series) -> np.ndarray:
    """A column as float64, anything that is not a number as NaN (a float column as it is, at once)."""
    if col.dtype == np.float64:
        return col.to_numpy()
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def text_array(values: list[str | None]) -> Any:
    """Text values (None: missing) as the array of a pandas ``str`` column. With pyarrow storage (the
    default wherever pyarrow is installed, as beside the wheel) it is built from a pyarrow array at
    once, about four times faster than ``pd.array(values, dtype="str")``, which gives the same array."""
    if TEXT.storage == "pyarrow":
        import pyarrow as pa

        arrow_strings: Any = pd.arrays.ArrowStringArray  # its stubs lack the dtype argument pandas 3 takes
        return arrow_strings(pa.array(values, type=pa.large_string()), dtype=TEXT)
    return pd.array(values, dtype=TEXT)


def frame_of_blocks(numbers: np.ndarray, texts: Sequence[Any], columns: pd.Index, rows: int) -> pd.DataFrame:
    """A DataFrame of the numeric columns (``numbers``, one row per column) followed by the text columns.

    pandas' constructor from a dict of one-row columns costs about 250 µs for 20 columns, most of a
    serving request's budget; ``pandas.api.internals.create_dataframe_from_blocks`` takes the blocks
    as they are. Falls back to the constructor where pandas lacks it; a test proves both give the
    same frame."""
    create = getattr(getattr(pd.api, "internals", None), "create_dataframe_from_blocks", None)
    k = len(numbers)
    if create is None:
        return slow_frame_of_blocks(numbers, texts, columns, rows)
    blocks: list[tuple[Any, np.ndarray]] = [(numbers, np.arange(k))] if k else []
    blocks += [(text, np.array([k + j])) for j, text in enumerate(texts)]
    frame: pd.DataFrame = create(blocks, index=pd.RangeIndex(rows), columns=columns)
    return frame


def slow_frame_of_blocks(numbers: np.ndarray, texts: Sequence[Any], columns: pd.Index, rows: int) -> pd.DataFrame:
    """The public constructor's frame of the same columns (the fallback, and the tests' reference)."""
    arrays = [*numbers, *texts]
    return pd.DataFrame(dict(zip(columns, arrays, strict=True)), index=pd.RangeIndex(rows), columns=columns)
