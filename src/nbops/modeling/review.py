"""A segment review of an evaluated model: does it treat the levels of a column alike?

The worked example of a notebook task of your own (notebooks/examples/segment_review.ipynb) calls
this. For a binary target, each level of each reviewed column gets its rows, observed rate, mean
predicted probability, the share the model flags (probability at or above the decision threshold),
the true and false positive rates at that threshold, and the ratio of its share *not* flagged to the
best level's. A ratio below ``min_ratio`` (0.8: the "four-fifths" rule of US employment law, the
usual first screen for disparate impact) is a finding. For a numeric target: mean actual, mean
predicted, bias and MAE per level, and a finding where a level's MAE exceeds the overall MAE by more
than ``1 / min_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbops.data.schema import TableSchema
from nbops.errors import ConfigError, DataError, shown

# Levels smaller than min_rows are pooled under this name.
OTHER = "(other)"
PREDICTION = "prediction"


@dataclass(frozen=True)
class SegmentReview:
    """The review's table (one row per column and level), its findings and the settings used."""

    table: pd.DataFrame
    findings: list[str]
    task_type: str
    threshold: float
    min_ratio: float
    columns: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the task logs and writes as JSON: settings, the lowest ratio and the findings."""
        ratio = self.table["ratio"].min() if "ratio" in self.table and len(self.table) else None
        return {
            "task_type": self.task_type,
            "columns": self.columns,
            "threshold": self.threshold,
            "min_ratio": self.min_ratio,
            "lowest_ratio": None if ratio is None or pd.isna(ratio) else float(ratio),
            "findings": self.findings,
        }


def segment_review(
    schema: TableSchema,
    rows: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    columns: list[str],
    threshold: float = 0.5,
    min_rows: int = 100,
    min_ratio: float = 0.8,
) -> SegmentReview:
    """Review the model's predictions on ``rows`` (the test split) level by level.

    Args:
        schema: the dataset's schema (its target, task type and categorical features).
        rows: the test split, in the order the evaluate stage scored it.
        predictions: evaluate's test predictions (a ``prediction`` column, aligned with ``rows``).
        columns: the columns to review; empty: every categorical feature.
        threshold: the decision threshold of a binary model.
        min_rows: levels with fewer rows are pooled as "(other)", too few to judge alone.
        min_ratio: below this ratio a level is a finding.

    Raises:
        DataError: predictions and rows do not align, or a column is not in the test rows.
    """
    if len(rows) != len(predictions) or PREDICTION not in predictions:
        raise DataError(
            "the test predictions do not match the test split",
            expected=f"{len(rows):,} rows with a '{PREDICTION}' column (evaluate's predictions product)",
            found=f"{len(predictions):,} rows, columns {shown(list(predictions.columns))}",
            hint="rebuild evaluate (`nbops build`) so both come from the same split",
        )
    reviewed = columns or [c.name for c in schema.features if c.kind == "categorical"]
    missing = [c for c in reviewed if c not in rows.columns]
    if missing:
        raise ConfigError(
            f"segment review: column(s) {', '.join(missing)} are not in the test rows; "
            f"choose from {', '.join(c for c in rows.columns if c != schema.target)}"
        )
    y = rows[schema.target].to_numpy(float)
    p = predictions[PREDICTION].to_numpy(float)
    frames = [_review_column(col, rows[col], y, p, schema.task_type, threshold, min_rows) for col in reviewed]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    findings: list[str] = []
    if schema.task_type == "binary" and len(table):
        best = table.groupby("column")["not_flagged_rate"].transform("max")
        table["ratio"] = (table["not_flagged_rate"] / best.where(best > 0)).round(4)
        for r in table[table["ratio"] < min_ratio].to_dict("records"):
            findings.append(
                f"{r['column']} = {r['level']}: {r['not_flagged_rate']:.1%} not flagged against the best level's "
                f"{r['not_flagged_rate'] / r['ratio']:.1%} (ratio {r['ratio']:.2f} < {min_ratio:.2f}, "
                f"{r['rows']:,} rows)"
            )
    elif len(table):
        overall = float(np.mean(np.abs(y - p)))
        for r in table[table["mae"] > overall / min_ratio].to_dict("records"):
            findings.append(
                f"{r['column']} = {r['level']}: MAE {r['mae']:.4g} against {overall:.4g} overall "
                f"(more than {1 / min_ratio:.2f}x, {r['rows']:,} rows)"
            )
    return SegmentReview(table, findings, schema.task_type, threshold, min_ratio, reviewed)


def _review_column(
    column: str, values: pd.Series, y: np.ndarray, p: np.ndarray, task_type: str, threshold: float, min_rows: int
) -> pd.DataFrame:
    levels = values.astype("string").fillna("(missing)")
    counts = levels.value_counts()
    levels = levels.where(levels.map(counts) >= min_rows, OTHER)
    out = []
    for level in levels.value_counts().index:
        mask = (levels == level).to_numpy()
        yl, pl = y[mask], p[mask]
        row: dict[str, Any] = {"column": column, "level": str(level), "rows": int(mask.sum())}
        if task_type == "binary":
            flagged = pl >= threshold
            positives, negatives = yl == 1, yl == 0
            row |= {
                "observed_rate": float(yl.mean()),
                "mean_prediction": float(pl.mean()),
                "flagged_rate": float(flagged.mean()),
                "not_flagged_rate": float(1 - flagged.mean()),
                "true_positive_rate": float(flagged[positives].mean()) if positives.any() else np.nan,
                "false_positive_rate": float(flagged[negatives].mean()) if negatives.any() else np.nan,
            }
        else:
            row |= {
                "mean_actual": float(yl.mean()),
                "mean_prediction": float(pl.mean()),
                "bias": float((pl - yl).mean()),
                "mae": float(np.abs(pl - yl).mean()),
            }
        out.append(row)
    return pd.DataFrame(out)


def review_figure(review: SegmentReview) -> Any:
    """One panel per reviewed column: each level's share not flagged (binary) or MAE (numeric),
    with the line a level must stay above (or below)."""
    from matplotlib.figure import Figure

    cols = review.columns or ["(none)"]
    fig = Figure(figsize=(7, 1.2 + 0.35 * max(len(review.table), 1)))
    axes = fig.subplots(len(cols), 1, squeeze=False)
    for ax, col in zip(axes[:, 0], cols, strict=True):
        part = review.table[review.table["column"] == col] if len(review.table) else review.table
        if part.empty:
            ax.set_axis_off()
            continue
        if review.task_type == "binary":
            values, label = part["not_flagged_rate"], "share not flagged"
            line = float(part["not_flagged_rate"].max()) * review.min_ratio
            bad = part["ratio"] < review.min_ratio
        else:
            values, label = part["mae"], "MAE"
            line = float(np.average(part["mae"], weights=part["rows"])) / review.min_ratio
            bad = part["mae"] > line
        ax.barh(part["level"], values, color=["#c0392b" if b else "#4c72b0" for b in bad])
        ax.axvline(line, color="#333", linestyle="--", linewidth=1)
        ax.set_title(col, loc="left", fontsize=10)
        ax.set_xlabel(label)
        ax.invert_yaxis()
    fig.tight_layout()
    return fig
