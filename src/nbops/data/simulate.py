"""Seeded simulator of a realistic credit-risk application table.

The simulator produces a two-year *history* table (the training/reference
data) and later *monthly batches* that can carry a known drift scenario.  Every
table comes with a :class:`SimulationTruth` describing exactly what was done, so
monitoring code can be tested against ground truth.

Design notes
------------
* Everything is vectorised with numpy; string columns are built directly as
  Arrow arrays, so one million rows take about a second.  Rows are generated in
  chunks of 2**20 (each chunk with its own random streams), which bounds the
  temporary memory: ten million rows need ~2.4 GB for the table, ~2.9 GB peak.
* Randomness is split into independent, seeded streams (features, drift,
  target, months) keyed by ``(seed, batch, chunk)``.  Consequently a drifted batch and
  the ``"none"`` batch with the same ``(seed, batch, rows)`` share *identical*
  values for every column the scenario does not name: un-named features keep
  exactly the reference generating process.
* Covariate-drift scenarios (``shock``, ``gradual``, ``new-category``) keep the
  reference relation ``P(default | features)``; only ``concept`` changes it.

Example:
    >>> df, truth = simulate_history(rows=1_000, seed=1)
    >>> truth.months[0], truth.months[-1]
    ('2023-01', '2024-12')
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

__all__ = [
    "EDUCATION_LEVELS",
    "EMPLOYMENT_TYPES",
    "HOME_OWNERSHIP",
    "ID_COLUMN",
    "LOAN_PURPOSES",
    "NEW_LOAN_PURPOSE",
    "REGIONS",
    "SCENARIOS",
    "SUPPORTED_SUFFIXES",
    "TARGET",
    "TIME_COLUMN",
    "DriftedFeature",
    "SimulationTruth",
    "declared_schema",
    "simulate_batch",
    "simulate_history",
    "truth_path_for",
    "write_simulation",
]

SCENARIOS: Final[tuple[str, ...]] = ("none", "shock", "gradual", "new-category", "concept")
TARGET: Final = "default"
TIME_COLUMN: Final = "month"
ID_COLUMN: Final = "application_id"
SUPPORTED_SUFFIXES: Final[tuple[str, ...]] = (".csv", ".parquet", ".pq")

EMPLOYMENT_TYPES: Final = ("salaried", "self_employed", "contractor", "unemployed", "retired")
HOME_OWNERSHIP: Final = ("rent", "mortgage", "own", "other")
LOAN_PURPOSES: Final = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "car",
    "medical",
    "small_business",
    "other",
)
REGIONS: Final = ("north", "south", "east", "west", "central")
EDUCATION_LEVELS: Final = ("high_school", "some_college", "bachelor", "master", "doctorate")
#: Loan purpose that never occurs in the history; introduced by the ``new-category`` scenario.
NEW_LOAN_PURPOSE: Final = "buy_now_pay_later"

_MAX_ROWS: Final = 100_000_000  # id space per table: ids are ``batch * 10**8 + row``
_ID_STRIDE: Final = 100_000_000
_ID_DIGITS: Final = 10
_CHUNK_ROWS: Final = 1 << 20  # rows generated per chunk (bounds temporary memory)
_START_RE: Final = re.compile(r"^(\d{4})-(\d{2})$")

# Random stream tags (combined with seed and batch number).
_STREAM_FEATURES: Final = 0
_STREAM_DRIFT: Final = 1
_STREAM_TARGET: Final = 2
_STREAM_MONTHS: Final = 3

# Intercepts calibrated offline (2M rows, incl. the latent term) so the default rate is ~10 %.
_LATENT_SD: Final = 0.6
_INTERCEPT_REFERENCE: Final = -4.328
_INTERCEPT_CONCEPT: Final = -3.928

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


@dataclass(frozen=True)
class DriftedFeature:
    """One feature whose distribution a scenario changed.

    Attributes:
        name: Column name.
        kind: Kind of change: ``"shift"``, ``"scale"``, ``"new-category"`` or ``"rate"``.
        description: Human-readable description, e.g. ``"annual_income multiplied by 0.65"``.
    """

    name: str
    kind: str
    description: str


@dataclass(frozen=True)
class SimulationTruth:
    """Ground truth about one simulated table (written as the ``.truth.json`` sidecar).

    Attributes:
        scenario: One of :data:`SCENARIOS` (``"none"`` for the history).
        seed: Seed used.
        rows: Number of rows.
        months: Sorted ``"YYYY-MM"`` strings present in the table.
        batch: ``None`` for the history table, ``k >= 1`` for the k-th monthly batch after it.
        drifted_features: Features whose distribution the scenario changed (empty for
            ``"none"`` and ``"concept"``).
        concept_drift: ``True`` only for ``"concept"`` (relation to the target changed).
        default_rate: Realised mean of the target.
    """

    scenario: str
    seed: int
    rows: int
    months: list[str]
    batch: int | None
    drifted_features: list[DriftedFeature]
    concept_drift: bool
    default_rate: float

    def to_dict(self) -> dict[str, Any]:
        """Return the truth as JSON-serialisable plain data.

        Returns:
            A dict with the dataclass fields; ``drifted_features`` is a list of dicts.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationTruth:
        """Rebuild a truth object from :meth:`to_dict` output (e.g. a loaded sidecar).

        Args:
            data: Mapping as produced by :meth:`to_dict`.

        Returns:
            The equivalent :class:`SimulationTruth`.
        """
        return cls(
            scenario=str(data["scenario"]),
            seed=int(data["seed"]),
            rows=int(data["rows"]),
            months=[str(m) for m in data["months"]],
            batch=None if data["batch"] is None else int(data["batch"]),
            drifted_features=[DriftedFeature(**d) for d in data["drifted_features"]],
            concept_drift=bool(data["concept_drift"]),
            default_rate=float(data["default_rate"]),
        )


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # numeric | categorical | time | id
    role: str  # feature | target | time | id
    dtype: str  # "str" | "int64" | "float64"
    nullable: bool
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None


_COLUMNS: Final[tuple[_Column, ...]] = (
    _Column(ID_COLUMN, "id", "id", "str", False),
    _Column(TIME_COLUMN, "time", "time", "str", False),
    _Column("age", "numeric", "feature", "int64", False, 18.0, 100.0),
    _Column("education", "categorical", "feature", "str", True, categories=EDUCATION_LEVELS),
    _Column("employment_type", "categorical", "feature", "str", False, categories=EMPLOYMENT_TYPES),
    _Column("employment_length_years", "numeric", "feature", "float64", True, 0.0, 82.0),
    _Column("annual_income", "numeric", "feature", "float64", False, 0.0, None),
    _Column("home_ownership", "categorical", "feature", "str", False, categories=HOME_OWNERSHIP),
    _Column("region", "categorical", "feature", "str", False, categories=REGIONS),
    _Column("credit_history_years", "numeric", "feature", "float64", False, 0.0, 84.0),
    _Column("num_open_accounts", "numeric", "feature", "int64", False, 0.0, 100.0),
    _Column("num_delinquencies_2y", "numeric", "feature", "int64", False, 0.0, 100.0),
    _Column("months_since_last_delinquency", "numeric", "feature", "float64", True, 0.0, 23.0),
    _Column("num_credit_inquiries_6m", "numeric", "feature", "int64", False, 0.0, 100.0),
    _Column("credit_utilization", "numeric", "feature", "float64", False, 0.0, 1.5),
    _Column("revolving_balance", "numeric", "feature", "float64", False, 0.0, None),
    _Column("savings_balance", "numeric", "feature", "float64", True, 0.0, None),
    _Column("debt_to_income", "numeric", "feature", "float64", False, 0.0, 5.0),
    _Column("loan_purpose", "categorical", "feature", "str", False, categories=LOAN_PURPOSES),
    _Column("loan_amount", "numeric", "feature", "float64", False, 0.0, 1_000_000.0),
    _Column("loan_term_months", "numeric", "feature", "int64", False, 36.0, 60.0),
    _Column("interest_rate", "numeric", "feature", "float64", False, 0.0, 100.0),
    _Column(TARGET, "numeric", "target", "int64", False, 0.0, 1.0),
)

# Arrow dictionaries used to turn category codes into strings (code -1 = missing).
_CATEGORY_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "education": EDUCATION_LEVELS,
    "employment_type": EMPLOYMENT_TYPES,
    "home_ownership": HOME_OWNERSHIP,
    "region": REGIONS,
    "loan_purpose": (*LOAN_PURPOSES, NEW_LOAN_PURPOSE),
}
_NEW_PURPOSE_CODE: Final = len(LOAN_PURPOSES)


def declared_schema() -> dict[str, Any]:
    """Return the table's declared schema as plain (JSON-serialisable) data.

    Numeric ``min``/``max`` are physical limits, wide enough that ``shock`` and
    ``gradual`` batches still satisfy them.  ``categories`` are the history's
    categories, so the ``new-category`` batch deliberately contains one
    (:data:`NEW_LOAN_PURPOSE`) that is *not* declared.

    Returns:
        ``{"columns": [...], "target": ..., "time_column": ..., "id_column": ...}`` where
        each column is ``{"name", "kind", "role", "dtype", "nullable", "min", "max",
        "categories"}``; ``kind`` is ``numeric|categorical|time|id``, ``role`` is
        ``feature|target|time|id`` and ``dtype`` is the pandas dtype name
        (``"str"``, ``"int64"`` or ``"float64"``).
    """
    columns = [
        {
            "name": c.name,
            "kind": c.kind,
            "role": c.role,
            "dtype": c.dtype,
            "nullable": c.nullable,
            "min": c.min,
            "max": c.max,
            "categories": None if c.categories is None else list(c.categories),
        }
        for c in _COLUMNS
    ]
    return {
        "columns": columns,
        "target": TARGET,
        "time_column": TIME_COLUMN,
        "id_column": ID_COLUMN,
    }


# --------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _rng(seed: int, batch: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, batch, stream, chunk]))


def _draw_codes(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """Draw category codes from one probability vector."""
    cum = np.cumsum(probs / probs.sum())
    codes = np.searchsorted(cum, rng.random(n), side="right")
    return np.minimum(codes, len(probs) - 1).astype(np.int8)


def _draw_grouped_codes(rng: np.random.Generator, groups: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Draw category codes whose probabilities depend on a small group index."""
    u = rng.random(groups.shape[0])
    codes = np.empty(groups.shape[0], dtype=np.int8)
    for g in range(table.shape[0]):
        mask = groups == g
        cum = np.cumsum(table[g] / table[g].sum())
        codes[mask] = np.minimum(np.searchsorted(cum, u[mask], side="right"), table.shape[1] - 1)
    return codes


def _parse_start(start: str) -> tuple[int, int]:
    match = _START_RE.match(start) if isinstance(start, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"start must be a 'YYYY-MM' string, got {start!r}")
    return int(match.group(1)), int(match.group(2))


def _month_label(year: int, month: int, offset: int) -> str:
    index = year * 12 + (month - 1) + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _string_series(dictionary: tuple[str, ...] | list[str], codes: np.ndarray) -> pd.Series:
    """Build a pandas ``str`` Series from integer codes (code < 0 means missing)."""
    indices = pa.array(codes, mask=codes < 0)
    values = pc.take(pa.array(list(dictionary), type=pa.large_string()), indices)
    return pd.Series(values, dtype="str")


def _id_series(first: int, n: int) -> pd.Series:
    """Build ids ``"A" + zero-padded integer`` for ``first .. first + n - 1`` without Python loops."""
    digits = max(_ID_DIGITS, len(str(first + n - 1)))
    width = digits + 1
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, 0] = ord("A")
    rest = np.arange(first, first + n, dtype=np.int64)
    for j in range(digits, 0, -1):
        rest, digit = np.divmod(rest, 10)
        buf[:, j] = digit + ord("0")
    offsets = np.arange(0, width * n + 1, width, dtype=np.int64)
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    return pd.Series(array, dtype="str")


# --------------------------------------------------------------------------- generating process


def _generate_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw all features from the reference generating process.

    Categorical features are returned as int8 codes (``-1`` = missing); numeric
    features as int64 / float64 arrays (NaN = missing).
    """
    f: dict[str, np.ndarray] = {}

    age = np.clip(np.floor(18.0 + rng.gamma(3.0, 7.0, n)), 18, 90).astype(np.int64)
    f["age"] = age

    education = _draw_codes(rng, np.array([0.30, 0.22, 0.33, 0.12, 0.03]), n)
    age_group_emp = np.where(age >= 65, 2, np.where(age >= 58, 1, 0))
    employment = _draw_grouped_codes(
        rng,
        age_group_emp,
        np.array(
            [
                [0.66, 0.13, 0.12, 0.08, 0.01],
                [0.52, 0.14, 0.08, 0.06, 0.20],
                [0.10, 0.10, 0.04, 0.02, 0.74],
            ]
        ),
    )
    f["employment_type"] = employment

    # Years in the current (for retirees: the last) job; 0 for the unemployed.
    emp_len = np.floor(rng.gamma(1.5, 4.0, n))
    retired = employment == 4
    emp_len[retired] = np.floor(rng.gamma(3.0, 7.0, int(retired.sum())))
    emp_len[employment == 3] = 0.0
    np.minimum(emp_len, age - 18.0, out=emp_len)
    emp_len[rng.random(n) < 0.04] = np.nan
    f["employment_length_years"] = emp_len

    region = _draw_codes(rng, np.array([0.20, 0.24, 0.18, 0.22, 0.16]), n)
    f["region"] = region

    years = age - 18.0
    log_income = (
        10.55
        + 0.16 * education
        + 0.022 * years
        - 0.0004 * years**2
        + np.array([0.0, 0.05, -0.05, -1.1, -0.35])[employment]
        + np.array([0.05, -0.08, 0.0, 0.10, -0.04])[region]
        + rng.normal(0.0, 0.42, n)
    )
    self_employed = employment == 1  # incomes of the self-employed are more dispersed
    log_income[self_employed] += rng.normal(0.0, 0.25, int(self_employed.sum()))
    income = np.round(np.exp(log_income), -1)
    f["annual_income"] = income
    log_inc = np.log(np.maximum(income, 1000.0))

    # Education is reported by the applicant: a few % leave it blank.
    education = education.copy()
    education[rng.random(n) < 0.03] = -1
    f["education"] = education

    age_group_home = np.where(age >= 50, 2, np.where(age >= 30, 1, 0))
    f["home_ownership"] = _draw_grouped_codes(
        rng,
        age_group_home,
        np.array(
            [
                [0.68, 0.17, 0.10, 0.05],
                [0.38, 0.45, 0.14, 0.03],
                [0.25, 0.35, 0.37, 0.03],
            ]
        ),
    )

    credit_years = years * rng.beta(2.2, 1.4, n) + rng.uniform(0.0, 2.0, n)
    credit_years = np.round(np.clip(credit_years, 0.0, years + 2.0), 1)
    f["credit_history_years"] = credit_years

    f["num_open_accounts"] = np.minimum(
        rng.poisson(1.5 + 0.25 * credit_years + 1.0 * np.clip(log_inc - 10.5, 0.0, None)), 60
    ).astype(np.int64)

    p_delinq = _sigmoid(-1.6 - 0.6 * (log_inc - 11.0) + 0.5 * (employment == 3) - 0.02 * (age - 40))
    any_delinq = rng.random(n) < p_delinq
    n_delinq = int(any_delinq.sum())
    counts = 1 + rng.poisson(0.7, n_delinq)
    delinq = np.zeros(n, dtype=np.int64)
    delinq[any_delinq] = counts
    f["num_delinquencies_2y"] = delinq
    # Months since the most recent of `counts` events spread over the 24-month window.
    recency = np.floor(24.0 * (1.0 - rng.random(n_delinq) ** (1.0 / counts)))
    months_since = np.full(n, np.nan)
    months_since[any_delinq] = np.minimum(recency, 23.0)
    f["months_since_last_delinquency"] = months_since

    inquiries = rng.poisson(0.7 + 0.5 * any_delinq + 0.3 * (age < 30)).astype(np.int64)
    f["num_credit_inquiries_6m"] = inquiries

    util = rng.beta(1.3 + 0.9 * any_delinq + 0.4 * (inquiries >= 3), 2.6) * 1.25
    util = np.round(np.clip(util, 0.0, 1.5), 4)
    f["credit_utilization"] = util

    credit_limit = income * np.exp(rng.normal(-1.3, 0.45, n))
    f["revolving_balance"] = np.round(util * credit_limit, 2)

    savings = np.round(income * np.exp(rng.normal(-1.6, 1.1, n)), 2)
    savings[rng.random(n) < 0.12] = 0.0
    savings[rng.random(n) < 0.05] = np.nan
    f["savings_balance"] = savings

    log_dti = np.log(0.17) - 0.3 * (log_inc - 11.0) + 0.25 * (util - 0.38) + rng.normal(0.0, 0.42, n)
    f["debt_to_income"] = np.round(np.clip(np.exp(log_dti), 0.0, 2.0), 4)

    purpose = _draw_grouped_codes(
        rng,
        (employment == 1).astype(np.int8),
        np.array(
            [
                [0.37, 0.21, 0.10, 0.10, 0.06, 0.05, 0.11],
                [0.25, 0.15, 0.10, 0.08, 0.05, 0.27, 0.10],
            ]
        ),
    )
    f["loan_purpose"] = purpose

    log_loan = (
        9.35
        + 0.55 * (log_inc - 11.0)
        + np.array([0.10, -0.20, 0.30, 0.10, -0.40, 0.45, -0.30])[purpose]
        + rng.normal(0.0, 0.45, n)
    )
    loan = np.clip(np.round(np.exp(log_loan) / 50.0) * 50.0, 1000.0, 150_000.0)
    f["loan_amount"] = loan

    long_term = rng.random(n) < _sigmoid(1.6 * (np.log(loan) - np.log(20_000.0)))
    f["loan_term_months"] = np.where(long_term, 60, 36).astype(np.int64)

    rate = (
        9.0
        + 3.2 * any_delinq
        + 7.0 * np.clip(util - 0.3, 0.0, None)
        + 1.2 * long_term
        + 0.5 * inquiries
        - 1.5 * np.clip(log_inc - 11.0, -1.5, 1.5)
        + rng.normal(0.0, 2.2, n)
    )
    f["interest_rate"] = np.round(np.clip(rate, 3.0, 36.0), 2)
    return f


def _logit(f: dict[str, np.ndarray], concept: bool) -> np.ndarray:
    """Ground-truth log-odds of default from the *observed* features.

    The reference relation is nonlinear: a steep hinge in credit utilisation
    above 0.8, a debt-to-income x low-income interaction, delinquency counts and
    recency, a U-shaped age effect, employment-type and loan-purpose effects.
    The ``concept`` relation reverses the utilisation effect (high utilisation
    now lowers risk, very low utilisation raises it), drops the debt-to-income x
    low-income interaction and changes the purpose effects (home improvement and
    car loans become risky, medical and small-business loans safer).
    """
    util = f["credit_utilization"]
    dti = f["debt_to_income"]
    log_inc = np.log(np.maximum(f["annual_income"], 1000.0))
    low_income = _sigmoid(2.5 * (np.log(35_000.0) - log_inc))
    delinq = np.minimum(f["num_delinquencies_2y"], 4)
    recent = np.nan_to_num(f["months_since_last_delinquency"], nan=99.0) <= 6.0
    age = f["age"].astype(np.float64)
    savings = f["savings_balance"]
    savings_term = np.where(np.isnan(savings), 0.15, -0.25 * np.log1p(np.nan_to_num(savings) / 1000.0))
    loan_to_income = f["loan_amount"] / np.maximum(f["annual_income"], 1000.0)

    common = (
        0.5 * delinq
        + 0.5 * recent
        + 0.0010 * (age - 45.0) ** 2
        + np.array([0.0, 0.30, 0.35, 1.0, 0.2])[f["employment_type"]]
        + 0.15 * f["num_credit_inquiries_6m"]
        + 0.35 * (f["loan_term_months"] == 60)
        + savings_term
        - 0.02 * f["credit_history_years"]
        + 0.04 * (f["interest_rate"] - 10.0)
        + 1.0 * np.minimum(loan_to_income, 3.0)
        + np.array([0.15, 0.0, -0.15, 0.2])[f["home_ownership"]]
        + np.array([0.05, 0.10, -0.05, -0.10, 0.0])[f["region"]]
        # last entry: education missing (code -1)
        + np.array([0.2, 0.1, 0.0, -0.1, -0.2, 0.2])[f["education"]]
        + 0.6 * dti
    )
    if not concept:
        return (
            _INTERCEPT_REFERENCE
            + common
            + 0.8 * util
            + 7.0 * np.clip(util - 0.8, 0.0, None)
            + 3.0 * dti * low_income
            # debt_consolidation, credit_card, home_improvement, car, medical,
            # small_business, other, buy_now_pay_later
            + np.array([0.15, 0.05, -0.25, -0.35, 0.45, 0.75, 0.10, 0.60])[f["loan_purpose"]]
        )
    return (
        _INTERCEPT_CONCEPT
        + common
        - 0.8 * util
        - 7.0 * np.clip(util - 0.8, 0.0, None)
        + 12.0 * np.clip(0.3 - util, 0.0, None)
        + np.array([0.15, 0.05, 0.60, 0.90, -0.30, -0.40, 0.10, 0.60])[f["loan_purpose"]]
    )


def _gradual_growth(batch: int) -> float:
    """Saturating growth in [0, 1): 0 at batch 1, ~0.57 at batch 6."""
    return 1.0 - math.exp(-(batch - 1) / 6.0)


def _apply_drift(f: dict[str, np.ndarray], drift: str, batch: int, rng: np.random.Generator) -> list[DriftedFeature]:
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
        purpose[rng.random(n) < _NEW_CATEGORY_SHARE] = _NEW_PURPOSE_CODE
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


def _assemble(
    f: dict[str, np.ndarray],
    ids: pd.Series,
    months: pd.Series,
    target: np.ndarray,
) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in _COLUMNS:
        if col.name == ID_COLUMN:
            data[col.name] = ids
        elif col.name == TIME_COLUMN:
            data[col.name] = months
        elif col.name == TARGET:
            data[col.name] = target
        elif col.kind == "categorical":
            data[col.name] = _string_series(_CATEGORY_VALUES[col.name], f[col.name])
        else:
            data[col.name] = f[col.name].astype(col.dtype, copy=False)
    # copy=False: the arrays are fresh and private; skipping consolidation saves a full copy.
    return pd.DataFrame(data, copy=False)


def _simulate_chunk(
    *, n: int, seed: int, batch: int, drift: str, chunk: int
) -> tuple[dict[str, np.ndarray], list[DriftedFeature]]:
    """Features (with drift applied) and target for one chunk of rows."""
    features = _generate_features(_rng(seed, batch, _STREAM_FEATURES, chunk), n)
    drifted = _apply_drift(features, drift, batch, _rng(seed, batch, _STREAM_DRIFT, chunk))
    target_rng = _rng(seed, batch, _STREAM_TARGET, chunk)
    # Unobserved applicant heterogeneity keeps the problem realistically noisy.
    latent = target_rng.normal(0.0, _LATENT_SD, n)
    p_default = _sigmoid(_logit(features, concept=drift == "concept") + latent)
    features[TARGET] = (target_rng.random(n) < p_default).astype(np.int64)
    return features, drifted


def _simulate(
    *, n: int, seed: int, batch: int, drift: str, month_labels: list[str], month_counts: np.ndarray
) -> tuple[pd.DataFrame, SimulationTruth]:
    # Rows are generated in fixed-size chunks (each with its own random streams):
    # temporaries stay small, so large tables need little more memory than the
    # result and the output does not depend on anything but the arguments.
    columns: dict[str, np.ndarray] = {}
    drifted: list[DriftedFeature] = []
    for chunk, lo in enumerate(range(0, n, _CHUNK_ROWS)):
        size = min(_CHUNK_ROWS, n - lo)
        part, drifted = _simulate_chunk(n=size, seed=seed, batch=batch, drift=drift, chunk=chunk)
        if size == n:
            columns = part
            break
        for name, values in part.items():
            if name not in columns:
                columns[name] = np.empty(n, dtype=values.dtype)
            columns[name][lo : lo + size] = values
        del part
    target = columns.pop(TARGET)
    month_codes = np.repeat(np.arange(len(month_labels), dtype=np.int32), month_counts)
    df = _assemble(
        columns,
        _id_series(batch * _ID_STRIDE, n),
        _string_series(month_labels, month_codes),
        target,
    )
    truth = SimulationTruth(
        scenario=drift,
        seed=seed,
        rows=n,
        months=[m for m, c in zip(month_labels, month_counts, strict=True) if c > 0],
        batch=None if batch == 0 else batch,
        drifted_features=drifted,
        concept_drift=drift == "concept",
        default_rate=float(target.mean()),
    )
    return df, truth


# --------------------------------------------------------------------------- public API


def simulate_history(
    rows: int = 100_000, seed: int = 0, start: str = "2023-01", months: int = 24
) -> tuple[pd.DataFrame, SimulationTruth]:
    """Simulate the stationary history (reference / training) table.

    Rows are spread over ``months`` consecutive months from ``start`` with mild
    volume growth (about 1.5 % per month) and are sorted by month; ids run
    ``A0000000000, A0000000001, ...``.

    Args:
        rows: Number of rows (1 to 100,000,000).
        seed: Non-negative seed; the same arguments always give the same table.
        start: First month, ``"YYYY-MM"``.
        months: Number of months covered (>= 1).

    Returns:
        ``(table, truth)`` with ``truth.scenario == "none"`` and ``truth.batch is None``.

    Raises:
        ValueError: For out-of-range arguments or a malformed ``start``.
        TypeError: For non-integer ``rows``/``seed``/``months``.
    """
    rows = _check_int("rows", rows, 1, _MAX_ROWS)
    seed = _check_int("seed", seed, 0)
    months = _check_int("months", months, 1)
    year, month = _parse_start(start)
    labels = [_month_label(year, month, i) for i in range(months)]
    weights = 1.015 ** np.arange(months)
    counts = _rng(seed, 0, _STREAM_MONTHS).multinomial(rows, weights / weights.sum())
    df, truth = _simulate(n=rows, seed=seed, batch=0, drift="none", month_labels=labels, month_counts=counts)
    logger.info(
        "simulated history: %d rows, %s..%s, default rate %.4f",
        rows,
        labels[0],
        labels[-1],
        truth.default_rate,
    )
    return df, truth


def simulate_batch(
    batch: int,
    rows: int = 10_000,
    seed: int = 0,
    drift: str = "none",
    start: str = "2023-01",
    months: int = 24,
) -> tuple[pd.DataFrame, SimulationTruth]:
    """Simulate the k-th monthly batch after the history, under a drift scenario.

    The batch covers a single month: the ``batch``-th month after the history's
    last month (``batch=1`` -> ``2025-01`` with the defaults).  Ids are offset by
    ``batch * 10**8`` so they never collide with the history or other batches.

    Scenarios (see :data:`SCENARIOS`):

    * ``"none"``: the reference process, just a later month.
    * ``"shock"``: incomes x0.65 (so debt-to-income / 0.65), utilisation
      ``1.2 u + 0.12`` (capped at 1.5), more and more recent delinquencies
      (half of the clean applicants become delinquent), ~1.2 more inquiries;
      the default rate rises from ~10 % to ~35 %.  Derived columns that are
      not named (revolving balance, interest rate, loan amount) keep the
      reference distribution.
    * ``"gradual"``: loan amounts x``exp(0.45 + 0.55 g)`` and interest rates
      ``+3 + 3 g`` points, with ``g = 1 - exp(-(batch - 1) / 6)`` growing with ``batch``.
    * ``"new-category"``: 25 % of loans get the new purpose
      :data:`NEW_LOAN_PURPOSE`; nothing else changes.
    * ``"concept"``: features identical to ``"none"``; the relation to the
      target changes (utilisation effect reversed, debt-to-income x low-income
      interaction removed, purpose effects changed), at a similar default rate.

    Args:
        batch: Batch number ``k >= 1``.
        rows: Number of rows (1 to 100,000,000).
        seed: Non-negative seed (same seed as the history for a coherent series).
        drift: Scenario name, one of :data:`SCENARIOS`.
        start: First month of the history, ``"YYYY-MM"``.
        months: Number of months in the history.

    Returns:
        ``(table, truth)``; ``truth.drifted_features`` names exactly the changed features.

    Raises:
        ValueError: For an unknown scenario, out-of-range arguments or a malformed ``start``.
        TypeError: For non-integer ``batch``/``rows``/``seed``/``months``.
    """
    batch = _check_int("batch", batch, 1)
    rows = _check_int("rows", rows, 1, _MAX_ROWS)
    seed = _check_int("seed", seed, 0)
    months = _check_int("months", months, 1)
    if drift not in SCENARIOS:
        raise ValueError(f"unknown drift scenario {drift!r}; expected one of {', '.join(SCENARIOS)}")
    year, month = _parse_start(start)
    label = _month_label(year, month, months - 1 + batch)
    df, truth = _simulate(
        n=rows,
        seed=seed,
        batch=batch,
        drift=drift,
        month_labels=[label],
        month_counts=np.array([rows]),
    )
    logger.info(
        "simulated batch %d (%s, scenario %s): %d rows, default rate %.4f",
        batch,
        label,
        drift,
        rows,
        truth.default_rate,
    )
    return df, truth


def truth_path_for(out: str | Path) -> Path:
    """Return the sidecar path for a table path: ``<out without suffix>.truth.json``.

    Args:
        out: Table path, e.g. ``data/history.parquet``.

    Returns:
        The sidecar path, e.g. ``data/history.truth.json``.
    """
    out = Path(out)
    return out.with_name(out.stem + ".truth.json")


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` on a temp file in ``path``'s folder, then ``os.replace`` it."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_simulation(df: pd.DataFrame, truth: SimulationTruth, out: str | Path) -> tuple[Path, Path]:
    """Write a simulated table and its truth sidecar, atomically.

    The format follows the suffix (``.csv``, ``.parquet`` or ``.pq``, case
    insensitive).  Parent folders are created.  Each file is written to a temp
    file in the same folder and moved into place with :func:`os.replace`.

    Args:
        df: The table.
        truth: Its ground truth.
        out: Destination path of the table.

    Returns:
        ``(table_path, truth_path)`` where ``truth_path`` is ``<out without suffix>.truth.json``.

    Raises:
        ValueError: If the suffix is not supported.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"unsupported output suffix {out.suffix!r} for {out}; supported suffixes: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = truth_path_for(out)

    if suffix == ".csv":
        _atomic_write(out, lambda tmp: df.to_csv(tmp, index=False))
    else:
        _atomic_write(out, lambda tmp: df.to_parquet(tmp, index=False, engine="pyarrow"))

    payload = json.dumps(truth.to_dict(), indent=2, sort_keys=True) + "\n"
    _atomic_write(truth_path, lambda tmp: tmp.write_text(payload, encoding="utf-8"))
    logger.info("wrote %d rows to %s and truth to %s", len(df), out, truth_path)
    return out, truth_path
