"""The table schema: one YAML file per dataset, declared or inferred on first use and then edited.

A column has a *kind* (how its values are read) and a *role* (what the pipeline does with it):
features feed the model; ``id`` columns are kept in the data but never modelled; ``pii`` columns never
reach the model, the reports or W&B; ``ignore`` columns are kept out of everything downstream.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from nbops.data.io import write_text
from nbops.errors import DataError, missing_column_found, shown
from nbops.runtime.schema import class_codes, label_text

Kind = Literal["numeric", "categorical", "time", "text"]
Role = Literal["feature", "target", "time", "id", "pii", "ignore"]
TaskType = Literal["binary", "multiclass", "regression"]
KINDS = ("numeric", "categorical", "time", "text")
ROLES = ("feature", "target", "time", "id", "pii", "ignore")
TASK_TYPES = ("binary", "multiclass", "regression")
# A multiclass target has at most this many classes (more is rarely a classification problem: an
# identifier, a free-text field or a count); a whole-number target with more than MAX_INTEGER_CLASSES
# values is read as a count (regression) unless task_type says multiclass.
MAX_CLASSES = 50
MAX_INTEGER_CLASSES = 20

# Share of non-missing values that must parse for a text column to be inferred as numeric or time;
# the rest are then quarantined as unparseable rather than turning the column into categories.
PARSE_SHARE = 0.95
MAX_CATEGORIES = 200
_TIME_NAME = re.compile(r"(^|_)(date|month|time|timestamp|period|day|week)$|_at$", re.I)
_PII_NAME = re.compile(r"(^|_)(e?mail|phone|name|ssn|address|surname|passport|iban|dob)($|_)", re.I)


@dataclass
class ColumnSpec:
    """One column: how to read it and what it is for."""

    name: str
    kind: Kind
    role: Role = "feature"
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class TableSchema:
    """A dataset's declared columns, its target and its task."""

    dataset: str
    target: str
    task_type: TaskType
    columns: list[ColumnSpec]
    time_column: str | None = None
    positive_class: str | None = None
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_role(self, *roles: str) -> list[ColumnSpec]:
        return [c for c in self.columns if c.role in roles]

    @property
    def features(self) -> list[ColumnSpec]:
        return self.by_role("feature")

    @property
    def private(self) -> list[str]:
        """Columns that must never appear in reports or W&B."""
        return [c.name for c in self.by_role("pii")]

    @property
    def classes(self) -> list[str]:
        """A multiclass target's classes as text, in the order of the model's outputs (the target
        column's ``categories``); empty for a binary or regression target."""
        if self.task_type != "multiclass":
            return []
        return [str(c) for c in self.column(self.target).categories or []]

    @property
    def integer_classes(self) -> bool:
        """Whether a multiclass target's labels are whole numbers (its column's kind is numeric)."""
        return self.task_type == "multiclass" and self.column(self.target).kind == "numeric"

    def target_codes(self, values: pd.Series) -> np.ndarray:
        """The target as the model and the metrics take it: 0/1 (binary, as validated), the number
        (regression), or the class's position in :attr:`classes` (multiclass; NaN for a missing label)."""
        if self.task_type == "multiclass":
            return class_codes(values, self.classes)
        return values.to_numpy(dtype=float, na_value=np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "target": self.target,
            "task_type": self.task_type,
            "time_column": self.time_column,
            "positive_class": self.positive_class,
            "columns": [c.to_dict() for c in self.columns],
        }

    def save(self, path: str | Path) -> Path:
        header = (
            f"# Schema of '{self.dataset}'. Edit freely: nbops validates every row against it.\n"
            "# kind: numeric | categorical | time | text\n"
            "# role: feature | target | time | id (kept, never modelled) | pii (never reaches the model,\n"
            "#       reports or W&B) | ignore\n"
            "# Rows outside min/max, with a category not listed, or null where nullable is false are\n"
            "# quarantined with the reason, never dropped.\n"
        )
        for note in self.notes:
            header += f"# note: {note}\n"
        return write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True), path)

    @classmethod
    def load(cls, path: str | Path) -> TableSchema:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DataError("the schema file is not valid YAML", file=str(path), found=str(exc)) from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "schema") -> TableSchema:
        try:
            columns = [ColumnSpec(**c) for c in raw["columns"]]
            schema = cls(
                dataset=raw.get("dataset", "dataset"),
                target=raw["target"],
                task_type=raw["task_type"],
                columns=columns,
                time_column=raw.get("time_column"),
                positive_class=raw.get("positive_class"),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(
                "the schema is missing a key or has an unknown one",
                file=source,
                expected="dataset, target, task_type, time_column, columns: [{name, kind, role, nullable, min, max, "
                "categories}]",
                found=str(exc),
            ) from exc
        for col in columns:
            if col.kind not in KINDS or col.role not in ROLES:
                raise DataError(
                    "unknown kind or role in the schema",
                    file=source,
                    column=col.name,
                    expected=f"kind in {KINDS}, role in {ROLES}",
                    found=f"kind={col.kind!r}, role={col.role!r}",
                )
        if schema.task_type not in TASK_TYPES:
            raise DataError(
                "unsupported task_type in the schema",
                file=source,
                expected="binary, multiclass or regression",
                found=repr(schema.task_type),
            )
        if schema.target not in schema.names:
            raise DataError("the schema does not list its target column", file=source, column=schema.target)
        if schema.task_type == "multiclass":
            classes = schema.column(schema.target).categories or []
            if len(classes) < 2 or len(classes) > MAX_CLASSES or len(set(map(str, classes))) != len(classes):
                raise DataError(
                    "a multiclass schema must list its classes",
                    file=source,
                    column=schema.target,
                    expected=f"categories: the target's classes, 2 to {MAX_CLASSES} distinct labels in the order of "
                    "the model's outputs",
                    found=f"{len(classes)} categories" + (f": {', '.join(map(str, classes[:8]))}" if classes else ""),
                    hint="list the classes under the target column's categories, or delete the schema file so it is "
                    "inferred again",
                )
        return schema


def infer_task_type(target: pd.Series, *, file: str, column: str) -> tuple[TaskType, str | None]:
    """Binary when the target has two values, multiclass when it has 3 to 50 labels (text, or whole
    numbers with at most 20 distinct values), regression when it is numeric with more values.

    Returns:
        The task type, and the positive class label for a binary target that is not 0/1.

    Raises:
        DataError: one class only, or a text target with more than 50 classes.
    """
    values = target.dropna()
    if values.empty:
        raise DataError("the target column has no values", file=file, column=column, expected="a label on most rows")
    numeric = pd.to_numeric(values, errors="coerce")
    numeric = numeric.where(np.isfinite(numeric.astype("float64")))  # inf: quarantined, never a class or a scale
    is_numeric = numeric.notna().mean() >= PARSE_SHARE
    uniques = pd.unique(numeric.dropna() if is_numeric else values.astype(str))
    if len(uniques) == 1:
        raise single_class_error(file, column, uniques[0])
    if len(uniques) == 2:
        if is_numeric and set(np.asarray(uniques, dtype=float)) == {0.0, 1.0}:
            return "binary", None
        counts = values.astype(str).value_counts()
        return "binary", str(counts.index[-1])  # the rarer label is the event of interest
    whole = is_numeric and bool(np.all(np.mod(np.asarray(uniques, dtype=float), 1) == 0))
    if is_numeric and not (whole and len(uniques) <= MAX_INTEGER_CLASSES):
        return "regression", None
    if len(uniques) > MAX_CLASSES:
        raise too_many_classes_error(file, column, len(uniques), list(uniques))
    return "multiclass", None


def single_class_error(file: str, column: str, value: object, where: str = "") -> DataError:
    """The target has one class: nothing to learn to tell apart."""
    return DataError(
        f"the target has a single class{where}",
        file=file,
        column=column,
        expected="at least two distinct values (both outcomes for a binary target, 3 to 50 classes for a multiclass "
        "one)",
        found=f"every labelled row is {shown(value)}",
        hint="check the file is the full table and not a filtered extract",
    )


def too_many_classes_error(file: str, column: str, n: int, examples: list[object]) -> DataError:
    """More classes than a multiclass model takes."""
    return DataError(
        f"the target has {n:,} classes, more than the {MAX_CLASSES} a multiclass model takes",
        file=file,
        column=column,
        expected=f"2 to {MAX_CLASSES} distinct labels (or a numeric target for regression)",
        found=f"{n:,} distinct labels, e.g. {', '.join(map(shown, examples[:5]))}",
        hint="group rare labels into fewer classes (an 'other' class), set task_type: regression if the labels are "
        "ordered numbers, or check TARGET names the outcome column and not an identifier",
    )


def class_order(values: pd.Series) -> tuple[list[str], bool]:
    """A multiclass target's classes as text, sorted (whole numbers in numeric order: 2 before 10),
    and whether they are whole numbers."""
    present = values.dropna()
    numeric = pd.to_numeric(present, errors="coerce") if not pd.api.types.is_bool_dtype(present) else present
    if len(present) and numeric.notna().all() and bool(np.all(np.mod(numeric.astype(float), 1) == 0)):
        return [str(int(v)) for v in sorted(set(numeric.astype(float)))], True
    return sorted(set(label_text(present).tolist())), False


_INDEX_HEADER = re.compile(r"(Unnamed: \d+|index|)", re.I)


def looks_like_row_index(name: object, series: pd.Series) -> bool:
    """A row number saved with the table (pandas' ``to_csv`` default, R's ``write.csv``): a blank,
    ``Unnamed: N`` or ``index`` header over unique consecutive integers from 0 or 1."""
    if not _INDEX_HEADER.fullmatch(str(name).strip()) or series.isna().any() or len(series) < 2:
        return False
    numbers = pd.to_numeric(series, errors="coerce")
    if numbers.isna().any() or not np.all(np.mod(numbers, 1) == 0):
        return False
    steps = np.diff(numbers.to_numpy(dtype="float64"))
    return bool(numbers.iloc[0] in (0, 1) and np.all(steps == 1))


def holds_containers(series: pd.Series) -> bool:
    """Whether a column holds lists, arrays or records (Parquet list/struct columns)."""
    sample = series.dropna().head(100)
    return bool(len(sample)) and all(isinstance(v, list | tuple | dict | np.ndarray) for v in sample)


def infer_schema(
    df: pd.DataFrame,
    *,
    dataset: str,
    target: str,
    task_type: Literal["auto", "binary", "multiclass", "regression"] = "auto",
    time_column: str = "auto",
    id_columns: list[str] | None = None,
    pii_columns: list[str] | None = None,
    file: str = "data",
) -> TableSchema:
    """Infer a schema from a raw table (text columns from CSV, or typed columns from Parquet).

    Names that look like personal data (email, phone, name, ...) and all-unique text columns are
    marked ``pii`` and ``id``, so they are kept out of the model until the user says otherwise.
    """
    id_columns = list(id_columns or [])
    pii_columns = list(pii_columns or [])
    for name in [target, *id_columns, *pii_columns] + ([time_column] if time_column not in ("auto", "none") else []):
        if name not in df.columns:
            raise DataError(
                "a column named in the settings is not in the table",
                file=file,
                column=name,
                expected="one of the table's columns",
                found=missing_column_found(str(name), list(df.columns)),
                hint="fix the name in env.yaml (target, time_column, id_columns, pii_columns) or DATA/TARGET",
            )
    task: TaskType
    if task_type == "auto":
        task, positive = infer_task_type(df[target], file=file, column=target)
    else:
        task, positive = task_type, None
        if task == "binary":
            _, positive = infer_task_type(df[target], file=file, column=target)
    classes: list[str] = []
    integer_classes = False
    if task == "multiclass":
        classes, integer_classes = class_order(df[target])
        if len(classes) < 2:
            raise single_class_error(file, target, classes[0] if classes else None)
        if len(classes) > MAX_CLASSES:
            raise too_many_classes_error(file, target, len(classes), list(classes))
    kind: Kind = "numeric" if task == "regression" or positive is None else "categorical"
    labels = None
    if task == "multiclass":  # [class 0, class 1, ...]: the order of the model's outputs
        kind, labels = ("numeric" if integer_classes else "categorical"), classes
    elif positive is not None:
        counts = df[target].dropna().astype(str).value_counts()
        negative = next(str(v) for v in counts.index if str(v) != positive)
        labels = [negative, positive]  # [class 0, class 1]
    target_spec = ColumnSpec(target, kind, "target", nullable=False, categories=labels)
    others, notes, chosen_time = infer_columns(
        df.drop(columns=[target]), time_column=time_column, id_columns=id_columns, pii_columns=pii_columns, file=file
    )
    by_name = {c.name: c for c in others}
    columns = [target_spec if name == target else by_name[name] for name in df.columns]
    return TableSchema(
        dataset=dataset,
        target=target,
        task_type=task,
        columns=columns,
        time_column=chosen_time,
        positive_class=positive,
        notes=notes,
    )


def infer_columns(
    df: pd.DataFrame,
    *,
    time_column: str = "auto",
    id_columns: list[str] | None = None,
    pii_columns: list[str] | None = None,
    file: str = "data",
) -> tuple[list[ColumnSpec], list[str], str | None]:
    """The kind and role of every column of a table without its target, as :func:`infer_schema`
    decides them (personal data, time, ids, row numbers, containers, numbers, categories); also the
    notes for the user and the time column chosen. `nbops drift` uses it on a reference table.
    """
    id_columns = list(id_columns or [])
    pii_columns = list(pii_columns or [])
    notes: list[str] = []
    columns: list[ColumnSpec] = []
    chosen_time = None if time_column == "none" else (time_column if time_column != "auto" else None)
    for name in df.columns:
        series = df[name]
        nullable = bool(series.isna().any())
        if name in pii_columns or (name not in id_columns and _PII_NAME.search(str(name))):
            columns.append(ColumnSpec(name, "text", "pii", nullable=True))
            if name not in pii_columns:
                notes.append(f"'{name}' looks like personal data and was marked pii; change its role if it is not")
            continue
        if series.isna().all():
            raise DataError(
                "a column is entirely empty",
                file=file,
                column=name,
                expected="at least one value per column",
                found=f"all {len(series):,} rows are null",
                hint="drop the column, or add it to the schema with role: ignore",
            )
        if name == chosen_time or (time_column == "auto" and chosen_time is None and _looks_like_time(name, series)):
            chosen_time = name
            columns.append(ColumnSpec(name, "time", "time", nullable=nullable))
            continue
        if name in id_columns:
            columns.append(ColumnSpec(name, "text", "id", nullable=nullable))
            continue
        if looks_like_row_index(name, series):
            columns.append(ColumnSpec(name, "text", "id", nullable=nullable))
            notes.append(
                f"'{name}' is a row number written with the table (a blank or 'Unnamed' header, 0, 1, 2, ...) and was "
                "marked id: a model must not learn from the row order"
            )
            continue
        if holds_containers(series):
            columns.append(ColumnSpec(name, "text", "ignore", nullable=True))
            notes.append(
                f"'{name}' holds lists or records, not single values, and was set to ignore; flatten it to use it"
            )
            continue
        numeric = as_numeric(series)
        parsed_share = numeric.notna().sum() / max(series.notna().sum(), 1)
        if parsed_share >= PARSE_SHARE:
            lo = float(np.nanmin(numeric)) if numeric.notna().any() else None
            columns.append(
                ColumnSpec(
                    name, "numeric", "feature", nullable=nullable, min=0.0 if lo is not None and lo >= 0 else None
                )
            )
            continue
        levels = series.dropna().astype(str)
        n_unique = levels.nunique()
        if n_unique == len(levels) and len(levels) > 50:
            columns.append(ColumnSpec(name, "text", "id", nullable=nullable))
            notes.append(f"'{name}' has a different value on every row and was marked id")
        elif n_unique > MAX_CATEGORIES:
            columns.append(ColumnSpec(name, "text", "ignore", nullable=nullable))
            notes.append(
                f"'{name}' has {n_unique:,} distinct values and was set to ignore; encode it yourself to use it"
            )
        else:
            cats = sorted(levels.unique().tolist())
            columns.append(ColumnSpec(name, "categorical", "feature", nullable=nullable, categories=cats))
    return columns, notes, chosen_time


def as_numeric(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    return pd.to_numeric(series, errors="coerce")


def parse_time(series: pd.Series) -> pd.Series:
    """Parse a time column (datetimes, ISO dates, 'YYYY-MM' months); unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    return pd.to_datetime(series.astype("string"), errors="coerce", format="mixed")


def _looks_like_time(name: str, series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not _TIME_NAME.search(str(name)) or pd.api.types.is_numeric_dtype(series):
        return False
    sample = series.dropna().head(1000)
    return bool(len(sample)) and parse_time(sample).notna().mean() >= PARSE_SHARE


def outcome_label(target: str, positive_class: str | None, task_type: str = "binary") -> str:
    """What a binary model predicts, in the data's own words: ``default = 1``, ``churned = yes``."""
    if task_type != "binary":
        return target
    return f"{target} = {positive_class if positive_class is not None else 1}"
