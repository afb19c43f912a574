"""Validate a raw table against its schema: typed valid rows, and every bad row quarantined with why.

Problems with the whole table (a missing column, an empty column, one target class) raise a
:class:`DataError`. Problems with single rows never raise and never drop: the row goes to quarantine
with its original values, its row number and a reason naming the column and the value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nbops.data.schema import ColumnSpec, TableSchema, as_numeric, parse_time, single_class_error
from nbops.errors import DataError, missing_column_found, shown
from nbops.runtime.schema import label_text

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"


@dataclass
class ValidationResult:
    """Valid typed rows, quarantined raw rows, and a per-reason summary."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    reasons: pd.DataFrame  # column, problem, rows, first_rows
    n_rows: int

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)


def validate_table(raw: pd.DataFrame, schema: TableSchema, *, file: str) -> ValidationResult:
    """Check ``raw`` against ``schema`` column by column.

    Args:
        raw: the table as read (text columns from CSV or typed from Parquet).
        schema: the declared or inferred schema.
        file: the source path, named in every message.

    Returns:
        Valid rows with declared types (PII columns removed), quarantined rows with reasons.

    Raises:
        DataError: missing or undeclared columns, an all-null column, a single-class target.
    """
    _check_columns(raw, schema, file)
    messages: list[pd.Series] = []
    typed: dict[str, pd.Series] = {}
    for spec in schema.columns:
        column = raw[spec.name]
        if spec.role not in ("pii", "ignore", "id") and spec.role != "target" and column.isna().all():
            raise DataError(
                "a column is entirely empty",
                file=file,
                column=spec.name,
                expected="at least one value" if spec.nullable else "a value on every row (nullable: false)",
                found=f"all {len(column):,} rows are null",
                hint="fix the extract, or set role: ignore for this column in the schema",
            )
        values, problems = _coerce(column, spec, schema)
        typed[spec.name] = values
        messages.extend(problems)
    if messages:
        per_row = pd.concat(messages)
        reason_by_row = per_row.groupby(level=0, sort=True).agg("; ".join)
    else:
        per_row = pd.Series(dtype=str)
        reason_by_row = pd.Series(dtype=str)
    bad = raw.index.isin(reason_by_row.index)
    keep = [c.name for c in schema.columns if c.role != "pii"]
    valid = pd.DataFrame({k: typed[k] for k in keep})[~bad].reset_index(drop=True)
    quarantine = raw[bad].astype("string").copy()
    quarantine.insert(0, ROW_COLUMN, np.flatnonzero(bad) + 1)
    quarantine[REASON_COLUMN] = reason_by_row.reindex(raw.index[bad]).to_numpy()
    quarantine = quarantine.reset_index(drop=True)
    result = ValidationResult(
        valid=valid, quarantine=quarantine, reasons=_summarise(per_row, raw.index), n_rows=len(raw)
    )
    if schema.task_type == "binary" and len(valid):
        classes = valid[schema.target].unique()
        if len(classes) < 2:
            raise DataError(
                "the target has a single class among the valid rows",
                file=file,
                column=schema.target,
                expected="both outcomes (0 and 1) present",
                found=f"every valid row has {schema.target}={classes[0]}",
            )
    if schema.task_type == "multiclass" and len(valid):
        present = valid[schema.target].dropna().unique()
        if len(present) < 2:
            raise single_class_error(file, schema.target, present[0], " among the valid rows")
    return result


def check_split_classes(schema: TableSchema, splits: dict[str, pd.DataFrame], *, file: str) -> None:
    """A multiclass model learns only the classes of its training rows: a class that appears in the
    validation or test rows but never in training cannot be predicted, so it is refused here.

    Args:
        splits: the rows of ``train`` and of the other splits, by name.
        file: the table that was split (named in the message).

    Raises:
        DataError: naming the class, the split it appears in and how many of its rows there are.
    """
    if schema.task_type != "multiclass":
        return
    trained = set(label_text(splits["train"][schema.target]).dropna())
    for name, rows in splits.items():
        if name == "train":
            continue
        labels = label_text(rows[schema.target])
        missing = sorted(set(labels.dropna()) - trained)
        if missing:
            counts = labels.value_counts()
            raise DataError(
                f"a class of the {name} split never appears in the training split",
                file=file,
                column=schema.target,
                expected=f"every class of the {name} rows also among the training rows (they hold "
                + ", ".join(map(shown, sorted(trained)))
                + ")",
                found=", ".join(f"{shown(c)} in {int(counts[c]):,} {name} row(s)" for c in missing),
                hint="a time-ordered split puts the latest rows in test: if the class is new, train on data that has "
                "it (more history, or time_column: none for a random split); if it is rare, merge it into another "
                "class",
            )


def _check_columns(raw: pd.DataFrame, schema: TableSchema, file: str) -> None:
    if schema.target not in raw.columns:
        raise DataError(
            "the target column is missing",
            file=file,
            column=schema.target,
            expected=f"a column named '{schema.target}'",
            found=missing_column_found(schema.target, list(raw.columns)),
            hint="set TARGET=<column> (or `target` in env.yaml) to the outcome column",
        )
    missing = [n for n in schema.names if n not in raw.columns]
    if missing:
        raise DataError(
            "columns declared in the schema are missing from the table",
            file=file,
            column=missing[0],
            expected=", ".join(missing),
            hint="fix the extract, or remove those columns from the schema file",
        )
    extra = [str(c) for c in raw.columns if c not in schema.names]
    if extra:
        raise DataError(
            "the table has columns the schema does not declare",
            file=file,
            column=extra[0],
            found=", ".join(extra),
            hint="add them to the schema file (role: ignore keeps them out of the model), or delete the schema file to "
            "infer it again",
        )


def _coerce(column: pd.Series, spec: ColumnSpec, schema: TableSchema) -> tuple[pd.Series, list[pd.Series]]:
    """Type one column; return the typed values and per-row problem messages (indexed by row).

    Messages are built only for flagged rows, so a clean column costs a few vectorised comparisons.
    """
    problems: list[pd.Series] = []
    present = column.notna()
    name = spec.name

    def flag(
        mask: pd.Series, describe: Callable[[pd.Series], pd.Series] | str, values: pd.Series | None = None
    ) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool), index=column.index)
        if not mask.any():
            return
        rows = column.index[mask.to_numpy()]
        if isinstance(describe, str):
            problems.append(pd.Series(describe, index=rows))
        else:
            shown = (values if values is not None else column)[mask.to_numpy()]
            problems.append(describe(shown.astype("string").fillna("").str.slice(0, 40)))

    if spec.role == "pii":
        # Personal data is never inspected: a reason would quote the value into reports.
        return column, problems
    if spec.role == "target":
        if schema.task_type == "binary":
            values = _binary_target(column, spec, schema)
            flag(present & values.isna(), lambda v: name + ": label " + v.map(repr) + " is not one of the two classes")
        elif schema.task_type == "multiclass":
            # Kept as the label (text), not a code: every later stage maps it through the schema's classes.
            values = label_text(column).where(present, pd.NA)
            classes = schema.classes
            listed = ", ".join(classes[:8]) + (" ..." if len(classes) > 8 else "")
            flag(
                present & ~values.isin(classes).fillna(False),
                lambda v: name + ": label " + v.map(repr) + f" is not one of the {len(classes)} classes ({listed})",
            )
        else:
            values = as_numeric(column)
            flag(present & values.isna(), lambda v: name + ": " + v.map(repr) + " is not a number")
        flag(~present, f"{name}: target is missing")
        return values, problems
    if not spec.nullable:
        flag(~present, f"{name}: missing, but the schema says nullable: false")
    if spec.kind == "numeric":
        values = as_numeric(column)
        flag(present & values.isna(), lambda v: name + ": " + v.map(repr) + " is not a number")
        if spec.min is not None:
            flag(values < spec.min, lambda v: name + ": " + v + f" is below the minimum {spec.min:g}", values)
        if spec.max is not None:
            flag(values > spec.max, lambda v: name + ": " + v + f" is above the maximum {spec.max:g}", values)
        return values.astype("float64"), problems
    if spec.kind == "time":
        values = parse_time(column)
        flag(present & values.isna(), lambda v: name + ": " + v.map(repr) + " is not a date")
        return values, problems
    if spec.kind == "categorical" and spec.categories is not None:
        unseen = present & ~column.isin(spec.categories)
        if pd.api.types.is_numeric_dtype(column) or unseen.any():
            unseen = present & ~column.astype("string").isin(pd.Index(spec.categories))
        shown = ", ".join(spec.categories[:8]) + (" ..." if len(spec.categories) > 8 else "")
        flag(unseen, lambda v: name + ": unseen category " + v.map(repr) + f" (allowed: {shown})")
    if column.dtype == object or pd.api.types.is_string_dtype(column):
        return column, problems
    return column.astype("string").astype(object).where(present, None), problems


def _binary_target(column: pd.Series, spec: ColumnSpec, schema: TableSchema) -> pd.Series:
    """Map a binary target to 0/1; any other label is left NaN (and so quarantined)."""
    if schema.positive_class is None:
        numeric = as_numeric(column)
        return numeric.where(numeric.isin([0.0, 1.0])).astype("Int8").astype("float64")
    text = column.astype("string")
    negative: str | None
    if spec.categories and len(spec.categories) == 2:
        negative = next(c for c in spec.categories if c != schema.positive_class)
    else:  # an older schema without the two labels: the most frequent other label is the negative
        others = text[text != schema.positive_class].value_counts()
        negative = others.index[0] if len(others) else None
    mapped = pd.Series(np.nan, index=column.index)
    mapped[(text == schema.positive_class).fillna(False).to_numpy()] = 1.0
    if negative is not None:
        mapped[(text == negative).fillna(False).to_numpy()] = 0.0
    return mapped


def _summarise(per_row: pd.Series, index: pd.Index) -> pd.DataFrame:
    """One line per (column, problem): how many rows, and the first row numbers (1-based)."""
    if per_row.empty:
        return pd.DataFrame(columns=["column", "problem", "rows", "first_rows"])
    frame = pd.DataFrame({"row": index.get_indexer(per_row.index) + 1, "message": per_row.to_numpy()})
    frame["column"] = frame["message"].str.split(":", n=1).str[0]
    frame["problem"] = (
        frame["message"].str.replace(r"'[^']*'|-?\d[\d.e+-]*", "…", regex=True).str.split(":", n=1).str[1].str.strip()
    )
    grouped = frame.groupby(["column", "problem"], sort=False)["row"]
    summary = grouped.agg(rows="size", first_rows=lambda r: ", ".join(map(str, sorted(r)[:5]))).reset_index()
    return summary.sort_values("rows", ascending=False, ignore_index=True)
