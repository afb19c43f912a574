"""Drift of a batch against a reference profile: per feature, for the predictions, and for the batch.

The decision uses the Population Stability Index over the reference's bins (deciles for numeric
features, levels plus "unseen" plus "missing" for categorical ones): the credit-risk standard, and,
unlike a p-value test, a measure of *how much* a distribution moved, so it does not flag negligible
shifts when batches are large. Wasserstein distance (on the 1-99% quantile function, in units of the
reference IQR) and Jensen-Shannon distance are reported beside it. Thresholds come from env.yaml.

The threshold knows the batch's size. Two samples of the same distribution still differ by chance,
and on a few dozen rows PSI is mostly that chance: under no drift, PSI over k bins between ``n``
current rows and ``m`` reference rows is approximately chi-square(k - 1) x (1/n + 1/m). A feature
drifts at PSI >= max(the configured threshold, 1.3 x that null's 99.99% quantile), and is worth
watching from max(the configured watch level, 1.3 x its 99.9% quantile): 1.3 because PSI's tail is
heavier than the approximation's when bins hold a handful of rows (measured by simulation), 99.99%
so that a batch of 20-60 features raises a false alarm in well under 1 in 100 batches. From a few
hundred rows up the configured threshold decides, as before; below, the threshold rises with 1/n
(0.2 configured: 0.44 for a decile-binned feature at 100 rows against a 100,000-row reference). An
empty bin of the batch counts as half a row, so one empty decile in a tiny batch is not a drift by
itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nbops.monitoring.profile import (
    N_QUANTILES,
    ReferenceProfile,
    bin_shares,
    build_reference_profile,
    category_shares,
    numeric_values,
    per_feature,
)

EPS = 1e-4  # floor for empty bins, so PSI stays finite (half a row when the sample is smaller than 5,000 rows)
_INNER = slice(1, N_QUANTILES - 1)  # quantiles 1%..99%: the extremes are too noisy to compare
ALERT_QUANTILE = 0.9999  # of PSI's null distribution: the lowest threshold a batch of its size gets
WATCH_QUANTILE = 0.999  # ... and the lowest watch level
# PSI's tail is up to 30% heavier than chi-square's when bins hold a handful of rows (simulated: the
# 99.99% quantile of PSI over 2-50 bins at 30-2,000 rows is at most 1.32 times chi-square's).
TAIL_FACTOR = 1.3
WATCH_PSI = 0.1  # the usual "watch" level of PSI (capped at half the alert threshold)


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature, the predictions and the batch count as drifted."""

    psi: float = 0.2  # act; 0.1 is the usual "watch" level
    min_drifted_features: int = 1  # dataset-level drift when at least this many features drift


@dataclass
class FeatureDrift:
    name: str
    kind: str
    method: str
    score: float
    drifted: bool
    wasserstein: float | None
    jensen_shannon: float
    missing_reference: float
    missing_current: float
    # The PSI at which this feature drifts for this batch (the configured threshold, raised for a
    # small batch) and from which it is worth watching; None: the configured levels.
    threshold: float | None = None
    watch: float | None = None


@dataclass
class DriftReport:
    """The comparison of one batch with the reference."""

    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    dataset_drift: bool
    thresholds: DriftThresholds
    missing_columns: list[str] = field(default_factory=list)
    # A multiclass model: the drift of each class's probability (``prediction`` is the worst of them).
    class_predictions: list[FeatureDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def psi_threshold(self) -> float:
        """The highest PSI threshold any feature had for this batch: the configured one unless the batch
        is small enough for chance alone to reach it (then raised, see the module's docstring)."""
        return max((f.threshold for f in self.features if f.threshold is not None), default=self.thresholds.psi)

    @property
    def raised(self) -> bool:
        """Whether the batch's size raised any feature's threshold above the configured one."""
        return self.psi_threshold > self.thresholds.psi

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "rows": self.rows,
            "drifted_features": self.drifted,
            "missing_columns": self.missing_columns,
            "features": [asdict(f) for f in self.features],
            "prediction": asdict(self.prediction) if self.prediction else None,
            **({"class_predictions": [asdict(f) for f in self.class_predictions]} if self.class_predictions else {}),
            "thresholds": asdict(self.thresholds),
            "psi_threshold": self.psi_threshold,
        }

    def frame(self) -> pd.DataFrame:
        columns = [
            "name",
            "kind",
            "method",
            "score",
            "drifted",
            "wasserstein",
            "jensen_shannon",
            "missing_reference",
            "missing_current",
            "threshold",
            "watch",
        ]
        return pd.DataFrame([asdict(f) for f in self.features], columns=columns).sort_values(
            "score", ascending=False, ignore_index=True
        )


def share_floor(rows: int) -> float:
    """The share an empty bin counts as: EPS, or half a row of a sample under 5,000 rows (so that an
    empty decile in a batch of 50 rows weighs what a half-row difference does, not ln(1000))."""
    return max(EPS, 0.5 / rows) if rows > 0 else EPS


def psi(reference: ArrayLike, current: ArrayLike, rows: int = 0) -> float:
    """Population Stability Index between two share vectors over the same bins. An empty bin counts as
    EPS; in a current sample of ``rows`` rows (when known), as :func:`share_floor`. A bin empty on both
    sides counts for nothing."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    seen = (r > 0) | (c > 0)
    r = np.maximum(r[seen], EPS)
    c = np.maximum(c[seen], share_floor(rows))
    return float(np.sum((c - r) * np.log(c / r)))


def chi2_quantile(df: int, q: float) -> float:
    """The ``q`` quantile of chi-square with ``df`` degrees of freedom (Wilson-Hilferty, no scipy): at the
    tail quantiles used here a little above the exact value (7% at df 1, 2% at df 5, 1% from df 9), so
    it errs towards no alarm."""
    if df <= 0:
        return 0.0
    z = NormalDist().inv_cdf(q)
    k = 2.0 / (9.0 * df)
    return float(df * max(1.0 - k + z * np.sqrt(k), 0.0) ** 3)


def null_psi(df: int, rows: int, reference_rows: int, q: float) -> float:
    """The ``q`` quantile of PSI under no drift between ``rows`` and ``reference_rows`` rows over
    ``df`` + 1 bins: chi-square(df) x (1/rows + 1/reference_rows), times TAIL_FACTOR."""
    if rows <= 0 or df <= 0:
        return 0.0
    scale = 1.0 / rows + (1.0 / reference_rows if reference_rows > 0 else 0.0)
    return TAIL_FACTOR * chi2_quantile(df, q) * scale


def bins_of(reference: ArrayLike) -> int:
    """The degrees of freedom of a feature's PSI: its bins that hold reference rows, minus one."""
    return max(int(np.count_nonzero(np.asarray(reference, dtype=np.float64) > 0)) - 1, 0)


def watch_level(psi_threshold: float) -> float:
    """The PSI from which a feature is worth watching: 0.1, or half the alert threshold when that is lower."""
    return min(WATCH_PSI, psi_threshold / 2)


def effective_levels(
    reference: ArrayLike, rows: int, reference_rows: int, thresholds: DriftThresholds
) -> tuple[float, float]:
    """(alert, watch) PSI levels of one feature for a batch of ``rows`` against ``reference_rows``:
    the configured levels, raised to the 99.99% / 99.9% quantiles of PSI under no drift at that size."""
    df = bins_of(reference)
    alert = max(thresholds.psi, null_psi(df, rows, reference_rows, ALERT_QUANTILE))
    watch = max(watch_level(thresholds.psi), null_psi(df, rows, reference_rows, WATCH_QUANTILE))
    return alert, min(watch, alert)


def psi_drift(
    name: str,
    kind: str,
    reference: ArrayLike,
    current: ArrayLike,
    *,
    rows: int,
    reference_rows: int,
    thresholds: DriftThresholds,
    wasserstein: float | None,
    missing_reference: float,
    missing_current: float,
) -> FeatureDrift:
    """One feature's (or score's) PSI against its reference bins, decided at the levels for the batch's size."""
    score = psi(reference, current, rows)
    alert, watch = effective_levels(reference, rows, reference_rows, thresholds)
    return FeatureDrift(
        name,
        kind,
        "psi",
        score,
        score >= alert,
        wasserstein,
        jensen_shannon(reference, current),
        missing_reference,
        missing_current,
        alert,
        watch,
    )


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two share vectors."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    r, c = r / max(r.sum(), 1e-12), c / max(c.sum(), 1e-12)
    m = (r + c) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return float(np.sqrt(max(0.5 * kl(r, m) + 0.5 * kl(c, m), 0.0)))


def wasserstein_from_quantiles(reference_q: np.ndarray, current: np.ndarray, scale: float) -> float | None:
    """Mean absolute difference of the 1-99% quantile functions, in units of ``scale`` (the reference IQR)."""
    present = current[~np.isnan(current)]
    if present.size == 0 or len(reference_q) != N_QUANTILES:
        return None
    q = np.quantile(present, np.linspace(0, 1, N_QUANTILES))
    spread = scale if scale and np.isfinite(scale) and scale > 0 else (np.ptp(reference_q) or 1.0)
    return float(np.mean(np.abs(q[_INNER] - np.asarray(reference_q)[_INNER])) / spread)


def compare(
    profile: ReferenceProfile,
    batch: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    predictions: np.ndarray | None = None,
) -> DriftReport:
    """Compare ``batch`` with ``profile``; features missing from the batch are reported, not guessed."""
    thresholds = thresholds or DriftThresholds()
    rows: list[FeatureDrift] = []
    n = len(batch)
    missing_columns = [f for f in profile.features if f not in batch.columns]

    def numeric(name: str) -> FeatureDrift:
        ref = profile.numeric[name]
        values = numeric_values(batch[name])
        return psi_drift(
            name,
            "numeric",
            ref.shares,
            bin_shares(values, np.asarray(ref.edges)),
            rows=n,
            reference_rows=profile.rows,
            thresholds=thresholds,
            wasserstein=wasserstein_from_quantiles(np.asarray(ref.quantiles), values, ref.iqr),
            missing_reference=ref.missing_rate,
            missing_current=float(np.isnan(values).mean()) if len(values) else 0.0,
        )

    def categorical(name: str) -> FeatureDrift:
        ref_c = profile.categorical[name]
        # The reference keeps its own "other" share: levels beyond the profile's cap are not drift.
        return psi_drift(
            name,
            "categorical",
            ref_c.shares,
            category_shares(batch[name], ref_c.levels),
            rows=n,
            reference_rows=profile.rows,
            thresholds=thresholds,
            wasserstein=None,
            missing_reference=ref_c.missing_rate,
            missing_current=float(batch[name].isna().mean()) if len(batch) else 0.0,
        )

    rows += per_feature(numeric, [f for f in profile.numeric if f not in missing_columns], n)
    rows += per_feature(categorical, [f for f in profile.categorical if f not in missing_columns], n)
    prediction = None
    per_class: list[FeatureDrift] = []
    if predictions is not None and profile.prediction is not None:
        p = np.asarray(predictions, dtype=np.float64)
        by_class = profile.prediction.get("classes")
        if by_class is not None and p.ndim == 2:
            per_class = [
                score_drift(f"prediction[{name}]", ref, p[:, i], thresholds, profile.rows)
                for i, (name, ref) in enumerate(by_class.items())
            ]
            worst = max(per_class, key=lambda f: f.score)
            # The predictions drift as much as their most drifted class (per_class names each class).
            prediction = FeatureDrift(**{**asdict(worst), "name": "prediction"})
        elif by_class is None and p.ndim == 1:
            prediction = score_drift("prediction", profile.prediction, p, thresholds, profile.rows)
    n_drifted = sum(f.drifted for f in rows)
    return DriftReport(
        len(batch),
        rows,
        prediction,
        n_drifted >= thresholds.min_drifted_features or bool(missing_columns),
        thresholds,
        missing_columns,
        per_class,
    )


def score_drift(
    name: str, reference: dict[str, Any], p: np.ndarray, thresholds: DriftThresholds, reference_rows: int = 0
) -> FeatureDrift:
    """The drift of one score (the predictions, or one class's probability) against its reference bins."""
    return psi_drift(
        name,
        "prediction",
        reference["shares"],
        bin_shares(p, np.asarray(reference["edges"])),
        rows=len(p),
        reference_rows=reference_rows,
        thresholds=thresholds,
        wasserstein=wasserstein_from_quantiles(np.asarray(reference["quantiles"]), p, 0.0),
        missing_reference=0.0,
        missing_current=float(np.isnan(p).mean()),
    )


def profile_of_table(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> ReferenceProfile:
    """A reference profile from a plain table (for `nbops drift REFERENCE.csv CURRENT.csv`):
    numeric columns by dtype, text columns with few levels as categorical."""
    numeric, categorical = [], []
    for name in df.columns:
        if name in exclude:
            continue
        s = df[name]
        if pd.api.types.is_bool_dtype(s):
            categorical.append(name)
        elif pd.api.types.is_numeric_dtype(s):
            numeric.append(name)
        elif s.nunique(dropna=True) <= 200 and s.nunique(dropna=True) < max(len(s) // 2, 2):
            categorical.append(name)
    return build_reference_profile(df, numeric, categorical)
