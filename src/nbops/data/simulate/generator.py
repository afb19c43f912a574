"""The generating process: seeded random streams, features, the nonlinear default probability,
and the table assembled from chunks."""

from __future__ import annotations

import re
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbops.data.simulate.catalogue import CATEGORY_VALUES, COLUMNS, ID_COLUMN, TARGET, TIME_COLUMN
from nbops.data.simulate.scenarios import apply_drift
from nbops.data.simulate.truth import DriftedFeature, SimulationTruth

MAX_ROWS: Final = 100_000_000  # id space per table: ids are ``batch * 10**8 + row``
_ID_STRIDE: Final = 100_000_000
_ID_DIGITS: Final = 10
CHUNK_ROWS: Final = 1 << 20  # rows generated per chunk (bounds temporary memory)
_START_RE: Final = re.compile(r"^(\d{4})-(\d{2})$")

# Random stream tags (combined with seed and batch number).
_STREAM_FEATURES: Final = 0
_STREAM_DRIFT: Final = 1
_STREAM_TARGET: Final = 2
STREAM_MONTHS: Final = 3

# Intercepts calibrated offline (2M rows, incl. the latent term) so the default rate is ~10 %.
_LATENT_SD: Final = 0.6
_INTERCEPT_REFERENCE: Final = -4.328
_INTERCEPT_CONCEPT: Final = -3.928


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def random_stream(seed: int, batch: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, batch, stream, chunk]))


def _draw_codes(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """Draw category codes from one probability vector."""
    cum = np.cumsum(probs / probs.sum())
    codes = np.searchsorted(cum, rng.random(n), side="right")
    return np.minimum(codes, len(probs) - 1).astype(np.int8)


def _draw_grouped_codes(rng: np.random.Generator, groups: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Draw category codes whose probabilities depend on a small group index."""
    n = int(groups.shape[0])
    u = rng.random(n)
    codes = np.empty(n, dtype=np.int8)
    for g in range(table.shape[0]):
        mask = groups == g
        cum = np.cumsum(table[g] / table[g].sum())
        codes[mask] = np.minimum(np.searchsorted(cum, u[mask], side="right"), table.shape[1] - 1)
    return codes


def parse_start(start: str) -> tuple[int, int]:
    match = _START_RE.match(start) if isinstance(start, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"start must be a 'YYYY-MM' string, got {start!r}")
    return int(match.group(1)), int(match.group(2))


def month_label(year: int, month: int, offset: int) -> str:
    index = year * 12 + (month - 1) + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
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

    credit_years: np.ndarray = years * rng.beta(2.2, 1.4, n) + rng.uniform(0.0, 2.0, n)
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

    util: np.ndarray = rng.beta(1.3 + 0.9 * any_delinq + 0.4 * (inquiries >= 3), 2.6) * 1.25
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

    common: np.ndarray = (
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
        reference: np.ndarray = (
            _INTERCEPT_REFERENCE
            + common
            + 0.8 * util
            + 7.0 * np.clip(util - 0.8, 0.0, None)
            + 3.0 * dti * low_income
            # debt_consolidation, credit_card, home_improvement, car, medical,
            # small_business, other, buy_now_pay_later
            + np.array([0.15, 0.05, -0.25, -0.35, 0.45, 0.75, 0.10, 0.60])[f["loan_purpose"]]
        )
        return reference
    changed: np.ndarray = (
        _INTERCEPT_CONCEPT
        + common
        - 0.8 * util
        - 7.0 * np.clip(util - 0.8, 0.0, None)
        + 12.0 * np.clip(0.3 - util, 0.0, None)
        + np.array([0.15, 0.05, 0.60, 0.90, -0.30, -0.40, 0.10, 0.60])[f["loan_purpose"]]
    )
    return changed


def _assemble(
    f: dict[str, np.ndarray],
    ids: pd.Series,
    months: pd.Series,
    target: np.ndarray,
) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in COLUMNS:
        if col.name == ID_COLUMN:
            data[col.name] = ids
        elif col.name == TIME_COLUMN:
            data[col.name] = months
        elif col.name == TARGET:
            data[col.name] = target
        elif col.kind == "categorical":
            data[col.name] = _string_series(CATEGORY_VALUES[col.name], f[col.name])
        else:
            data[col.name] = f[col.name].astype(col.dtype, copy=False)
    # copy=False: the arrays are fresh and private; skipping consolidation saves a full copy.
    return pd.DataFrame(data, copy=False)


def _simulate_chunk(
    *, n: int, seed: int, batch: int, drift: str, chunk: int
) -> tuple[dict[str, np.ndarray], list[DriftedFeature]]:
    """Features (with drift applied) and target for one chunk of rows."""
    features = _generate_features(random_stream(seed, batch, _STREAM_FEATURES, chunk), n)
    drifted = apply_drift(features, drift, batch, random_stream(seed, batch, _STREAM_DRIFT, chunk))
    target_rng = random_stream(seed, batch, _STREAM_TARGET, chunk)
    # Unobserved applicant heterogeneity keeps the problem realistically noisy.
    latent = target_rng.normal(0.0, _LATENT_SD, n)
    p_default = _sigmoid(_logit(features, concept=drift == "concept") + latent)
    features[TARGET] = (target_rng.random(n) < p_default).astype(np.int64)
    return features, drifted


def simulate(
    *, n: int, seed: int, batch: int, drift: str, month_labels: list[str], month_counts: np.ndarray
) -> tuple[pd.DataFrame, SimulationTruth]:
    # Rows are generated in fixed-size chunks (each with its own random streams):
    # temporaries stay small, so large tables need little more memory than the
    # result and the output does not depend on anything but the arguments.
    columns: dict[str, np.ndarray] = {}
    drifted: list[DriftedFeature] = []
    for chunk, lo in enumerate(range(0, n, CHUNK_ROWS)):
        size = min(CHUNK_ROWS, n - lo)
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
