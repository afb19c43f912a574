"""Exact quantiles of values spread over partitions: the numbers ``np.quantile`` gives on one machine.

Why exact: the reference profile's bins are the training deciles, and drift is counted in those
bins. Approximate quantiles (t-digest, merged percentiles) would move the bin edges, so the Dask
engine's profile, PSI and Wasserstein distances would differ from the pandas engine's for no reason.
Two passes over the data give the exact order statistics instead:

1. each partition sorts its values and returns a *sketch*: the values at a few thousand evenly spaced
   ranks. From the sketches every candidate value's global rank is bounded from both sides, so for
   each order statistic the client finds an interval ``(lo, hi]`` that certainly contains it;
2. each partition returns, per interval, how many of its values are ``<= lo`` and the (few) values
   inside. Sorting an interval's values on the client gives the order statistics exactly.

The interpolation between neighbouring order statistics repeats numpy's ``linear`` method operation
by operation (virtual index ``(n - 1) * p``, its floor, and numpy's two-sided ``_lerp``), so the
results are bit-identical to ``np.quantile(values, probs)``; a test checks it against numpy. Counts of
values ``<= x`` come for free for any ``x`` inside an interval, which gives exact bin counts against
edges that are themselves quantiles (the reference deciles) without a third pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID = 4096  # sketch points per partition (fewer when there are many partitions)
MAX_CANDIDATES = 4_000_000


def grid_for(partitions: int) -> int:
    """Sketch size: bounded so the client's candidate table stays small with many partitions."""
    return int(np.clip(MAX_CANDIDATES // max(partitions, 1), 256, GRID))


@dataclass
class Sketch:
    """A partition's sorted values at evenly spaced ranks (0-based positions within the partition)."""

    count: int
    positions: np.ndarray
    values: np.ndarray


def sketch(sorted_values: np.ndarray, grid: int = GRID) -> Sketch:
    """Sketch of one partition's values, which must be sorted and free of NaN."""
    m = len(sorted_values)
    if m == 0:
        return Sketch(0, np.empty(0, np.int64), np.empty(0, np.float64))
    positions = np.unique(np.rint(np.linspace(0, m - 1, min(grid, m))).astype(np.int64))
    return Sketch(m, positions, np.asarray(sorted_values[positions], dtype=np.float64))


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's quantile interpolation, operation for operation (numpy.lib._function_base_impl._lerp)."""
    diff_b_a = np.subtract(b, a)
    out = np.asarray(np.add(a, diff_b_a * t), dtype=np.float64)
    np.subtract(b, diff_b_a * (1 - t), out=out, where=t >= 0.5, casting="unsafe", dtype=np.float64)
    return out


@dataclass
class QuantilePlan:
    """Which order statistics the probabilities need, and the intervals that contain them."""

    n: int
    probs: np.ndarray
    previous: np.ndarray  # rank of the lower neighbour of each probability
    following: np.ndarray  # rank of the upper neighbour
    gamma: np.ndarray  # interpolation weight, as numpy computes it
    lo: np.ndarray  # merged intervals (lo, hi], sorted and disjoint
    hi: np.ndarray


def plan(sketches: Sequence[Sketch], probs: Sequence[float] | np.ndarray) -> QuantilePlan:
    """Intervals certain to contain the order statistics ``np.quantile`` needs for ``probs``.

    Args:
        sketches: one per partition (empty partitions allowed); at least one value overall.
        probs: probabilities in [0, 1].
    """
    n = int(sum(s.count for s in sketches))
    if n == 0:
        raise ValueError("no values: quantiles are undefined")
    q = np.asarray(probs, dtype=np.float64)
    virtual = (n - 1) * q  # numpy's 'linear' virtual index
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    gamma = np.asarray(virtual - previous, dtype=np.float64)
    previous = previous.astype(np.int64)
    following = following.astype(np.int64)
    previous[above] = n - 1
    following[above] = n - 1

    parts = [s for s in sketches if s.count]
    candidates = np.unique(np.concatenate([s.values for s in parts]))
    lower = np.zeros(len(candidates), dtype=np.int64)  # sure count of values <= candidate
    upper = np.zeros(len(candidates), dtype=np.int64)  # most values that can be <= candidate
    for s in parts:
        k = np.searchsorted(s.values, candidates, side="right")  # sketch points <= candidate
        lower += np.where(k > 0, s.positions[np.maximum(k - 1, 0)] + 1, 0)
        upper += np.where(k < len(s.positions), s.positions[np.minimum(k, len(s.positions) - 1)], s.count)
    # The r-th value (0-based) is > lo when count(<= lo) <= r, and <= hi when count(<= hi) >= r + 1.
    i_lo = np.searchsorted(upper, previous, side="right") - 1
    i_hi = np.searchsorted(lower, following + 1, side="left")
    lo = np.where(i_lo >= 0, candidates[np.maximum(i_lo, 0)], -np.inf)
    hi = np.where(i_hi < len(candidates), candidates[np.minimum(i_hi, len(candidates) - 1)], np.inf)
    merged_lo, merged_hi = _merge(lo, hi)
    return QuantilePlan(n, q, previous, following, gamma, merged_lo, merged_hi)


def _merge(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals (lo, hi] as disjoint sorted intervals."""
    order = np.argsort(lo, kind="stable")
    out_lo: list[float] = []
    out_hi: list[float] = []
    for a, b in zip(lo[order], hi[order], strict=True):
        if out_hi and a <= out_hi[-1]:
            out_hi[-1] = max(out_hi[-1], b)
        else:
            out_lo.append(float(a))
            out_hi.append(float(b))
    return np.asarray(out_lo), np.asarray(out_hi)


def in_intervals(sorted_values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Per interval: how many of a partition's (sorted) values are ``<= lo``, and the values in ``(lo, hi]``."""
    a = np.searchsorted(sorted_values, lo, side="right")
    b = np.searchsorted(sorted_values, hi, side="right")
    return [(int(i), np.array(sorted_values[i:j])) for i, j in zip(a, b, strict=True)]


@dataclass
class Resolved:
    """The exact quantiles, and exact counts of values ``<= x`` for ``x`` inside the plan's intervals."""

    values: np.ndarray
    starts: np.ndarray  # per interval: global count of values <= lo
    inside: list[np.ndarray]  # per interval: its values, sorted

    def count_le(self, x: float) -> int:
        """Number of values ``<= x``; ``x`` must lie in one of the intervals (e.g. a quantile)."""
        for start, values in zip(self.starts, self.inside, strict=True):
            if len(values) and values[0] <= x <= values[-1]:
                return int(start + np.searchsorted(values, x, side="right"))
        raise ValueError(f"{x!r} is not inside the planned intervals")


def resolve(p: QuantilePlan, parts: Sequence[Sequence[tuple[int, np.ndarray]]]) -> Resolved:
    """Combine the partitions' :func:`in_intervals` answers into the exact quantiles of ``p.probs``."""
    starts = np.zeros(len(p.lo), dtype=np.int64)
    chunks: list[list[np.ndarray]] = [[] for _ in p.lo]
    for part in parts:
        for k, (count, values) in enumerate(part):
            starts[k] += count
            chunks[k].append(values)
    inside = [np.sort(np.concatenate(c)) if c else np.empty(0) for c in chunks]
    ends = starts + np.array([len(v) for v in inside], dtype=np.int64)

    def order_statistic(ranks: np.ndarray) -> np.ndarray:
        k = np.searchsorted(ends, ranks, side="right")  # the interval whose ranks [start, end) hold r
        if np.any(k >= len(ends)) or np.any(ranks < starts[np.minimum(k, len(ends) - 1)]):
            raise AssertionError("an order statistic fell outside its interval (the sketches were inconsistent)")
        return np.array([inside[i][r - starts[i]] for i, r in zip(k, ranks, strict=True)], dtype=np.float64)

    values = _lerp(order_statistic(p.previous), order_statistic(p.following), p.gamma)
    return Resolved(values, starts, inside)
