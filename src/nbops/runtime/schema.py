"""The scoring input contract: which fields a record must have, and what values each accepts.

One validator serves every way in (a DataFrame, a list of dicts, a REST body), so a record refused
by the API is refused the same way by ``predict`` and by the batch scorer. Every problem names the
record (0-based position) and the field.

A multiclass model's contract also holds its classes, in the order of the booster's outputs: class
``i`` is the model's ``i``-th probability. Labels are compared as text (``2`` and ``"2"`` are one
class), through :func:`label_text`, wherever they come from (a CSV, a Parquet file, a JSON body).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Problem:
    """One reason a record cannot be scored."""

    record: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"record {self.record}, field '{self.field}': {self.message}"


class InputError(ValueError):
    """Records that do not match the input schema; ``problems`` lists every one found (up to a cap)."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = total if total is not None else len(self.problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {self.total - 5} more)" if self.total > 5 else ""
        super().__init__(f"{self.total} problem(s) in the input: {shown}{more}")


@dataclass(frozen=True)
class FieldSpec:
    """One input field."""

    name: str
    kind: str  # "numeric" | "categorical"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


def label_text(values: Any) -> pd.Series:
    """Class labels as text, the form they are compared in: ``2``, ``2.0`` and ``"2"`` all read ``"2"``
    (a whole number read as a float from Parquet is still its integer label); missing stays missing."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return series.astype("string")
    numbers = series.astype("float64")
    whole = numbers.notna() & (numbers % 1 == 0)
    text = numbers.astype("string")
    text[whole] = numbers[whole].astype("int64").astype("string")
    return text


def class_codes(values: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's position in ``classes`` (as floats, for LightGBM and the metrics); NaN for a
    missing label or one that is not a class."""
    index = {str(c): float(i) for i, c in enumerate(classes)}
    text = label_text(values)
    return text.map(index).to_numpy(dtype=np.float64, na_value=np.nan)


def _is_identifier_value(value: Any) -> bool:
    """A pass-through (identifier) field's value: a scalar, never a container or a boolean.

    Over JSON that leaves text, a number or null, as the API documents; a DataFrame's row as a dict
    may also carry a timestamp or a numpy scalar, which pass through as they are.
    """
    return not isinstance(
        value, bool | dict | list | tuple | set | frozenset | bytes | bytearray | Mapping | np.ndarray
    )


def known_categories(col: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Whether each value, as text, is one of ``categories`` (False where missing). Arrow-backed text
    (what Parquet and CSV batches are read as) is checked in Arrow, without a Python string per row."""
    dtype = col.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        data = col.array.__arrow_array__()  # the column's own Arrow data (no copy)
        found = pc.is_in(data, value_set=pa.array(list(categories), type=data.type))  # null -> False
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    return (col.astype("string").isin(categories)).fillna(False).to_numpy(dtype=bool)


@dataclass
class InputSchema:
    """The fields a record must carry to be scored, optional pass-through identifier fields, and the
    columns of the training table a record may carry but the model never reads.

    ``passthrough``: the identifier and time columns, echoed with each prediction so a client can join.
    ``ignored``: the target and the columns marked ``role: ignore``, accepted and dropped (a client may
    post rows of the table the model was trained on as they are). Any other field is refused.
    ``classes``: a multiclass model's classes in the order of its outputs (integers when the labels
    are whole numbers, else text); None for a binary or regression model.
    """

    fields: list[FieldSpec]
    passthrough: list[str] = field(default_factory=list)
    max_problems: int = 50
    classes: list[Any] | None = None
    ignored: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name = {f.name: f for f in self.fields}
        self.ignored = [n for n in self.ignored if n not in self._by_name and n not in self.passthrough]
        self.ignored_names = frozenset(self.ignored)
        self._allowed = set(self._by_name) | set(self.passthrough) | self.ignored_names
        self._levels = {f.name: frozenset(f.categories) for f in self.fields if f.categories is not None}

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def ignoring(self, names: Sequence[str]) -> InputSchema:
        """This contract, also accepting (and dropping) the fields ``names`` where it does not know them."""
        extra = [n for n in names if n not in self._allowed]
        if not extra:
            return self
        return InputSchema(self.fields, self.passthrough, self.max_problems, self.classes, [*self.ignored, *extra])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fields": [asdict(f) for f in self.fields], "passthrough": self.passthrough}
        if self.classes is not None:  # only a multiclass contract has them: the others are unchanged
            out["classes"] = list(self.classes)
        if self.ignored:  # only written when there are some, so older contracts read the same
            out["ignored"] = list(self.ignored)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        classes = data.get("classes")
        return cls(
            fields=[FieldSpec(**f) for f in data["fields"]],
            passthrough=list(data.get("passthrough", [])),
            classes=list(classes) if classes is not None else None,
            ignored=list(data.get("ignored", [])),
        )

    def unknown_field_message(self) -> str:
        """What a record may carry, for the problem of a field the contract does not know."""
        known = f"unknown field; expected only the model's fields ({', '.join(self.names)})"
        if self.passthrough:
            known += f", the pass-through fields ({', '.join(self.passthrough)})"
        if self.ignored:
            known += f" or the ignored fields ({', '.join(self.ignored)})"
        return known

    # -- records (lists of dicts: the REST path) ------------------------------------------------

    def check_records(self, records: Any, *, allow_extra: bool = False) -> None:
        """Raise :class:`InputError` unless ``records`` is a list of valid records."""
        if not isinstance(records, list):
            raise InputError([Problem(-1, "records", f"expected a list of objects, found {type(records).__name__}")])
        problems: list[Problem] = []
        total = 0
        for i, record in enumerate(records):
            for p in self._record_problems(i, record, allow_extra):
                total += 1
                if len(problems) < self.max_problems:
                    problems.append(p)
        if problems:
            raise InputError(problems, total)

    def _record_problems(self, i: int, record: Any, allow_extra: bool) -> list[Problem]:
        if not isinstance(record, dict):
            return [Problem(i, "(record)", f"expected an object of field values, found {type(record).__name__}")]
        out = []
        for spec in self.fields:
            if spec.name not in record:
                out.append(
                    Problem(
                        i,
                        spec.name,
                        "missing (send null for an unknown value)" if spec.nullable else "missing and required",
                    )
                )
                continue
            out.extend(self._value_problems(i, spec, record[spec.name]))
        for name in self.passthrough:
            if name in record and not _is_identifier_value(record[name]):
                value = record[name]
                out.append(
                    Problem(
                        i,
                        name,
                        f"a pass-through field holds text, a number or null, found {type(value).__name__}",
                    )
                )
        if not allow_extra:
            for key in record:
                if key not in self._allowed:
                    out.append(Problem(i, str(key), self.unknown_field_message()))
        return out

    def _value_problems(self, i: int, spec: FieldSpec, value: Any) -> list[Problem]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return [] if spec.nullable else [Problem(i, spec.name, "null or NaN, but a value is required")]
        if spec.kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return [Problem(i, spec.name, f"expected a number, found {type(value).__name__} {value!r}"[:200])]
            if isinstance(value, int) and abs(value) > 1e300:  # JSON integers have no size limit
                return [Problem(i, spec.name, "the number is too large")]
            if math.isinf(value):
                return [Problem(i, spec.name, "infinite values are not accepted")]
            if spec.min is not None and value < spec.min:
                return [Problem(i, spec.name, f"{value!r} is below the minimum {spec.min:g}")]
            if spec.max is not None and value > spec.max:
                return [Problem(i, spec.name, f"{value!r} is above the maximum {spec.max:g}")]
            return []
        if not isinstance(value, str):
            return [Problem(i, spec.name, f"expected a category (text), found {type(value).__name__} {value!r}"[:200])]
        levels = self._levels.get(spec.name)
        if levels is not None and value not in levels:
            allowed = ", ".join(sorted(levels)[:10])
            return [Problem(i, spec.name, f"unseen category {value[:60]!r}; expected one of {allowed}")]
        return []

    # -- frames (batch files and DataFrames) ----------------------------------------------------

    def check_frame(self, df: pd.DataFrame, *, first_row: int = 0) -> None:
        """Raise :class:`InputError` unless every row of ``df`` is valid (vectorised).

        Args:
            first_row: the position of ``df``'s first row in the whole input, so a chunk's problems
                name the row in the file.
        """
        problems: list[Problem] = []
        total = 0

        def add(mask: np.ndarray, name: str, message: Any) -> None:
            nonlocal total
            rows = np.flatnonzero(mask)
            total += len(rows)
            for r in rows[: max(0, self.max_problems - len(problems))]:
                problems.append(Problem(int(first_row + r), name, message(r) if callable(message) else message))

        missing = [f.name for f in self.fields if f.name not in df.columns]
        if missing:
            raise InputError([Problem(first_row, name, "column missing from the input") for name in missing])
        for spec in self.fields:
            col = df[spec.name]
            null = col.isna().to_numpy()
            if not spec.nullable:
                add(null, spec.name, "null or NaN, but a value is required")
            if spec.kind == "numeric":
                values = pd.to_numeric(col, errors="coerce")
                bad = values.isna().to_numpy() & ~null
                # The offending value is read only for a message: never the whole column as objects.
                add(bad, spec.name, lambda r, col=col: f"expected a number, found {col.iloc[r]!r}"[:200])
                v = values.to_numpy(dtype=float, na_value=np.nan)
                with np.errstate(invalid="ignore"):
                    add(np.isinf(v), spec.name, "infinite values are not accepted")
                    if spec.min is not None:
                        add(v < spec.min, spec.name, lambda r, v=v, s=spec: f"{v[r]!r} is below the minimum {s.min:g}")
                    if spec.max is not None:
                        add(v > spec.max, spec.name, lambda r, v=v, s=spec: f"{v[r]!r} is above the maximum {s.max:g}")
            elif spec.categories is not None:
                unseen = ~known_categories(col, spec.categories) & ~null
                allowed = ", ".join(sorted(spec.categories)[:10])
                add(
                    unseen,
                    spec.name,
                    lambda r, col=col, a=allowed: f"unseen category {str(col.iloc[r])[:60]!r}; expected one of {a}",
                )
        if problems:
            raise InputError(problems, total)
