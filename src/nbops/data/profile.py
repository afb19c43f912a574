"""A data profile (what each column looks like) and a content fingerprint (which data this is)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from nbops.data.schema import TableSchema


def fingerprint(df: pd.DataFrame) -> str:
    """A SHA-256 of the table's content, column names and types, independent of the file format.

    Two tables with the same rows in the same order and the same columns get the same fingerprint,
    whether they came from CSV or Parquet; any changed value changes it.
    """
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(df[c].dtype)) for c in df.columns]).encode())
    # hash_pandas_object is vectorised; 1M rows x 20 columns take well under a second.
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _distinct(s: pd.Series) -> int:
    """Distinct values; lists and records (Parquet list/struct columns) are counted by their text."""
    try:
        return int(s.nunique(dropna=True))
    except TypeError:  # unhashable values
        return int(s.dropna().map(repr).nunique())


def profile_table(df: pd.DataFrame, schema: TableSchema) -> dict[str, Any]:
    """Per-column statistics for the report; private (pii) columns are not in ``df`` at all.

    Returns:
        ``{"rows": n, "columns": {name: {...}}}`` with missing rate, distinct count, and quantiles for
        numeric columns or the top categories for categorical ones.
    """
    columns: dict[str, Any] = {}
    for spec in schema.columns:
        if spec.name not in df.columns:
            continue
        s = df[spec.name]
        entry: dict[str, Any] = {
            "kind": spec.kind,
            "role": spec.role,
            "missing_rate": float(s.isna().mean()),
            "distinct": _distinct(s),
        }
        if spec.kind == "numeric" or (spec.role == "target" and pd.api.types.is_numeric_dtype(s)):
            v = s.to_numpy(dtype=float, na_value=np.nan)
            v = v[~np.isnan(v)]
            if v.size:
                q = np.quantile(v, [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0])
                entry.update(
                    mean=float(v.mean()),
                    std=float(v.std()),
                    min=float(q[0]),
                    p01=float(q[1]),
                    p25=float(q[2]),
                    median=float(q[3]),
                    p75=float(q[4]),
                    p99=float(q[5]),
                    max=float(q[6]),
                )
        elif spec.kind == "categorical":
            top = s.value_counts(normalize=True, dropna=True).head(10)
            entry["top"] = {str(k): float(v) for k, v in top.items()}
        elif spec.kind == "time":
            entry.update(min=str(s.min()), max=str(s.max()))
        columns[spec.name] = entry
    return {"rows": int(len(df)), "columns": columns}


def profile_frame(profile: dict[str, Any]) -> pd.DataFrame:
    """The profile as one table: one row per column (statistics a kind has not are missing)."""
    rows = []
    for name, entry in profile["columns"].items():
        top = entry.get("top")
        rows.append(
            {
                "column": name,
                "kind": entry["kind"],
                "role": entry["role"],
                "missing %": round(100 * entry["missing_rate"], 2),
                "distinct": entry["distinct"],
                "mean": entry.get("mean"),
                "median": entry.get("median"),
                "p01": entry.get("p01"),
                "p99": entry.get("p99"),
                "top category": (f"{next(iter(top))} ({100 * next(iter(top.values())):.0f}%)" if top else None),
            }
        )
    return pd.DataFrame(rows)


def _percent(share: float) -> str:
    return "0%" if share == 0 else ("<0.1%" if share < 0.001 else f"{100 * share:.1f}%")


def profile_tables(profile: dict[str, Any], top: int = 3) -> dict[str, pd.DataFrame]:
    """The profile as a reader sees it: one table per kind of column, each with only the statistics
    that kind has (so no column of blanks).

    Returns:
        ``{"Numeric columns": ..., "Categorical columns": ..., "Identifiers, times and text": ...}``
        (a kind without columns is left out), titles a report can show:
        numeric columns with their missing share, distinct values, mean and quantiles; categorical ones
        with their most frequent categories and shares; identifiers, times and text with their range.
    """
    numeric, categorical, other = [], [], []
    for name, entry in profile["columns"].items():
        common = {
            "column": name,
            "role": entry["role"],
            "missing": _percent(entry["missing_rate"]),
            "distinct": entry["distinct"],
        }
        if "mean" in entry:
            numeric.append({**common, **{k: entry[k] for k in ("mean", "min", "p01", "median", "p99", "max")}})
        elif entry["kind"] == "categorical":
            shares = entry.get("top") or {}
            categorical.append(
                {
                    **common,
                    f"top {top} categories": ", ".join(f"{k} {_percent(v)}" for k, v in list(shares.items())[:top]),
                }
            )
        else:
            span = f"{entry['min']} to {entry['max']}" if "min" in entry and "max" in entry else ""
            other.append({**common, "kind": entry["kind"], "range": span})
    tables = {
        "Numeric columns": pd.DataFrame(numeric),
        "Categorical columns": pd.DataFrame(categorical),
        "Identifiers, times and text": pd.DataFrame(other),
    }
    return {title: frame for title, frame in tables.items() if not frame.empty}
