"""Data quality of a batch against the model's input schema: missing values, out-of-range values,
unseen categories and schema violations (missing columns, values of the wrong type)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from nbops.runtime.schema import InputSchema


@dataclass
class ColumnQuality:
    name: str
    missing_rate: float
    wrong_type: int  # values that are not a number in a numeric column
    out_of_range: int  # numbers outside the declared [min, max]
    unseen: int  # categories the schema does not list
    examples: list[str]  # a few offending values (never for a clean column)


@dataclass
class QualityReport:
    rows: int
    missing_columns: list[str]
    columns: list[ColumnQuality]

    @property
    def issues(self) -> list[str]:
        """Human-readable problems, one per line; empty when the batch is clean."""
        out = []
        if self.rows == 0:
            out.append("the batch has no rows")
        out += [f"column '{c}' is missing" for c in self.missing_columns]
        for c in self.columns:
            if c.wrong_type:
                out.append(f"'{c.name}': {c.wrong_type} values are not numbers (e.g. {', '.join(c.examples)})")
            if c.out_of_range:
                out.append(
                    f"'{c.name}': {c.out_of_range} values outside the declared range (e.g. {', '.join(c.examples)})"
                )
            if c.unseen:
                out.append(
                    f"'{c.name}': {c.unseen} rows with categories not in the schema (e.g. {', '.join(c.examples)})"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing_columns": self.missing_columns,
            "columns": [asdict(c) for c in self.columns],
            "issues": self.issues,
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.columns])


def check_quality(batch: pd.DataFrame, schema: InputSchema) -> QualityReport:
    """Count every quality problem in ``batch`` (vectorised; never raises on bad data)."""
    missing = [f.name for f in schema.fields if f.name not in batch.columns]
    columns = []
    for spec in schema.fields:
        if spec.name in missing:
            continue
        col = batch[spec.name]
        null = col.isna().to_numpy()
        wrong = out = unseen = 0
        examples: list[str] = []
        if spec.kind == "numeric":
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(values) & ~null
            wrong = int(bad.sum())
            rng = np.zeros(len(values), dtype=bool)
            with np.errstate(invalid="ignore"):
                if spec.min is not None:
                    rng |= values < spec.min
                if spec.max is not None:
                    rng |= values > spec.max
            out = int(rng.sum())
            raw = col.to_numpy()
            examples = [repr(v)[:40] for v in raw[bad | rng][:3]]
        elif spec.categories is not None:
            text = col.astype("string")
            mask = (~text.isin(spec.categories)).fillna(False).to_numpy() & ~null
            unseen = int(mask.sum())
            examples = [repr(v)[:40] for v in pd.unique(text[mask].dropna())[:3]]
        columns.append(ColumnQuality(spec.name, float(null.mean()) if len(null) else 0.0, wrong, out, unseen, examples))
    return QualityReport(len(batch), missing, columns)
