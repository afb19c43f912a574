"""Drift of a batch against a reference profile: per feature, for the predictions, and for the batch.

The decision uses the Population Stability Index over the reference's bins (deciles for numeric
features, levels plus "unseen" plus "missing" for categorical ones): the credit-risk standard, and,
unlike a p-value test, a measure of *how much* a distribution moved, so it does not flag negligible
shifts when batches are large. Wasserstein distance (on the 1-99% quantile function, in units of the
reference IQR) and Jensen-Shannon distance are reported beside it. Thresholds come from env.yaml.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
)

EPS = 1e-4  # floor for empty bins, so PSI stays finite
_INNER = slice(1, N_QUANTILES - 1)  # quantiles 1%..99%: the extremes are too noisy to compare


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
        ]
        return pd.DataFrame([asdict(f) for f in self.features], columns=columns).sort_values(
            "score", ascending=False, ignore_index=True
        )


def psi(reference: ArrayLike, current: ArrayLike) -> float:
    """Population Stability Index between two share vectors over the same bins."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), EPS)
    c = np.maximum(np.asarray(current, dtype=np.float64), EPS)
    return float(np.sum((c - r) * np.log(c / r)))


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
    missing_columns = [f for f in profile.features if f not in batch.columns]
    for name, ref in profile.numeric.items():
        if name in missing_columns:
            continue
        values = numeric_values(batch[name])
        edges = np.asarray(ref.edges)
        cur = bin_shares(values, edges)
        score = psi(ref.shares, cur)
        rows.append(
            FeatureDrift(
                name,
                "numeric",
                "psi",
                score,
                score >= thresholds.psi,
                wasserstein_from_quantiles(np.asarray(ref.quantiles), values, ref.iqr),
                jensen_shannon(ref.shares, cur),
                ref.missing_rate,
                float(np.isnan(values).mean()) if len(values) else 0.0,
            )
        )
    for name, ref_c in profile.categorical.items():
        if name in missing_columns:
            continue
        cur = category_shares(batch[name], ref_c.levels)
        # The reference keeps its own "other" share: levels beyond the profile's cap are not drift.
        reference = np.asarray(ref_c.shares)
        score = psi(reference, cur)
        rows.append(
            FeatureDrift(
                name,
                "categorical",
                "psi",
                score,
                score >= thresholds.psi,
                None,
                jensen_shannon(reference, cur),
                ref_c.missing_rate,
                float(batch[name].isna().mean()) if len(batch) else 0.0,
            )
        )
    prediction = None
    per_class: list[FeatureDrift] = []
    if predictions is not None and profile.prediction is not None:
        p = np.asarray(predictions, dtype=np.float64)
        by_class = profile.prediction.get("classes")
        if by_class is not None and p.ndim == 2:
            per_class = [
                score_drift(f"prediction[{name}]", ref, p[:, i], thresholds)
                for i, (name, ref) in enumerate(by_class.items())
            ]
            worst = max(per_class, key=lambda f: f.score)
            # The predictions drift as much as their most drifted class (per_class names each class).
            prediction = FeatureDrift(**{**asdict(worst), "name": "prediction"})
        elif by_class is None and p.ndim == 1:
            prediction = score_drift("prediction", profile.prediction, p, thresholds)
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


def score_drift(name: str, reference: dict[str, Any], p: np.ndarray, thresholds: DriftThresholds) -> FeatureDrift:
    """The drift of one score (the predictions, or one class's probability) against its reference bins."""
    cur = bin_shares(p, np.asarray(reference["edges"]))
    score = psi(reference["shares"], cur)
    return FeatureDrift(
        name,
        "prediction",
        "psi",
        score,
        score >= thresholds.psi,
        wasserstein_from_quantiles(np.asarray(reference["quantiles"]), p, 0.0),
        jensen_shannon(reference["shares"], cur),
        0.0,
        float(np.isnan(p).mean()),
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
