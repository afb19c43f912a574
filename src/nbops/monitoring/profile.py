"""The reference profile: what the training data looked like, stored with the model version.

Computed once from the training rows, it holds per feature the bins and their shares (deciles of
the training values for numeric features, category frequencies for categorical ones, missing as its
own bin), quantiles, missing rate, range, and the distribution of the model's predictions (for a
multiclass model, of each class's probability). A new batch is compared with it without re-reading
the training set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
N_BINS = 10
N_QUANTILES = 101  # the quantile function on a 1% grid: enough for a Wasserstein estimate
SCORE_EDGES = np.linspace(0.0, 1.0, 11)
# From this many rows the features are profiled and compared on a few threads (numpy's partitions,
# sorts and searches release the GIL), one feature per task; the results are the same, in order.
PARALLEL_ROWS = 50_000
_T = TypeVar("_T")
_R = TypeVar("_R")


def per_feature(fn: Callable[[_T], _R], items: Iterable[_T], rows: int) -> list[_R]:
    """``[fn(item) for item in items]``, on up to ``os.cpu_count()`` threads (4 at most) for a table of
    at least PARALLEL_ROWS rows."""
    work = list(items)
    workers = min(4, os.cpu_count() or 1, len(work))
    if rows < PARALLEL_ROWS or workers < 2:
        return [fn(item) for item in work]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="nbops-drift") as pool:
        return list(pool.map(fn, work))


@dataclass
class NumericProfile:
    edges: list[float]  # inner bin edges (len = bins - 1); bins are (-inf, e0], (e0, e1], ... (e_last, inf)
    shares: list[float]  # share of rows per bin, then the missing share last
    quantiles: list[float]  # N_QUANTILES quantiles of the non-missing values
    missing_rate: float
    mean: float
    std: float
    min: float
    max: float
    iqr: float


@dataclass
class CategoricalProfile:
    levels: list[str]
    shares: list[float]  # share per level, then "other" (unseen), then missing
    missing_rate: float


@dataclass
class ReferenceProfile:
    """Per-feature reference distributions and the prediction distribution."""

    rows: int
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)
    prediction: dict[str, Any] | None = None
    version: int = PROFILE_VERSION

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "rows": self.rows,
            "numeric": {k: vars(v) for k, v in self.numeric.items()},
            "categorical": {k: vars(v) for k, v in self.categorical.items()},
            "prediction": self.prediction,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(
                f"reference profile format {data.get('version')} is not supported (expected {PROFILE_VERSION})"
            )
        return cls(
            rows=data["rows"],
            numeric={k: NumericProfile(**v) for k, v in data["numeric"].items()},
            categorical={k: CategoricalProfile(**v) for k, v in data["categorical"].items()},
            prediction=data.get("prediction"),
        )

    def save(self, path: str | Path) -> Path:
        from nbops.files import write_text

        return write_text(json.dumps(self.to_dict()) + "\n", path)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


def numeric_values(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of values per bin (len(edges)+1 bins), then the missing share."""
    n = len(values)
    if n == 0:
        return np.zeros(len(edges) + 2)
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return np.append(counts, missing.sum()) / n


def category_shares(series: pd.Series, levels: list[str]) -> np.ndarray:
    """Shares per reference level, then unseen ("other"), then missing."""
    n = len(series)
    if n == 0:
        return np.zeros(len(levels) + 2)
    counts = series.astype("string").value_counts(dropna=False)
    missing = int(counts[counts.index.isna()].sum()) if counts.index.hasnans else 0
    known = counts[counts.index.notna()]
    per_level = known.reindex(levels, fill_value=0).to_numpy(dtype=np.float64)
    other = float(known.sum() - per_level.sum())
    return np.append(per_level, [other, missing]) / n


def profile_numeric(values: np.ndarray) -> NumericProfile:
    present = values[~np.isnan(values)]
    if present.size == 0:
        return NumericProfile(
            [], [0.0, 1.0], [], 1.0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan")
        )
    # One call for the deciles and the 1% grid: each quantile is computed from its own order statistics,
    # so asking for both at once gives the same values as two calls, for one partition of the values.
    both = np.quantile(present, np.concatenate([np.linspace(0, 1, N_BINS + 1)[1:-1], np.linspace(0, 1, N_QUANTILES)]))
    edges, q = np.unique(both[: N_BINS - 1]), both[N_BINS - 1 :]
    return NumericProfile(
        edges=edges.tolist(),
        shares=bin_shares(values, edges).tolist(),
        quantiles=q.tolist(),
        missing_rate=float(np.isnan(values).mean()),
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(q[0]),
        max=float(q[-1]),
        iqr=float(q[75] - q[25]),
    )


def profile_categorical(series: pd.Series, max_levels: int = 50) -> CategoricalProfile:
    counts = series.astype("string").value_counts(dropna=True)
    levels = [str(x) for x in counts.index[:max_levels]]
    return CategoricalProfile(levels, category_shares(series, levels).tolist(), float(series.isna().mean()))


def build_reference_profile(
    df: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    predictions: np.ndarray | None = None,
    classes: list[str] | None = None,
) -> ReferenceProfile:
    """Profile the training rows (and, if given, the model's predictions on them).

    Args:
        predictions: one score per row, or a multiclass model's (rows, classes) probabilities.
        classes: a multiclass model's class names, in the order of ``predictions``' columns: the
            profile then holds each class's probability distribution (``prediction["classes"]``).
    """
    profile = ReferenceProfile(rows=len(df))
    numbers = per_feature(lambda name: profile_numeric(numeric_values(df[name])), numeric, len(df))
    profile.numeric = dict(zip(numeric, numbers, strict=True))
    categories = per_feature(lambda name: profile_categorical(df[name]), categorical, len(df))
    profile.categorical = dict(zip(categorical, categories, strict=True))
    if predictions is not None:
        p = np.asarray(predictions, dtype=np.float64)
        if p.ndim == 2:
            names = classes or [str(i) for i in range(p.shape[1])]
            profile.prediction = {
                "classes": {name: score_profile(p[:, i]) for i, name in enumerate(names)},
            }
        else:
            profile.prediction = score_profile(p)
    return profile


def score_profile(p: np.ndarray) -> dict[str, Any]:
    """The reference distribution of one score: decile bins, shares, quantiles and mean."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return {
        "edges": edges.tolist(),
        "shares": bin_shares(p, edges).tolist(),
        "quantiles": np.quantile(p, np.linspace(0, 1, N_QUANTILES)).tolist(),
        "mean": float(p.mean()),
    }
