"""Where a batch goes beyond what the labelled reference can vouch for, and what that may change.

Performance estimation calibrates the model's scores on a labelled reference (the test split). A
drifted batch may hold rows the reference has nothing to say about, and there no calibration,
weighted or not, can tell how the model fares:

- **beyond the model's range**: a tree model is flat past the last split it makes on a feature
  (shock-like drift: utilisation or debt-to-income past anything seen in training), so its score
  stops rising there, whatever the risk does. Two readings are equally defensible: the risk stops
  there too (the model's reading), or it keeps the trend the model shows over the last tenth of the
  reference before that edge.
- **values the model cannot read**: a category it never saw (it reads it as missing) or more missing
  values than the reference had. Such a value could be any value the reference holds: each of its
  categories (by their share) or, for a number, its quantiles.

Each is a set of hypotheses about the rows' log-odds (a multiclass model's raw score of each class),
fitted once per registered version by probing the model on reference rows (never the labels) and
stored as JSON with the estimator: the estimate takes their weighted middle and the band spans all
of them (see :mod:`nbops.monitoring.estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TAIL_TREND = 0.1  # the model's trend is measured over the last tenth of the reference before its edge
TAIL_SHARE = 0.01  # the readings start past the model's edge and past the reference's last 1%
PROBE_ROWS = 1_000  # reference rows the model is probed on at registration
NUMERIC_VALUES = (0.1, 0.3, 0.5, 0.7, 0.9)  # quantiles a number the model cannot read might be
MIN_GAP_ROWS = 0.005  # a gap counts when its rows exceed the reference's share by this share of the batch
GAP_CHANCE = 3.0  # ... and by this many binomial standard deviations of that share at the batch's size
NO_SPLIT = 1e30  # LightGBM writes thresholds of this size for splits on missing values only


@dataclass(frozen=True)
class TailTrend:
    """Past its last split on ``feature`` (on the ``side``: 'high' or 'low') the model is flat;
    before it, over the last tenth of the reference, its log-odds (a multiclass model's raw score of
    each class) moved by ``slope`` per unit (one slope per output). The
    readings of a row differ past ``edge`` (that split, or the reference's last 1% if further out),
    by the trend carried at most ``reach`` past it: the width of the reference's range of the
    feature. ``reference_beyond``: the share of the reference's rows past the edge (which its
    calibration vouches for)."""

    feature: int
    name: str
    side: str
    edge: float
    slope: tuple[float, ...]
    reach: float
    reference_beyond: float

    def shift(self, x: np.ndarray) -> np.ndarray:
        """Each row's change of log-odds (rows, outputs) had the trend continued past the edge (at
        most ``reach`` past it)."""
        d = x[:, self.feature] - self.edge
        d = np.clip(d, 0.0, self.reach) if self.side == "high" else np.clip(d, -self.reach, 0.0)
        out: np.ndarray = np.nan_to_num(d, nan=0.0)[:, None] * np.asarray(self.slope)[None, :]
        return out

    def beyond(self, x: np.ndarray) -> np.ndarray:
        v = x[:, self.feature]
        out: np.ndarray = v > self.edge if self.side == "high" else v < self.edge
        return out


@dataclass(frozen=True)
class UnreadValues:
    """What a value of ``feature`` the model reads as missing could be: each of ``shifts`` (the change
    to the model's log-odds, one per output, from missing to a value the reference holds), with its
    ``shares``."""

    feature: int
    name: str
    reference_missing: float  # share of the reference's rows missing this feature
    shifts: tuple[tuple[float, ...], ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class GapHypotheses:
    """One gap in a batch: the rows it touches and the hypotheses about their log-odds (a shift per
    row and output each, with a weight; the weights sum to 1). The model's own reading (no shift) is
    always inside the band."""

    kind: str  # "beyond the model's range" | "values the model cannot read"
    features: tuple[str, ...]
    rows: float  # share of the batch's rows
    shifts: tuple[np.ndarray, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class ReferenceGaps:
    """Everything the estimator knows about the model's inputs beyond its scores."""

    feature_names: tuple[str, ...]
    tails: tuple[TailTrend, ...]
    unread: tuple[UnreadValues, ...]

    def hypotheses(self, x: np.ndarray) -> list[GapHypotheses]:
        """The gaps of a batch (its model inputs ``x``, in ``feature_names`` order): rows past the
        model's edges or missing a feature, in excess of the reference's share of such rows by at
        least :data:`MIN_GAP_ROWS` of the batch and more than chance (:data:`GAP_CHANCE` standard
        deviations of that share on as many rows). The reference vouches for its own share: every
        such row takes the excess fraction of each hypothesis's shift."""

        def counts(share: float, reference: float) -> bool:
            chance = GAP_CHANCE * float(np.sqrt(reference * (1 - reference) / max(len(x), 1)))
            return share - reference >= max(MIN_GAP_ROWS, chance)

        out = []
        outputs = len(self.tails[0].slope) if self.tails else len(self.unread[0].shifts[0]) if self.unread else 1
        trend = np.zeros((len(x), outputs))
        excess = np.zeros(len(x))
        names: list[tuple[float, str]] = []
        for t in self.tails:
            beyond = t.beyond(x)
            share = float(beyond.mean())
            if not counts(share, t.reference_beyond):
                continue
            fraction = 1.0 - t.reference_beyond / share
            trend += fraction * t.shift(x)
            excess = np.maximum(excess, fraction * beyond)
            names.append((share - t.reference_beyond, t.name))
        if names:
            features = tuple(dict.fromkeys(n for _, n in sorted(names, key=lambda v: -v[0])))
            out.append(
                GapHypotheses(
                    "beyond the model's range",
                    features,
                    float(excess.mean()),
                    (np.zeros_like(trend), trend),
                    (0.5, 0.5),
                )
            )
        for u in self.unread:
            missing = np.isnan(x[:, u.feature])
            share = float(missing.mean())
            if not counts(share, u.reference_missing):
                continue
            fraction = 1.0 - u.reference_missing / share
            shifts = tuple(np.where(missing[:, None], fraction * np.asarray(s)[None, :], 0.0) for s in u.shifts)
            out.append(
                GapHypotheses("values the model cannot read", (u.name,), share - u.reference_missing, shifts, u.shares)
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "tails": [
                {
                    "feature": t.feature,
                    "name": t.name,
                    "side": t.side,
                    "edge": t.edge,
                    "slope": list(t.slope),
                    "reach": t.reach,
                    "reference_beyond": t.reference_beyond,
                }
                for t in self.tails
            ],
            "unread": [
                {
                    "feature": u.feature,
                    "name": u.name,
                    "reference_missing": u.reference_missing,
                    "shifts": [list(s) for s in u.shifts],
                    "shares": list(u.shares),
                }
                for u in self.unread
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceGaps:
        return cls(
            tuple(str(n) for n in d["feature_names"]),
            tuple(
                TailTrend(
                    int(t["feature"]),
                    str(t["name"]),
                    str(t["side"]),
                    float(t["edge"]),
                    tuple(float(v) for v in t["slope"]),
                    float(t["reach"]),
                    float(t["reference_beyond"]),
                )
                for t in d["tails"]
            ),
            tuple(
                UnreadValues(
                    int(u["feature"]),
                    str(u["name"]),
                    float(u["reference_missing"]),
                    tuple(tuple(float(v) for v in s) for s in u["shifts"]),
                    tuple(float(v) for v in u["shares"]),
                )
                for u in d["unread"]
            ),
        )


def split_ranges(booster: Any) -> dict[int, tuple[float, float]]:
    """Per feature, the lowest and highest threshold the model splits it at (numeric splits only)."""
    ranges: dict[int, tuple[float, float]] = {}
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        if node.get("decision_type") == "<=":
            t = float(node["threshold"])
            if abs(t) < NO_SPLIT:
                j = int(node["split_feature"])
                lo, hi = ranges.get(j, (t, t))
                ranges[j] = (min(lo, t), max(hi, t))
        stack += [node["left_child"], node["right_child"]]
    return ranges


def fit_reference_gaps(
    booster: Any, features: np.ndarray, feature_names: Sequence[str], categorical: Sequence[int], seed: int = 0
) -> ReferenceGaps:
    """Probe the model (a LightGBM booster, binary or multiclass) on reference rows (its inputs
    ``features``, without their labels): where it stops splitting each numeric feature and its trend
    before, and what each value the reference holds changes against a missing one."""
    x = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    probe = x[rng.choice(len(x), min(PROBE_ROWS, len(x)), replace=False)]
    cats = set(categorical)
    # Every probe (a feature set to one value on every probed row) is scored in one call.
    probes: list[tuple[int, float]] = []
    tail_plan = []
    for j, (lo, hi) in sorted(split_ranges(booster).items()):
        col = x[:, j][~np.isnan(x[:, j])]
        if j in cats or not col.size:
            continue
        for side, edge in (("high", hi), ("low", lo)):
            high = side == "high"
            # Past the edge the model is at its last value; its trend is measured over the last
            # tenth of the reference before the edge. The readings start past the edge and past
            # the reference's own last 1% (a coarse model's flat part may hold many reference rows,
            # whose calibration the reference vouches for).
            below = float(np.mean(col <= edge)) if high else float(np.mean(col < edge))
            inner = float(np.quantile(col, max(below - TAIL_TREND, 0.0) if high else min(below + TAIL_TREND, 1.0)))
            past = edge + (1e-9 if high else -1e-9) * max(1.0, abs(edge))
            if (past - inner if high else inner - past) <= 0:
                continue
            start = (
                max(edge, float(np.quantile(col, 1 - TAIL_SHARE)))
                if high
                else min(edge, float(np.quantile(col, TAIL_SHARE)))
            )
            beyond = float(np.mean(col > start)) if high else float(np.mean(col < start))
            tail_plan.append((j, side, start, inner, past, float(col.max() - col.min()), beyond, len(probes)))
            probes += [(j, past), (j, inner)]
    unread_plan = []
    for j in range(x.shape[1]):
        known = x[:, j][~np.isnan(x[:, j])]
        if not known.size:
            continue
        if j in cats:
            values, counts = np.unique(known, return_counts=True)
            shares = counts / counts.sum()
        else:
            values = np.quantile(known, NUMERIC_VALUES)
            shares = np.full(len(values), 1 / len(values))
        unread_plan.append((j, tuple(float(v) for v in shares), len(probes)))
        probes += [(j, np.nan), *((j, float(v)) for v in values)]
    blocks = []
    for j, value in probes:
        block = probe.copy()
        block[:, j] = value
        blocks.append(block)
    raw = np.asarray(booster.predict(np.vstack(blocks), raw_score=True))
    # The model's mean log-odds under each probe, per output (a multiclass model has one per class).
    means = raw.reshape(len(probes), len(probe), -1).mean(axis=1)
    tails = [
        TailTrend(
            j,
            feature_names[j],
            side,
            float(edge),
            tuple(float(v) for v in (means[k] - means[k + 1]) / (past - inner)),
            reach,
            beyond,
        )
        for j, side, edge, inner, past, reach, beyond, k in tail_plan
    ]
    unread = []
    for j, shares, k in unread_plan:
        moves = tuple(tuple(float(v) for v in m - means[k]) for m in means[k + 1 : k + 1 + len(shares)])
        if max(abs(v) for m in moves for v in m) < 1e-6:
            continue  # the model does not use the feature: nothing it cannot read can change its score
        unread.append(UnreadValues(j, feature_names[j], float(np.isnan(x[:, j]).mean()), moves, shares))
    return ReferenceGaps(tuple(feature_names), tuple(tails), tuple(unread))
