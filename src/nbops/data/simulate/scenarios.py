"""Drift scenarios applied to a later month: covariate shifts (shock, gradual, new-category) keep
the reference relation P(default | features); concept changes it (see the generator's logit)."""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from nbops.data.simulate.catalogue import NEW_LOAN_PURPOSE, NEW_PURPOSE_CODE, SCENARIOS
from nbops.data.simulate.truth import DriftedFeature

# Drift magnitudes.
_SHOCK_INCOME_FACTOR: Final = 0.65
_SHOCK_UTIL_FACTOR: Final = 1.2
_SHOCK_UTIL_ADD: Final = 0.12
_SHOCK_NEW_DELINQ_PROB: Final = 0.5
_SHOCK_NEW_DELINQ_EXTRA_MEAN: Final = 1.0
_SHOCK_EXTRA_DELINQ_MEAN: Final = 1.0
_SHOCK_RECENT_MONTHS: Final = 6
_SHOCK_EXTRA_INQ_MEAN: Final = 1.2
_NEW_CATEGORY_SHARE: Final = 0.25


def _gradual_growth(batch: int) -> float:
    """Saturating growth in [0, 1): 0 at batch 1, ~0.57 at batch 6."""
    return 1.0 - math.exp(-(batch - 1) / 6.0)


def apply_drift(f: dict[str, np.ndarray], drift: str, batch: int, rng: np.random.Generator) -> list[DriftedFeature]:
    """Apply a covariate-drift scenario in place; return the truthful list of changed features."""
    n = f["age"].shape[0]
    if drift in ("none", "concept"):
        return []
    if drift == "shock":
        factor = _SHOCK_INCOME_FACTOR
        f["annual_income"] = np.round(f["annual_income"] * factor, -1)
        f["debt_to_income"] = np.round(np.clip(f["debt_to_income"] / factor, 0.0, 5.0), 4)
        f["credit_utilization"] = np.round(
            np.clip(f["credit_utilization"] * _SHOCK_UTIL_FACTOR + _SHOCK_UTIL_ADD, 0.0, 1.5), 4
        )
        delinq = f["num_delinquencies_2y"]
        newly = (delinq == 0) & (rng.random(n) < _SHOCK_NEW_DELINQ_PROB)
        new_events = np.where(newly, 1 + rng.poisson(_SHOCK_NEW_DELINQ_EXTRA_MEAN, n), 0) + np.where(
            delinq > 0, rng.poisson(_SHOCK_EXTRA_DELINQ_MEAN, n), 0
        )
        f["num_delinquencies_2y"] = (delinq + new_events).astype(np.int64)
        recent = rng.integers(0, _SHOCK_RECENT_MONTHS, n).astype(np.float64)
        f["months_since_last_delinquency"] = np.where(new_events > 0, recent, f["months_since_last_delinquency"])
        f["num_credit_inquiries_6m"] = (f["num_credit_inquiries_6m"] + rng.poisson(_SHOCK_EXTRA_INQ_MEAN, n)).astype(
            np.int64
        )
        return [
            DriftedFeature("annual_income", "scale", f"annual_income multiplied by {factor}"),
            DriftedFeature(
                "debt_to_income",
                "scale",
                f"debt_to_income divided by {factor} (same debts, lower incomes)",
            ),
            DriftedFeature(
                "credit_utilization",
                "shift",
                f"credit_utilization mapped to {_SHOCK_UTIL_FACTOR} * u + {_SHOCK_UTIL_ADD} (capped at 1.5)",
            ),
            DriftedFeature(
                "num_delinquencies_2y",
                "rate",
                f"{_SHOCK_NEW_DELINQ_PROB:.0%} of clean applicants gain 1 + Poisson({_SHOCK_NEW_DELINQ_EXTRA_MEAN})"
                f" delinquencies; delinquent ones gain Poisson({_SHOCK_EXTRA_DELINQ_MEAN})",
            ),
            DriftedFeature(
                "months_since_last_delinquency",
                "shift",
                f"applicants with new delinquencies get a recent one (0-{_SHOCK_RECENT_MONTHS - 1}"
                " months); fewer missing values",
            ),
            DriftedFeature(
                "num_credit_inquiries_6m",
                "rate",
                f"num_credit_inquiries_6m increased by Poisson({_SHOCK_EXTRA_INQ_MEAN})",
            ),
        ]
    if drift == "gradual":
        growth = _gradual_growth(batch)
        log_shift = 0.45 + 0.55 * growth
        factor = math.exp(log_shift)
        rate_add = 3.0 + 3.0 * growth
        f["loan_amount"] = np.clip(np.round(f["loan_amount"] * factor / 50.0) * 50.0, 0.0, 1_000_000.0)
        f["interest_rate"] = np.round(np.clip(f["interest_rate"] + rate_add, 0.0, 100.0), 2)
        return [
            DriftedFeature(
                "loan_amount",
                "scale",
                f"loan_amount multiplied by {factor:.3f} (batch {batch}; grows with the batch number)",
            ),
            DriftedFeature(
                "interest_rate",
                "shift",
                f"interest_rate increased by {rate_add:.2f} percentage points"
                f" (batch {batch}; grows with the batch number)",
            ),
        ]
    if drift == "new-category":
        purpose = f["loan_purpose"].copy()
        purpose[rng.random(n) < _NEW_CATEGORY_SHARE] = NEW_PURPOSE_CODE
        f["loan_purpose"] = purpose
        return [
            DriftedFeature(
                "loan_purpose",
                "new-category",
                f"new loan_purpose category {NEW_LOAN_PURPOSE!r} at ~{_NEW_CATEGORY_SHARE:.0%}"
                " share; other purposes shrink proportionally",
            )
        ]
    raise ValueError(f"unknown drift scenario {drift!r}; expected one of {', '.join(SCENARIOS)}")
