"""The reference profile and drift over partitions: the pandas engine's numbers, computed on a cluster.

``reference_profile`` equals :func:`nbops.monitoring.profile.build_reference_profile` and
``compare`` equals :func:`nbops.monitoring.drift.compare`, field for field: bin edges and quantiles
are exact (:mod:`nbops.engines.dask.quantiles`), shares are exact counts divided by the same row counts, so
PSI, Jensen-Shannon and Wasserstein distances and every drift decision are identical. Only means and
standard deviations are summed in another order (partition by partition, combined with Chan's
formula) and may differ from numpy's in the last digits (relative 1e-12 at most in the tests).

Each job reads the data twice (sketches, then the values inside the quantile intervals); the model's
predictions are computed once and kept on the workers between the passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nbops.engines.dask import quantiles as qx
from nbops.engines.dask.work import ModelRef, compute_all, with_derived
from nbops.monitoring.drift import (
    _INNER,
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    psi_drift,
)
from nbops.monitoring.profile import (
    N_BINS,
    N_QUANTILES,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    numeric_values,
)

if TYPE_CHECKING:
    from distributed import Client

DECILES = np.linspace(0, 1, N_BINS + 1)[1:-1]
PERCENTILES = np.linspace(0, 1, N_QUANTILES)


# --------------------------------------------------------------------------- per-partition work (runs on workers)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations: combined exactly enough across partitions (Chan)."""

    n: int
    mean: float
    m2: float

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        if len(x) == 0:
            return cls(0, 0.0, 0.0)
        mean = float(x.mean())
        return cls(len(x), mean, float(np.sum((x - mean) ** 2)))

    def __add__(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)


def _sorted_present(values: np.ndarray) -> np.ndarray:
    return np.sort(values[~np.isnan(values)])


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per level as :func:`nbops.monitoring.profile.category_shares` counts them, and missing."""
    counts = series.astype("string").value_counts(dropna=False, sort=False)
    missing = int(counts[counts.index.isna()].sum()) if counts.index.hasnans else 0
    known = counts[counts.index.notna()]
    return {str(k): int(v) for k, v in known.items()}, missing


def _first_pass(
    part: pd.DataFrame,
    predictions: np.ndarray | pd.Series | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    grid: int,
    edges: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """Sketches, moments, missing counts and category counts of one partition; bin counts when the
    edges are known already (drift against a stored profile)."""
    out: dict[str, Any] = {"rows": len(part), "numeric": {}, "categorical": {}, "prediction": None}
    columns = {name: numeric_values(part[name]) for name in numeric}
    if predictions is not None:
        columns["\0prediction"] = np.asarray(predictions, dtype=np.float64)
    for name, values in columns.items():
        present = _sorted_present(values)
        entry: dict[str, Any] = {
            "missing": int(len(values) - len(present)),
            "sketch": qx.sketch(present, grid),
            "moments": Moments.of(present),
        }
        if edges is not None and name in edges:
            idx = np.searchsorted(edges[name], present, side="left")
            entry["bins"] = np.bincount(idx, minlength=len(edges[name]) + 1).astype(np.int64)
        if name == "\0prediction":
            out["prediction"] = entry
        else:
            out["numeric"][name] = entry
    for name in categorical:
        counts, missing = _category_counts(part[name])
        out["categorical"][name] = {"counts": counts, "missing": missing, "isna": int(part[name].isna().sum())}
    return out


def _second_pass(
    part: pd.DataFrame, predictions: np.ndarray | pd.Series | None, intervals: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per column: the partition's answer for the quantile intervals (see :mod:`nbops.engines.dask.quantiles`)."""
    out = {}
    for name, (lo, hi) in intervals.items():
        values = np.asarray(predictions, dtype=np.float64) if name == "\0prediction" else numeric_values(part[name])
        out[name] = qx.in_intervals(_sorted_present(values), lo, hi)
    return out


# --------------------------------------------------------------------------- driver (client side)


@dataclass
class _Passes:
    """The partition results of both passes, per column."""

    rows: int
    first: list[dict[str, Any]]
    plans: dict[str, qx.QuantilePlan]
    resolved: dict[str, qx.Resolved]

    def entries(self, name: str) -> list[dict[str, Any]]:
        key = "prediction" if name == "\0prediction" else None
        return [p[key] if key else p["numeric"][name] for p in self.first]


def run_passes(
    client: Client,
    features: Any,
    predictions: list[Any] | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    probs: np.ndarray,
    edges: dict[str, np.ndarray] | None,
    desc: str,
) -> _Passes:
    """Both passes over ``features`` (a dask DataFrame) and optional per-partition ``predictions`` futures."""
    import dask

    parts = features.to_delayed()
    preds = predictions if predictions is not None else [None] * len(parts)
    grid = qx.grid_for(len(parts))
    first_fn = dask.delayed(_first_pass, pure=True)
    first = compute_all(
        client,
        [
            first_fn(part, pred, list(numeric), list(categorical), grid, edges)
            for part, pred in zip(parts, preds, strict=True)
        ],
        f"{desc}: pass 1 of 2",
    )
    rows = int(sum(p["rows"] for p in first))
    names = list(numeric) + (["\0prediction"] if predictions is not None else [])
    plans: dict[str, qx.QuantilePlan] = {}
    for name in names:
        sketches = [(p["prediction"] if name == "\0prediction" else p["numeric"][name])["sketch"] for p in first]
        if sum(s.count for s in sketches):
            plans[name] = qx.plan(sketches, probs)
    resolved: dict[str, qx.Resolved] = {}
    if plans:
        intervals = {name: (pl.lo, pl.hi) for name, pl in plans.items()}
        needed = [n for n in numeric if n in plans]
        second_parts = features[needed].to_delayed() if needed else [None] * len(parts)
        second_fn = dask.delayed(_second_pass, pure=True)
        second = compute_all(
            client,
            [
                second_fn(part if part is not None else pd.DataFrame(), pred, intervals)
                for part, pred in zip(second_parts, preds, strict=True)
            ],
            f"{desc}: pass 2 of 2",
        )
        for name, pl in plans.items():
            resolved[name] = qx.resolve(pl, [s[name] for s in second])
    return _Passes(rows, first, plans, resolved)


def _persist_predictions(client: Client, features: Any, ref: ModelRef) -> list[Any]:
    """Per-partition prediction futures, computed once and kept on the workers for both passes."""
    import dask

    ref_future = client.scatter(ref, broadcast=True, hash=True)
    predict = dask.delayed(_predict_values, pure=True)
    futures: list[Any] = client.compute([predict(part, ref_future) for part in features.to_delayed()])
    return futures


def _predict_values(part: pd.DataFrame, ref: ModelRef) -> np.ndarray:
    return ref.predict(part)


def _numeric_profile(passes: _Passes, name: str, n_deciles: int) -> NumericProfile:
    entries = passes.entries(name)
    missing = sum(e["missing"] for e in entries)
    n = passes.rows
    if name not in passes.resolved:  # no value present
        return NumericProfile(
            [], [0.0, 1.0], [], 1.0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan")
        )
    res = passes.resolved[name]
    deciles, q = res.values[:n_deciles], res.values[n_deciles:]
    edges = np.unique(deciles)
    shares = _shares_from_quantile_edges(res, edges, n - missing, missing, n)
    moments = combine_passes(e["moments"] for e in entries)
    return NumericProfile(
        edges=edges.tolist(),
        shares=shares.tolist(),
        quantiles=q.tolist(),
        missing_rate=float(missing / n),
        mean=float(moments.mean),
        std=float(np.sqrt(moments.m2 / moments.n)),
        min=float(q[0]),
        max=float(q[-1]),
        iqr=float(q[75] - q[25]),
    )


def _shares_from_quantile_edges(res: qx.Resolved, edges: np.ndarray, present: int, missing: int, n: int) -> np.ndarray:
    """``bin_shares`` for edges that are quantiles of the same values: counts from the intervals."""
    le = np.array([res.count_le(float(e)) for e in edges], dtype=np.int64)
    counts = np.diff(np.concatenate([[0], le, [present]])).astype(np.float64)
    return np.append(counts, missing) / n


def combine_passes(moments: Any) -> Moments:
    total = Moments(0, 0.0, 0.0)
    for m in moments:
        total = total + m
    return total


def _summed_category_counts(passes: _Passes, name: str) -> tuple[dict[str, int], int, int]:
    """Level counts, missing (incl. unseen) and null counts of a categorical column, summed over partitions."""
    counts: dict[str, int] = {}
    missing = isna = 0
    for p in passes.first:
        entry = p["categorical"][name]
        for level, c in entry["counts"].items():
            counts[level] = counts.get(level, 0) + c
        missing += entry["missing"]
        isna += entry["isna"]
    return counts, missing, isna


def _categorical_profile(passes: _Passes, name: str, max_levels: int = 50) -> CategoricalProfile:
    counts, missing, isna = _summed_category_counts(passes, name)
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first-seen order
    levels = [level for level, _ in ordered[:max_levels]]
    return CategoricalProfile(
        levels,
        _category_shares(counts, missing, levels, passes.rows).tolist(),
        float(isna / passes.rows) if passes.rows else float("nan"),
    )


def _category_shares(counts: dict[str, int], missing: int, levels: Sequence[str], n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(len(levels) + 2)
    per_level = np.array([counts.get(level, 0) for level in levels], dtype=np.float64)
    other = float(sum(counts.values()) - per_level.sum())
    return np.append(per_level, [other, missing]) / n


def reference_profile(
    client: Client, features: Any, numeric: Sequence[str], categorical: Sequence[str], model: ModelRef | None = None
) -> ReferenceProfile:
    """:func:`~nbops.monitoring.profile.build_reference_profile` of a dask DataFrame (and the model's
    predictions on it, when ``model`` is given)."""
    predictions = _persist_predictions(client, features, model) if model is not None else None
    try:
        probs = np.concatenate([DECILES, PERCENTILES])
        passes = run_passes(client, features, predictions, numeric, categorical, probs, None, "reference profile")
    finally:
        if predictions is not None:
            client.cancel(predictions)
    if passes.rows == 0:
        raise ValueError("the training data has no rows to profile")
    profile = ReferenceProfile(rows=passes.rows)
    for name in numeric:
        profile.numeric[name] = _numeric_profile(passes, name, len(DECILES))
    for name in categorical:
        profile.categorical[name] = _categorical_profile(passes, name)
    if predictions is not None:
        res = passes.resolved["\0prediction"]
        edges = np.unique(res.values[: len(DECILES)])
        missing = sum(e["missing"] for e in passes.entries("\0prediction"))
        moments = combine_passes(e["moments"] for e in passes.entries("\0prediction"))
        profile.prediction = {
            "edges": edges.tolist(),
            "shares": _shares_from_quantile_edges(res, edges, passes.rows - missing, missing, passes.rows).tolist(),
            "quantiles": res.values[len(DECILES) :].tolist(),
            "mean": float(moments.mean),
        }
    return profile


def _wasserstein(reference_q: np.ndarray, q: np.ndarray | None, scale: float) -> float | None:
    """:func:`nbops.monitoring.drift.wasserstein_from_quantiles` from the current quantiles."""
    if q is None or len(reference_q) != N_QUANTILES:
        return None
    spread = scale if scale and np.isfinite(scale) and scale > 0 else (np.ptp(reference_q) or 1.0)
    return float(np.mean(np.abs(q[_INNER] - np.asarray(reference_q)[_INNER])) / spread)


def compare(
    client: Client,
    profile: ReferenceProfile,
    batch: Any,
    thresholds: DriftThresholds | None = None,
    predictions: list[Any] | None = None,
) -> DriftReport:
    """:func:`nbops.monitoring.drift.compare` for a dask DataFrame ``batch``.

    Args:
        predictions: per-partition prediction futures (or delayed values) aligned with ``batch``'s
            partitions, e.g. from :func:`predictions_of`.
    """
    thresholds = thresholds or DriftThresholds()
    columns = list(batch.columns)
    missing_columns = [f for f in profile.features if f not in columns]
    numeric = [n for n in profile.numeric if n not in missing_columns]
    categorical = [n for n in profile.categorical if n not in missing_columns]
    edges = {n: np.asarray(profile.numeric[n].edges, dtype=np.float64) for n in numeric}
    with_predictions = predictions is not None and profile.prediction is not None
    if with_predictions:
        assert profile.prediction is not None
        edges["\0prediction"] = np.asarray(profile.prediction["edges"], dtype=np.float64)
    passes = run_passes(
        client,
        batch[numeric + categorical] if numeric + categorical else batch,
        predictions if with_predictions else None,
        numeric,
        categorical,
        PERCENTILES,
        edges,
        "drift",
    )
    n = passes.rows
    rows: list[FeatureDrift] = []
    for name in numeric:
        ref = profile.numeric[name]
        entries = passes.entries(name)
        missing = sum(e["missing"] for e in entries)
        cur = _bin_shares(sum(e["bins"] for e in entries), missing, n, len(edges[name]))
        q = passes.resolved[name].values if name in passes.resolved else None
        rows.append(
            psi_drift(
                name,
                "numeric",
                ref.shares,
                cur,
                rows=n,
                reference_rows=profile.rows,
                thresholds=thresholds,
                wasserstein=_wasserstein(np.asarray(ref.quantiles), q, ref.iqr),
                missing_reference=ref.missing_rate,
                missing_current=float(missing / n) if n else 0.0,
            )
        )
    for name in categorical:
        ref_c = profile.categorical[name]
        counts, missing, isna = _summed_category_counts(passes, name)
        rows.append(
            psi_drift(
                name,
                "categorical",
                ref_c.shares,
                _category_shares(counts, missing, ref_c.levels, n),
                rows=n,
                reference_rows=profile.rows,
                thresholds=thresholds,
                wasserstein=None,
                missing_reference=ref_c.missing_rate,
                missing_current=float(isna / n) if n else 0.0,
            )
        )
    prediction = None
    if with_predictions:
        assert profile.prediction is not None
        entries = passes.entries("\0prediction")
        missing = sum(e["missing"] for e in entries)
        cur = _bin_shares(sum(e["bins"] for e in entries), missing, n, len(edges["\0prediction"]))
        q = passes.resolved["\0prediction"].values if "\0prediction" in passes.resolved else None
        prediction = psi_drift(
            "prediction",
            "prediction",
            profile.prediction["shares"],
            cur,
            rows=n,
            reference_rows=profile.rows,
            thresholds=thresholds,
            wasserstein=_wasserstein(np.asarray(profile.prediction["quantiles"]), q, 0.0),
            missing_reference=0.0,
            missing_current=float(missing / n) if n else float("nan"),
        )
    n_drifted = sum(f.drifted for f in rows)
    return DriftReport(
        n,
        rows,
        prediction,
        n_drifted >= thresholds.min_drifted_features or bool(missing_columns),
        thresholds,
        missing_columns,
    )


def _bin_shares(counts: np.ndarray | int, missing: int, n: int, n_edges: int) -> np.ndarray:
    """``bin_shares`` from summed bin counts: zeros for an empty batch, as the pandas function gives."""
    if n == 0:
        return np.zeros(n_edges + 2)
    c = np.asarray(counts, dtype=np.float64) if not isinstance(counts, int) else np.zeros(n_edges + 1)
    return np.append(c, missing) / n


def predictions_of(client: Client, batch: Any, model: ModelRef) -> list[Any]:
    """Per-partition prediction futures of ``batch``, kept on the workers until released."""
    return _persist_predictions(client, batch, model)


def reference_profile_of_parquet(
    params: Any, train_rows: Any, transform_file: Any, model_file: Any
) -> ReferenceProfile:
    """The register stage's reference profile with ``engine: dask``: the training split's Parquet
    profiled on the cluster, with the trained model's scores on it (see
    ``nbops.engines.pandas.PandasEngine.reference_profile``)."""
    import lightgbm as lgb

    from nbops.engines.dask.cluster import get_client, workers_in_order
    from nbops.engines.dask.parquet import frame, plan_pieces
    from nbops.runtime.transform import FeatureTransform

    client = get_client(params)
    transform = FeatureTransform.load(transform_file)
    booster = lgb.Booster(model_file=str(model_file))
    pieces = plan_pieces(train_rows, min_pieces=len(workers_in_order(client)), max_rows=1_000_000)
    ref = ModelRef(booster.model_to_string(), transform.to_dict(include_code=True))
    # derived features are computed from the raw ones on the workers, as the pandas engine does
    features = with_derived(frame(train_rows, pieces, transform.raw_names), transform, ref)
    return reference_profile(client, features, transform.numeric, list(transform.categorical), ref)
