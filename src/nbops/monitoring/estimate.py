"""Performance estimated before the labels arrive: confidence-based performance estimation (CBPE)
for binary and multiclass models, direct loss estimation (DLE) for regression ones.

The model's scores are calibrated (isotonic regression) on a labelled reference that is not the
training data: the test split. For an unlabelled batch, each row's calibrated probability is the
expected value of its label, so the expected ROC AUC and the expected confusion matrix at the
decision threshold follow from the scores alone. The value is corrected for the calibration's own
bias (isotonic regression fits its sample's noise; the bootstrap measures by how much). Each
estimate has a band that knows the batch's size and the reference's: the spread of the realised
metric when labels are drawn from the calibrated probabilities (sampling, which shrinks with the
batch's rows) plus the spread of the estimate over calibration maps fitted on bootstrap resamples
of the reference (what a finite reference cannot pin down, which does not shrink with the batch;
added in full, since it is the same error in every batch).

Covariate drift can take a batch where the reference cannot vouch for the calibration: past the
range the model was fitted on (a tree model is flat there) or to values it cannot read (a new
category). Weighting the reference towards the batch cannot help there, since the reference has no
rows like them (and where it has, the calibration does not depend on the inputs at a given score).
So the estimator, fitted with the model, knows those gaps (:mod:`nbops.monitoring.reference_gaps`):
given a batch's inputs, the estimate takes the middle of the defensible readings of such rows and
the band spans all of them.

Honesty: estimation assumes P(label | inputs) is what it was on the reference. Covariate shift
(the inputs move, the relation stays) keeps that; concept drift (the relation itself changes)
does not, and no label-free estimate can see it: realised performance catches it when the labels
arrive.

Regression (DLE): two small LightGBM models fitted on the labelled reference (the test split),
one of each row's absolute error and one of its squared error, from the model's inputs and its
prediction; a batch's estimated MAE is the mean predicted absolute error, its RMSE the root of the
mean predicted squared error. Their band adds the batch's sampling spread (from the predicted
conditional variance, shrinking with the rows) to how well the reference pins the level down.

Everything is stored as JSON (the calibration maps as points, the loss models as LightGBM text),
never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nbops.errors import NbopsError
from nbops.monitoring.reference_gaps import GapHypotheses, ReferenceGaps, fit_reference_gaps
from nbops.runtime.integrity import ESTIMATOR_FILE

FORMAT = "nbops-cbpe/2"
READABLE_FORMATS = ("nbops-cbpe/1", FORMAT)  # /1: no reference gaps (plain CBPE)
SPREAD_ROWS = 50_000  # rows of a batch the spreads and the gap hypotheses are computed on
BOOTSTRAP_MAPS = 24  # calibration maps on bootstrap resamples of the reference
SAMPLING_DRAWS = 64  # label draws from the calibrated probabilities, for the sampling spread
Z = 1.96  # the band is the estimate +/- Z standard errors (95% under normality)
CONFUSION_METRICS = ("precision", "recall", "specificity", "accuracy", "f1")
METRICS = ("roc_auc", *CONFUSION_METRICS)
MIN_REFERENCE_ROWS = 50
MIN_REFERENCE_CLASS_ROWS = 10  # rows of each class in the reference


class EstimationError(NbopsError):
    """Performance cannot be estimated from what was given (reference, scores, stored estimator)."""


@dataclass(frozen=True)
class CalibrationMap:
    """A monotone map from the model's score to the probability of the positive class: isotonic
    regression's points, linearly interpolated between them and flat beyond them."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.interp(np.asarray(scores, dtype=np.float64), np.asarray(self.x), np.asarray(self.y))
        return out

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> CalibrationMap:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(scores, labels, sample_weight=weights)
        return cls(tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_))

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> CalibrationMap:
        x, y = d.get("x"), d.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
            raise EstimationError(
                f"{where}: expected a calibration map with lists 'x' and 'y' of the same non-zero length, found "
                f"{type(x).__name__} and {type(y).__name__}; re-create the estimator (`nbops estimate` fits it "
                "from the version's test predictions)"
            )
        xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if np.any(np.diff(xs) < 0) or np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
            raise EstimationError(
                f"{where}: expected increasing score points and probabilities in [0, 1], found a map that is not; "
                "re-create the estimator"
            )
        return cls(tuple(float(v) for v in xs), tuple(float(v) for v in ys))


@dataclass(frozen=True)
class MetricEstimate:
    """An estimated metric with its band (``low`` .. ``high``) and standard error."""

    value: float
    low: float
    high: float
    se: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "se": self.se}


@dataclass(frozen=True)
class PerformanceEstimate:
    """What a batch's performance is expected to be, before its labels arrive."""

    rows: int
    threshold: float
    metrics: dict[str, MetricEstimate]
    reference: dict[str, float] = field(default_factory=dict)  # the realised figures on the reference
    # What the reference cannot vouch for in this batch, each widening the band: kind, features, the
    # share of rows, and how far the ROC AUC moves across its hypotheses (see reference_gaps).
    gaps: tuple[dict[str, Any], ...] = ()

    def history_columns(self) -> dict[str, float]:
        """Columns of the monitoring history: ``est__roc_auc``, ``est__roc_auc_low``, ``est__roc_auc_high``..."""
        out: dict[str, float] = {}
        for name, m in self.metrics.items():
            out[f"est__{name}"] = m.value
            out[f"est__{name}_low"] = m.low
            out[f"est__{name}_high"] = m.high
        return out

    @property
    def method(self) -> str:
        if "roc_auc" in self.metrics:
            return "CBPE (isotonic calibration on the test split; the band spans what it cannot vouch for)"
        if "log_loss" in self.metrics:
            return "CBPE (each class's probability calibrated on the test split, renormalised)"
        return "DLE (LightGBM models of the absolute and squared error, fitted on the test split)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "threshold": self.threshold if "roc_auc" in self.metrics else None,
            "method": self.method,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "reference": self.reference,
            "gaps": list(self.gaps),
        }


def expected_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC expected when each row's label is 1 with its calibrated probability: the expected
    count of correctly ordered (positive, negative) pairs, ties counted half, over the expected
    count of such pairs (a row is never paired with itself)."""
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    s, c = s[order], c[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(c, starts)  # expected positives per distinct score, ascending
    neg = np.add.reduceat(1.0 - c, starts)
    below = np.cumsum(neg) - neg  # expected negatives scoring strictly lower
    self_pairs = float(np.sum(c * (1.0 - c)))
    pairs = float(pos.sum() * neg.sum()) - self_pairs
    if pairs <= 0:
        return float("nan")
    return (float(np.sum(pos * below) + 0.5 * np.sum(pos * neg)) - 0.5 * self_pairs) / pairs


def confusion_metrics(flagged: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """Precision, recall, specificity, accuracy and F1 from (expected or realised) positives per row
    and the rows the model flags. ``positives`` may be probabilities (expected counts) or 0/1 labels;
    several label draws at once as rows of a 2-D array (then each value is an array)."""
    p = np.asarray(positives, dtype=np.float64)
    tp = (p * flagged).sum(axis=-1)
    fn = (p * ~flagged).sum(axis=-1)
    fp = ((1.0 - p) * flagged).sum(axis=-1)
    tn = ((1.0 - p) * ~flagged).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / (tp + tn + fp + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


def point_estimates(scores: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    out = {"roc_auc": expected_auc(scores, probabilities)}
    out.update({k: float(v) for k, v in confusion_metrics(scores >= threshold, probabilities).items()})
    return out


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (as the Mann-Whitney AUC needs)."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    ends = np.r_[starts[1:], len(v)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def sampling_spread(
    scores: np.ndarray, probabilities: np.ndarray, threshold: float, draws: int, seed: int
) -> dict[str, float]:
    """Standard deviation of each realised metric over label draws from the calibrated probabilities:
    how far a batch of this size lands from its expectation by chance alone."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    ranks = average_ranks(scores)
    flagged = scores >= threshold
    aucs = np.full(draws, np.nan)
    counts = np.zeros((draws, 4))  # tp, fn, fp, tn per draw
    n_flagged = int(flagged.sum())
    for i in range(draws):
        y = rng.random(n) < probabilities
        n1 = int(y.sum())
        n0 = n - n1
        if n1 and n0:
            aucs[i] = (float(ranks[y].sum()) - n1 * (n1 + 1) / 2) / (n1 * n0)
        hits = int(np.count_nonzero(y & flagged))
        counts[i] = (hits, n1 - hits, n_flagged - hits, n0 - (n_flagged - hits))
    tp, fn, fp, tn = counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {
            "roc_auc": aucs,
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / n,
            "f1": 2 * tp / (2 * tp + fp + fn),
        }
    return {k: float(np.nanstd(v)) if np.isfinite(v).any() else float("nan") for k, v in values.items()}


def log_odds(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: np.ndarray = np.log(q / (1 - q))
    return out


def probabilities(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def evenly_spaced(n: int, at_most: int) -> np.ndarray:
    """Indices of at most ``at_most`` rows spread evenly over ``n`` (of sorted scores: every part of
    the distribution kept, deterministically)."""
    if n <= at_most:
        return np.arange(n)
    out: np.ndarray = np.unique(np.linspace(0, n - 1, at_most).round().astype(np.int64))
    return out


def combine_readings(
    gap: GapHypotheses,
    moved: list[dict[str, float]],
    here: dict[str, float],
    names: Sequence[str],
    totals: tuple[dict[str, float], dict[str, float], dict[str, float]],
    headline: str,
) -> dict[str, Any]:
    """Add one gap's readings to the running totals (per metric: the weighted middle of its
    readings' changes, and how far below and above they reach, the model's own reading included) and
    describe it: kind, features, rows, and the change of the ``headline`` metric across them."""
    mid, down, up = totals
    for name in names:
        deltas = np.nan_to_num(np.array([m[name] - here[name] for m in moved]), nan=0.0)
        mid[name] += float(np.dot(gap.weights, deltas))
        down[name] += min(0.0, float(deltas.min()))
        up[name] += max(0.0, float(deltas.max()))
    changes = [m[headline] - here[headline] for m in moved]
    return {
        "kind": gap.kind,
        "features": list(gap.features),
        "rows": gap.rows,
        "metric": headline,
        "change": [min(0.0, *changes), max(0.0, *changes)],
    }


@dataclass(frozen=True)
class BinaryEstimator:
    """A binary model's performance estimator: its calibration on the reference, the bootstrap maps
    that say how well the reference pins it down, the decision threshold, the reference's figures and
    (fitted with the model) where the reference stops vouching for a batch (:class:`ReferenceGaps`)."""

    calibration: CalibrationMap
    bootstrap: tuple[CalibrationMap, ...]
    threshold: float
    reference_rows: int
    reference: dict[str, float]
    seed: int = 0
    gaps: ReferenceGaps | None = None

    def estimate(self, scores: np.ndarray, features: np.ndarray | None = None) -> PerformanceEstimate:
        """The batch's expected ROC AUC and confusion-matrix metrics at the threshold, each with its band.

        The value is the metric expected under the reference's calibration, less the calibration's
        own bias (the bootstrap's estimate of it: isotonic regression fits its sample's noise), and
        moved to the weighted middle of the hypotheses about what the reference cannot vouch for
        (with ``features``, the model's inputs in its feature order). The band spans every hypothesis
        and reaches ``Z`` times the chance spread beyond: the sampling spread (the batch's rows) plus
        the calibration's (the reference's rows; added, not in quadrature, because it is the same
        error in every batch estimated against this reference).

        Raises:
            EstimationError: no scores, scores that are not probabilities, or features that are not
                the model's inputs.
        """
        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.size == 0:
            raise EstimationError(
                "cannot estimate performance on a batch with no rows: expected at least one score, found none; "
                "check the batch file"
            )
        bad = ~np.isfinite(s) | (s < 0) | (s > 1)
        if bad.any():
            raise EstimationError(
                f"expected the model's scores as probabilities in [0, 1], found {int(bad.sum()):,} of {s.size:,} "
                f"outside (first: {float(s[bad][0])!r}); estimate with the scores of the model the estimator was "
                "fitted for"
            )
        x = None
        if features is not None and self.gaps is not None:
            x = np.asarray(features, dtype=np.float64)
            if x.ndim != 2 or x.shape != (s.size, len(self.gaps.feature_names)):
                raise EstimationError(
                    f"expected the model's {len(self.gaps.feature_names)} inputs for each of the {s.size:,} scores, "
                    f"found an array of shape {x.shape}; pass the batch's features as the model's transform makes them"
                )
        order = np.argsort(s, kind="stable")  # every figure is order-free; sorted once, each sort is then a pass
        s = s[order]
        c = self.calibration(s)
        point = point_estimates(s, c, self.threshold)
        # The spreads and the hypotheses on at most SPREAD_ROWS rows spread over the scores: the
        # calibration's spread does not shrink with the rows, the sampling spread is scaled to them.
        idx = evenly_spaced(s.size, SPREAD_ROWS)
        ss, cs = s[idx], c[idx]
        sampling = sampling_spread(ss, cs, self.threshold, SAMPLING_DRAWS, self.seed)
        scale = float(np.sqrt(ss.size / s.size))
        here = point_estimates(ss, cs, self.threshold) if ss.size < s.size else point
        boot = [point_estimates(ss, m(ss), self.threshold) for m in self.bootstrap]
        hypotheses = self.gaps.hypotheses(x[order[idx]]) if x is not None and self.gaps is not None else []
        mid = dict.fromkeys(METRICS, 0.0)
        down = dict.fromkeys(METRICS, 0.0)
        up = dict.fromkeys(METRICS, 0.0)
        described = []
        z = log_odds(cs)
        for h in hypotheses:
            moved = [
                point_estimates(ss, probabilities(z + shift[:, 0]), self.threshold) if shift.any() else here
                for shift in h.shifts
            ]
            described.append(combine_readings(h, moved, here, METRICS, (mid, down, up), "roc_auc"))
        metrics = {}
        for name in METRICS:
            values = np.array([b[name] for b in boot])
            finite = np.isfinite(values)
            calib_sd = float(np.std(values[finite])) if finite.any() else 0.0
            bias = float(np.mean(values[finite]) - here[name]) if finite.any() and np.isfinite(here[name]) else 0.0
            # Added, not in quadrature: the calibration's error is the same in every batch estimated
            # against this reference, so a band that holds batch after batch carries it in full.
            se = float(sampling[name] * scale + calib_sd)
            v = point[name] - bias
            lo, hi = v + down[name] - Z * se, v + up[name] + Z * se
            metrics[name] = MetricEstimate(
                min(max(v + mid[name], 0.0), 1.0) if np.isfinite(v) else v, max(lo, 0.0), min(hi, 1.0), se
            )
        return PerformanceEstimate(int(s.size), self.threshold, metrics, dict(self.reference), tuple(described))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task_type": "binary",
            "method": "CBPE: isotonic calibration of the scores on the test split",
            "threshold": self.threshold,
            "reference_rows": self.reference_rows,
            "reference": self.reference,
            "seed": self.seed,
            "calibration": self.calibration.to_dict(),
            "bootstrap": [m.to_dict() for m in self.bootstrap],
            "gaps": self.gaps.to_dict() if self.gaps is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the estimator") -> BinaryEstimator:
        if not isinstance(d, dict) or d.get("format") not in READABLE_FORMATS:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise EstimationError(
                f"{where}: expected a performance estimator of format {FORMAT!r}, found {found!r}; re-create it "
                "(`nbops estimate` fits it from the version's test predictions)"
            )
        gaps = d.get("gaps")
        return cls(
            CalibrationMap.from_dict(d.get("calibration") or {}, f"{where}: calibration"),
            tuple(CalibrationMap.from_dict(m, f"{where}: bootstrap map {i}") for i, m in enumerate(d["bootstrap"])),
            float(d["threshold"]),
            int(d["reference_rows"]),
            {k: float(v) for k, v in d.get("reference", {}).items()},
            int(d.get("seed", 0)),
            ReferenceGaps.from_dict(gaps) if isinstance(gaps, dict) else None,
        )


def load_estimator(folder: Path) -> Estimator | None:
    """The performance estimator stored in a registry version's ``folder``, or None when the version
    has none (a version registered before estimation existed, or a test split too small to calibrate
    on).

    Raises:
        EstimationError: the file is there but is not an estimator nbops can read.
    """
    path = Path(folder) / ESTIMATOR_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EstimationError(f"{path}: expected JSON, found a file that does not parse ({exc})") from None
    if isinstance(data, dict) and data.get("task_type") == "regression":
        return RegressionEstimator.from_dict(data, where=str(path))
    if isinstance(data, dict) and data.get("task_type") == "multiclass":
        return MulticlassEstimator.from_dict(data, where=str(path))
    return BinaryEstimator.from_dict(data, where=str(path))


def fit_binary_estimator(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float = 0.5,
    bootstrap: int = BOOTSTRAP_MAPS,
    seed: int = 0,
    where: str = "the reference",
    booster: Any = None,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] = (),
    categorical: Sequence[int] = (),
) -> BinaryEstimator:
    """Fit the estimator on a labelled reference that is not the training data (the test split).

    With the model (``booster``, a LightGBM booster) and the reference's inputs (``features``, in
    ``feature_names`` order, ``categorical`` their categorical positions), it also learns where the
    reference stops vouching for a batch (:func:`fit_reference_gaps`): a batch's estimate then
    needs its features too for its band to widen where the batch goes beyond the reference.

    Raises:
        EstimationError: too few rows, one class only, labels that are not 0/1, scores that are
            not probabilities, or features that are not one row per score.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise EstimationError(
            f"{where}: expected one label per score, found {s.size:,} scores and {y.size:,} labels; pass the "
            "test split's predictions with its target"
        )
    if s.size < MIN_REFERENCE_ROWS:
        raise EstimationError(
            f"{where}: expected at least {MIN_REFERENCE_ROWS} labelled rows to calibrate on, found {s.size:,}; use "
            "a larger test split (test_fraction in env.yaml)"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        odd = y[~np.isin(y, (0.0, 1.0))]
        raise EstimationError(
            f"{where}: expected labels 0 or 1 (the positive class as 1), found {float(odd[0])!r} in {odd.size:,} rows; "
            "drop unlabelled rows and encode the target as the model does"
        )
    if not (np.isfinite(s).all() and s.min() >= 0 and s.max() <= 1):
        raise EstimationError(f"{where}: expected scores as probabilities in [0, 1], found values outside")
    n1 = int(y.sum())
    if min(n1, s.size - n1) < MIN_REFERENCE_CLASS_ROWS:
        raise EstimationError(
            f"{where}: expected at least {MIN_REFERENCE_CLASS_ROWS} rows of each class, found {n1:,} positive and "
            f"{s.size - n1:,} negative; use a larger test split"
        )
    from nbops.modeling.metrics import binary_metrics

    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(bootstrap):
        idx = rng.integers(0, s.size, s.size)
        maps.append(CalibrationMap.fit(s[idx], y[idx]))
    realised = binary_metrics(y, s)
    reference = {"roc_auc": realised["roc_auc"], "positive_rate": realised["positive_rate"]}
    reference.update({k: float(v) for k, v in confusion_metrics(s >= threshold, y).items()})
    gaps = _fitted_gaps(booster, features, s.size, "scores", feature_names, categorical, seed, where)
    return BinaryEstimator(CalibrationMap.fit(s, y), tuple(maps), float(threshold), int(s.size), reference, seed, gaps)


MULTICLASS_FORMAT = "nbops-cbpe-multiclass/1"
MULTICLASS_METRICS = ("log_loss", "accuracy", "f1_macro")
PROBABILITY_FLOOR = 1e-15  # as the realised log loss clips the model's probabilities


def calibrated_classes(maps: Sequence[CalibrationMap], p: np.ndarray) -> np.ndarray:
    """Each class's probability through its calibration map, renormalised to sum to 1 per row (a
    row every map sends to 0 keeps the model's probabilities)."""
    q = np.column_stack([m(p[:, k]) for k, m in enumerate(maps)])
    total = q.sum(axis=1, keepdims=True)
    out: np.ndarray = np.where(total > 0, q / np.where(total > 0, total, 1.0), p)
    return out


def multiclass_expected(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy and macro F1 of the model's probabilities ``p`` expected when each row's
    class is drawn from ``q`` (or realised, when ``q`` is each row's class as one-hot rows)."""
    k = p.shape[1]
    predicted = np.argmax(p, axis=1)
    log_loss = float(np.mean(np.sum(q * -np.log(np.clip(p, PROBABILITY_FLOOR, 1.0)), axis=1)))
    accuracy = float(np.mean(q[np.arange(len(p)), predicted]))
    hits = np.bincount(predicted, weights=q[np.arange(len(p)), predicted], minlength=k)  # expected TP per class
    flagged = np.bincount(predicted, minlength=k).astype(np.float64)
    actual = q.sum(axis=0)
    denominator = flagged + actual  # 2 TP + FP + FN
    f1 = np.where(denominator > 0, 2 * hits / np.where(denominator > 0, denominator, 1.0), np.nan)
    return {"log_loss": log_loss, "accuracy": accuracy, "f1_macro": float(np.nanmean(f1))}


def multiclass_sampling_spread(p: np.ndarray, q: np.ndarray, draws: int, seed: int) -> dict[str, float]:
    """Standard deviation of each realised metric over class draws from the calibrated
    probabilities: how far a batch of this size lands from its expectation by chance alone."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(q, axis=1)
    values: dict[str, list[float]] = {name: [] for name in MULTICLASS_METRICS}
    eye = np.eye(p.shape[1])
    for _ in range(draws):
        drawn = np.minimum((cumulative < rng.random((len(q), 1))).sum(axis=1), p.shape[1] - 1)
        for name, v in multiclass_expected(p, eye[drawn]).items():
            values[name].append(v)
    return {name: float(np.nanstd(v)) for name, v in values.items()}


@dataclass(frozen=True)
class MulticlassEstimator:
    """A multiclass model's performance estimator: each class's probability calibrated on the
    reference (one-vs-rest isotonic regression, renormalised), the bootstrap calibrations that say
    how well the reference pins it down, and the reference's figures."""

    classes: tuple[str, ...]
    calibration: tuple[CalibrationMap, ...]
    bootstrap: tuple[tuple[CalibrationMap, ...], ...]
    reference_rows: int
    reference: dict[str, float]
    seed: int = 0
    gaps: ReferenceGaps | None = None
    threshold: float = float("nan")  # no decision threshold: the predicted class is the likeliest

    def estimate(self, probabilities: np.ndarray, features: np.ndarray | None = None) -> PerformanceEstimate:
        """The batch's expected log loss, accuracy and macro F1 with their bands, corrected and
        widened as the binary estimate is (with ``features``, the model's inputs, for the gaps of
        :mod:`nbops.monitoring.reference_gaps`: each reading shifts each class's log-odds).

        Raises:
            EstimationError: no rows, probabilities that are not one per class in [0, 1], or
                features that are not the model's inputs.
        """
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise EstimationError(
                f"expected the model's probabilities of its {len(self.classes)} classes for each row, found an array "
                f"of shape {p.shape}; estimate with the model the estimator was fitted for"
            )
        if len(p) == 0:
            raise EstimationError("cannot estimate performance on a batch with no rows; check the batch file")
        if not (np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1):
            raise EstimationError("expected class probabilities in [0, 1], found values outside; check the scores")
        x = None
        if features is not None and self.gaps is not None:
            x = np.asarray(features, dtype=np.float64)
            if x.ndim != 2 or x.shape != (len(p), len(self.gaps.feature_names)):
                raise EstimationError(
                    f"expected the model's {len(self.gaps.feature_names)} inputs for each of the {len(p):,} rows, "
                    f"found an array of shape {x.shape}; pass the batch's features as the model's transform makes them"
                )
        q = calibrated_classes(self.calibration, p)
        point = multiclass_expected(p, q)
        idx = evenly_spaced(len(p), SPREAD_ROWS)
        ps, qs = p[idx], q[idx]
        sampling = multiclass_sampling_spread(ps, qs, SAMPLING_DRAWS, self.seed)
        scale = float(np.sqrt(len(ps) / len(p)))
        here = multiclass_expected(ps, qs) if len(ps) < len(p) else point
        boot = [multiclass_expected(ps, calibrated_classes(maps, ps)) for maps in self.bootstrap]
        totals: tuple[dict[str, float], ...] = tuple(dict.fromkeys(MULTICLASS_METRICS, 0.0) for _ in range(3))
        mid, down, up = totals
        described = []
        log_q = np.log(np.clip(qs, PROBABILITY_FLOOR, 1.0))
        for h in self.gaps.hypotheses(x[idx]) if x is not None and self.gaps is not None else []:
            moved = [multiclass_expected(ps, softmax(log_q + shift)) if shift.any() else here for shift in h.shifts]
            described.append(combine_readings(h, moved, here, MULTICLASS_METRICS, (mid, down, up), "log_loss"))
        metrics = {}
        for name in MULTICLASS_METRICS:
            values = np.array([b[name] for b in boot])
            calib_sd = float(np.std(values))
            se = float(sampling[name] * scale + calib_sd)  # added: the calibration's error is every batch's
            v = point[name] - float(np.mean(values) - here[name])
            top = float("inf") if name == "log_loss" else 1.0
            metrics[name] = MetricEstimate(
                min(max(v + mid[name], 0.0), top),
                max(v + down[name] - Z * se, 0.0),
                min(v + up[name] + Z * se, top),
                se,
            )
        return PerformanceEstimate(len(p), self.threshold, metrics, dict(self.reference), tuple(described))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MULTICLASS_FORMAT,
            "task_type": "multiclass",
            "method": "CBPE: each class's probability calibrated (isotonic) on the test split, renormalised",
            "classes": list(self.classes),
            "reference_rows": self.reference_rows,
            "reference": self.reference,
            "seed": self.seed,
            "calibration": [m.to_dict() for m in self.calibration],
            "bootstrap": [[m.to_dict() for m in maps] for maps in self.bootstrap],
            "gaps": self.gaps.to_dict() if self.gaps is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the estimator") -> MulticlassEstimator:
        if d.get("format") != MULTICLASS_FORMAT or not isinstance(d.get("calibration"), list):
            raise EstimationError(
                f"{where}: expected a multiclass estimator of format {MULTICLASS_FORMAT!r}, found {d.get('format')!r}; "
                "re-create it by registering the model again"
            )
        classes = tuple(str(c) for c in d["classes"])
        if len(d["calibration"]) != len(classes):
            raise EstimationError(
                f"{where}: expected a calibration map for each of the {len(classes)} classes, found "
                f"{len(d['calibration'])}; re-create it by registering the model again"
            )
        return cls(
            classes,
            tuple(
                CalibrationMap.from_dict(m, f"{where}: class {c}")
                for c, m in zip(classes, d["calibration"], strict=True)
            ),
            tuple(
                tuple(CalibrationMap.from_dict(m, f"{where}: bootstrap {i}") for m in maps)
                for i, maps in enumerate(d["bootstrap"])
            ),
            int(d["reference_rows"]),
            {k: float(v) for k, v in d["reference"].items()},
            int(d.get("seed", 0)),
            ReferenceGaps.from_dict(d["gaps"]) if isinstance(d.get("gaps"), dict) else None,
        )


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def fit_multiclass_estimator(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[object],
    *,
    bootstrap: int = BOOTSTRAP_MAPS,
    seed: int = 0,
    where: str = "the reference",
    booster: Any = None,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] = (),
    categorical: Sequence[int] = (),
) -> MulticlassEstimator:
    """Fit the multiclass estimator on a labelled reference that is not the training data (the test
    split): ``probabilities`` (rows, classes), ``labels`` each row's class position; with the model
    and the reference's inputs, also its gaps (as :func:`fit_binary_estimator`).

    Raises:
        EstimationError: too few rows, a class with too few rows, labels that are not class
            positions, or probabilities that are not one per class in [0, 1].
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).ravel()
    k = len(classes)
    if p.ndim != 2 or p.shape != (y.size, k):
        raise EstimationError(
            f"{where}: expected the probabilities of the {k} classes for each of the {y.size:,} labelled rows, found "
            f"an array of shape {p.shape}; pass the test split's predictions with its target"
        )
    if y.size < MIN_REFERENCE_ROWS:
        raise EstimationError(
            f"{where}: expected at least {MIN_REFERENCE_ROWS} labelled rows to calibrate on, found {y.size:,}; use "
            "a larger test split (test_fraction in env.yaml)"
        )
    if not np.isin(y, np.arange(k)).all():
        raise EstimationError(
            f"{where}: expected each label as its class's position (0 to {k - 1}), found "
            f"{float(y[~np.isin(y, np.arange(k))][0])!r}; drop unlabelled rows first"
        )
    if not (np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1):
        raise EstimationError(f"{where}: expected class probabilities in [0, 1], found values outside")
    counts = np.bincount(y.astype(int), minlength=k)
    if counts.min() < MIN_REFERENCE_CLASS_ROWS:
        rare = [f"{classes[int(i)]} ({counts[i]})" for i in np.flatnonzero(counts < MIN_REFERENCE_CLASS_ROWS)]
        raise EstimationError(
            f"{where}: expected at least {MIN_REFERENCE_CLASS_ROWS} rows of each class, found fewer for "
            f"{', '.join(rare)}; use a larger test split"
        )
    onehot = np.eye(k)[y.astype(int)]

    def maps_of(rows: np.ndarray) -> tuple[CalibrationMap, ...]:
        return tuple(CalibrationMap.fit(p[rows, c], onehot[rows, c]) for c in range(k))

    rng = np.random.default_rng(seed)
    boot = tuple(maps_of(rng.integers(0, y.size, y.size)) for _ in range(bootstrap))
    reference = multiclass_expected(p, onehot)
    gaps = _fitted_gaps(booster, features, y.size, "rows", feature_names, categorical, seed, where)
    return MulticlassEstimator(
        tuple(str(c) for c in classes), maps_of(np.arange(y.size)), boot, int(y.size), reference, seed, gaps
    )


DLE_FORMAT = "nbops-dle/1"
DLE_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "num_leaves": 15,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "verbose": -1,
    "seed": 0,
    "deterministic": True,
}
DLE_ROUNDS = 80
REGRESSION_METRICS = ("mae", "rmse")


def dle_inputs(features: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """What the loss models see: the model's inputs and its prediction as the last column."""
    x = np.asarray(features, dtype=np.float64)
    return np.column_stack([x.reshape(len(x), -1), np.asarray(predictions, dtype=np.float64).ravel()])


@dataclass(frozen=True)
class RegressionEstimator:
    """A regression model's performance estimator (DLE): models of the absolute and squared error."""

    abs_error_model: str  # LightGBM text
    sq_error_model: str
    reference_rows: int
    reference: dict[str, float]  # realised mae / rmse on the reference, and their standard errors
    threshold: float = float("nan")  # no decision threshold for a regression model

    def estimate(self, predictions: np.ndarray, features: np.ndarray | None = None) -> PerformanceEstimate:
        """The batch's expected MAE and RMSE with their bands.

        Raises:
            EstimationError: no rows, no features (the loss models need the model's inputs), or
                predictions that are not numbers.
        """
        import lightgbm as lgb

        p = np.asarray(predictions, dtype=np.float64).ravel()
        if p.size == 0:
            raise EstimationError("cannot estimate performance on a batch with no rows; check the batch file")
        if features is None or len(features) != p.size:
            raise EstimationError(
                f"a regression estimate needs the model's inputs beside its {p.size:,} predictions, found "
                f"{'none' if features is None else len(features)}; estimate from the batch table, not its scores alone"
            )
        if not np.isfinite(p).all():
            raise EstimationError(f"expected finite predictions, found {int((~np.isfinite(p)).sum()):,} that are not")
        x = dle_inputs(features, p)
        a = np.clip(lgb.Booster(model_str=self.abs_error_model).predict(x), 0.0, None)
        b = np.clip(lgb.Booster(model_str=self.sq_error_model).predict(x), 0.0, None)
        n = p.size
        mae, mse = float(a.mean()), float(b.mean())
        rmse = float(np.sqrt(mse))
        # Sampling: |e| given x has variance E[e^2] - E[|e|]^2; e^2 about 2 E[e^2]^2 (normal errors).
        se_mae_sampling = float(np.sqrt(np.mean(np.clip(b - a**2, 0.0, None)) / n))
        se_mse_sampling = float(np.sqrt(np.mean(2 * b**2) / n))
        se_rmse_sampling = se_mse_sampling / (2 * rmse) if rmse > 0 else 0.0
        se = {
            # Added, as for CBPE: the reference's error is the same in every batch.
            "mae": se_mae_sampling + self.reference.get("mae_se", 0.0),
            "rmse": se_rmse_sampling + self.reference.get("rmse_se", 0.0),
        }
        values = {"mae": mae, "rmse": rmse}
        metrics = {
            k: MetricEstimate(values[k], max(values[k] - Z * se[k], 0.0), values[k] + Z * se[k], se[k])
            for k in REGRESSION_METRICS
        }
        return PerformanceEstimate(n, self.threshold, metrics, {k: self.reference[k] for k in REGRESSION_METRICS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DLE_FORMAT,
            "task_type": "regression",
            "method": "DLE: LightGBM models of the absolute and squared error, fitted on the test split",
            "reference_rows": self.reference_rows,
            "reference": self.reference,
            "abs_error_model": self.abs_error_model,
            "sq_error_model": self.sq_error_model,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the estimator") -> RegressionEstimator:
        if d.get("format") != DLE_FORMAT or not isinstance(d.get("abs_error_model"), str):
            raise EstimationError(
                f"{where}: expected a regression estimator of format {DLE_FORMAT!r}, found {d.get('format')!r}; "
                "re-create it by registering the model again"
            )
        return cls(
            d["abs_error_model"],
            d["sq_error_model"],
            int(d["reference_rows"]),
            {k: float(v) for k, v in d["reference"].items()},
        )


def fit_regression_estimator(
    features: np.ndarray, predictions: np.ndarray, targets: np.ndarray, *, where: str = "the reference"
) -> RegressionEstimator:
    """Fit DLE on a labelled reference that is not the training data (the test split).

    Raises:
        EstimationError: too few rows, mismatched lengths, or targets that are not numbers.
    """
    import lightgbm as lgb

    p = np.asarray(predictions, dtype=np.float64).ravel()
    y = np.asarray(targets, dtype=np.float64).ravel()
    if not (len(features) == p.size == y.size):
        raise EstimationError(
            f"{where}: expected one prediction and one target per row, found {len(features):,} rows, {p.size:,} "
            f"predictions and {y.size:,} targets"
        )
    if p.size < MIN_REFERENCE_ROWS:
        raise EstimationError(
            f"{where}: expected at least {MIN_REFERENCE_ROWS} labelled rows to fit the loss models on, found "
            f"{p.size:,}; use a larger test split (test_fraction in env.yaml)"
        )
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise EstimationError(f"{where}: expected finite targets and predictions; drop unlabelled rows first")
    x = dle_inputs(features, p)
    e = y - p
    models = []
    for loss in (np.abs(e), e**2):
        booster = lgb.train(DLE_PARAMS, lgb.Dataset(x, loss), num_boost_round=DLE_ROUNDS)
        models.append(booster.model_to_string())
    n = p.size
    mae, mse = float(np.mean(np.abs(e))), float(np.mean(e**2))
    rmse = float(np.sqrt(mse))
    reference = {
        "mae": mae,
        "rmse": rmse,
        "mae_se": float(np.std(np.abs(e)) / np.sqrt(n)),
        "rmse_se": float(np.std(e**2) / np.sqrt(n) / (2 * rmse)) if rmse > 0 else 0.0,
    }
    return RegressionEstimator(models[0], models[1], n, reference)


Estimator = BinaryEstimator | MulticlassEstimator | RegressionEstimator


def _fitted_gaps(
    booster: Any,
    features: Any,
    rows: int,
    unit: str,
    feature_names: Any,
    categorical: Any,
    seed: int,
    where: str,
) -> ReferenceGaps | None:
    """The reference's gaps, probed with the model on the test split's inputs; None without them.

    Raises:
        EstimationError: ``features`` are not the model's inputs, one row per score.
    """
    if booster is None or features is None:
        return None
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != rows or x.shape[1] != len(feature_names):
        raise EstimationError(
            f"{where}: expected the model's {len(feature_names)} inputs for each of the {rows:,} {unit}, found "
            f"an array of shape {x.shape}; pass the test split's features in the order of its predictions"
        )
    return fit_reference_gaps(booster, x, feature_names, categorical, seed)
