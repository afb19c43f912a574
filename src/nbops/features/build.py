"""The features stage: split the valid rows and fit the one feature transform on the training split.

With the project's feature code (env key ``feature_code``), its derived columns are computed from the
raw features of every valid row first, checked (a problem names the function and the rows of
ingest's valid rows), and stored in the splits beside the raw columns, so the reports, segments and
the reference profile show them; the transform recomputes them wherever it scores, from raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config.params import FeaturesParams
from nbops.data.io import write_json, write_parquet, write_text
from nbops.data.schema import TableSchema, outcome_label
from nbops.data.validate import check_split_classes
from nbops.errors import ConfigError, DataError
from nbops.features.code import feature_code_error, read_feature_code
from nbops.features.split import SPLITS, Split, split_rows
from nbops.runtime.derived import FeatureCode, FeatureCodeError
from nbops.runtime.integrity import FEATURE_CODE_FILE
from nbops.runtime.transform import FeatureTransform

# The feature_code product when the project has no feature code (a product must exist after the task).
NO_FEATURE_CODE = (
    "# No feature code: env.yaml's feature_code is none, so this model has no derived features.\n"
    "# (nbops writes this file so that the features stage's products are complete.)\n"
)


@dataclass
class FeaturesResult:
    """The split, the fitted transform and a summary for the report."""

    split: Split
    transform: FeatureTransform
    summary: dict[str, Any]


def build_features(
    params: FeaturesParams,
    *,
    schema: TableSchema,
    valid_rows: Path,
    out: dict[str, Path],
    project: Path | None = None,
) -> FeaturesResult:
    """Split, fit the transform on train, and write train/valid/test Parquet, the transform and a summary.

    Args:
        params: split fractions, seed and the feature code's file.
        schema: the dataset schema (feature columns, target, time column).
        valid_rows: ingest's valid rows.
        out: product paths with keys train, valid, test, transform, summary, and feature_code (the
            feature code's copy, beside the transform).
        project: the project folder ``params.feature_code`` is relative to.
    """
    df = pd.read_parquet(valid_rows)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    code = None
    if params.feature_code:
        folder = project or Path.cwd()
        code = read_feature_code(folder, params.feature_code)
        # errors name the file as env.yaml names it (relative to the project folder)
        df = add_derived_columns(
            df, code, numeric, categorical, Path(params.feature_code), f"ingest's valid rows, {valid_rows.name}"
        )
    split = split_rows(
        df,
        time_column=schema.time_column,
        valid_fraction=params.valid_fraction,
        test_fraction=params.test_fraction,
        seed=params.seed,
        # A binary target keeps its positive rate (a multiclass one its class shares) in every split of a random split.
        stratify=schema.target if schema.task_type in ("binary", "multiclass") else None,
    )
    check_split_classes(schema, {name: getattr(split, name) for name in SPLITS}, file=str(valid_rows))
    try:
        transform = FeatureTransform.fit(split.train, numeric, categorical, code=code)
    except FeatureCodeError as exc:  # checked on every valid row above: only a function that varies by call
        raise feature_code_error(exc, params.feature_code or "", "the training split") from None
    for name in SPLITS:
        write_parquet(getattr(split, name), out[name])
    write_feature_code(transform, out)
    summary: dict[str, Any] = {
        "method": split.method,
        "features": transform.feature_names,
        "target": schema.target,
        "task_type": schema.task_type,
        "positive_class": schema.positive_class,
        "splits": {},
    }
    if transform.derived:
        summary["derived"] = transform.derived
        summary["feature_code"] = transform.feature_code
    if split.stratified_by:
        summary["stratified_by"] = split.stratified_by
    for name in SPLITS:
        part: pd.DataFrame = getattr(split, name)
        entry: dict[str, Any] = {"rows": len(part)}
        if schema.task_type == "multiclass":  # the share of each class
            shares = part[schema.target].value_counts(normalize=True)
            entry["class_shares"] = {c: float(shares.get(c, 0.0)) for c in schema.classes}
        else:
            entry["target_mean"] = float(part[schema.target].mean())
        if schema.time_column:
            entry["from"] = str(part[schema.time_column].min())
            entry["to"] = str(part[schema.time_column].max())
        summary["splits"][name] = entry
    write_json(summary, out["summary"])
    return FeaturesResult(split=split, transform=transform, summary=summary)


def add_derived_columns(
    df: pd.DataFrame, code: FeatureCode, numeric: list[str], categorical: list[str], file: Path, table: str
) -> pd.DataFrame:
    """``df`` with the feature code's columns, each checked on every row (errors name the rows of
    ``df``, described as ``table``)."""
    clash = [name for name in code.functions if name in df.columns]
    if clash:
        name = clash[0]
        raise DataError(
            f"a feature function is named like a column of the table ('{name}')",
            file=str(file),
            function=name,
            expected="derived features named unlike every column of the data (features, target, identifiers)",
            found=f"the table already has a column '{name}'",
            hint=f"rename the function (for example {name}_derived)",
        )
    plain = FeatureTransform(numeric=numeric, categorical={name: [] for name in categorical})
    try:
        values = code.evaluate(plain.input_frame(df))
    except FeatureCodeError as exc:
        raise feature_code_error(exc, file, table) from None
    return df.assign(**{name: series.set_axis(df.index) for name, (_, series) in values.items()})


def write_feature_code(transform: FeatureTransform, out: dict[str, Path]) -> None:
    """Save the transform and its feature code beside it (the ``feature_code`` product), or a note
    saying there is none."""
    target = out.get("feature_code")
    beside = Path(out["transform"]).parent / FEATURE_CODE_FILE
    if target is not None and Path(target).resolve() != beside.resolve():
        raise ConfigError(
            f"pipeline.yaml: the features task's product 'feature_code' must sit beside its 'transform' "
            f"({beside}), found {target}; the transform finds its feature code there"
        )
    transform.save(out["transform"])
    if target is not None and not transform.derived:
        write_text(NO_FEATURE_CODE, beside)


def derived_table(result: FeaturesResult) -> pd.DataFrame:
    """The derived features (the project's feature code) for the report: kind, missing share, levels
    or range on the training split."""
    rows = []
    train = result.split.train
    for name, kind in result.transform.derived.items():
        col = train[name]
        entry: dict[str, Any] = {
            "feature": name,
            "kind": kind,
            "missing %": round(100 * float(col.isna().mean()), 2),
        }
        if kind == "categorical":
            entry["on the training split"] = f"{len(result.transform.categorical[name])} levels"
        else:
            values = pd.to_numeric(col, errors="coerce")
            entry["on the training split"] = (
                f"median {values.median():.4g}, range {values.min():.4g} to {values.max():.4g}"
            )
        rows.append(entry)
    return pd.DataFrame(rows, columns=["feature", "kind", "missing %", "on the training split"])


def split_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The split summary as a table for display: one row per split, the target's mean named in the
    data's words (``rate of default = 1``, ``mean price``) when the summary knows the target."""
    table = pd.DataFrame(summary["splits"]).T.rename_axis("split").reset_index()
    table["rows"] = table["rows"].astype(int)
    if "class_shares" in table.columns:  # multiclass: a column per class, its share of the split's rows
        shares = pd.DataFrame(list(table.pop("class_shares")), index=table.index).fillna(0.0)
        return pd.concat([table, shares.rename(columns=lambda c: f"share of {c}")], axis=1)
    table["target_mean"] = table["target_mean"].astype(float)
    if "target" in summary:
        outcome = outcome_label(summary["target"], summary.get("positive_class"), summary.get("task_type", "binary"))
        table = table.rename(
            columns={"target_mean": f"rate of {outcome}" if summary.get("task_type") == "binary" else f"mean {outcome}"}
        )
    return table


def levels_table(transform: FeatureTransform) -> pd.DataFrame:
    """The categorical levels the transform learned from the training split, one row per feature."""
    return pd.DataFrame(
        [
            {"feature": name, "levels": len(levels), "learned from the training split": levels}
            for name, levels in transform.categorical.items()
        ],
        columns=["feature", "levels", "learned from the training split"],
    )
