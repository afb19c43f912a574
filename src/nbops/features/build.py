"""The features stage: split the valid rows and fit the one feature transform on the training split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config.params import FeaturesParams
from nbops.data.io import write_json, write_parquet
from nbops.data.schema import TableSchema, outcome_label
from nbops.data.validate import check_split_classes
from nbops.features.split import SPLITS, Split, split_rows
from nbops.runtime.transform import FeatureTransform


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
) -> FeaturesResult:
    """Split, fit the transform on train, and write train/valid/test Parquet, the transform and a summary.

    Args:
        params: split fractions and seed.
        schema: the dataset schema (feature columns, target, time column).
        valid_rows: ingest's valid rows.
        out: product paths with keys train, valid, test, transform, summary.
    """
    df = pd.read_parquet(valid_rows)
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
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    transform = FeatureTransform.fit(split.train, numeric, categorical)
    for name in SPLITS:
        write_parquet(getattr(split, name), out[name])
    transform.save(out["transform"])
    summary: dict[str, Any] = {
        "method": split.method,
        "features": transform.feature_names,
        "target": schema.target,
        "task_type": schema.task_type,
        "positive_class": schema.positive_class,
        "splits": {},
    }
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
