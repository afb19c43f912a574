"""The simulated table's columns: names, kinds, ranges and category levels, and its schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

SCENARIOS: Final[tuple[str, ...]] = ("none", "shock", "gradual", "new-category", "concept")
TARGET: Final = "default"
TIME_COLUMN: Final = "month"
ID_COLUMN: Final = "application_id"

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


COLUMNS: Final[tuple[_Column, ...]] = (
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
CATEGORY_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "education": EDUCATION_LEVELS,
    "employment_type": EMPLOYMENT_TYPES,
    "home_ownership": HOME_OWNERSHIP,
    "region": REGIONS,
    "loan_purpose": (*LOAN_PURPOSES, NEW_LOAN_PURPOSE),
}
NEW_PURPOSE_CODE: Final = len(LOAN_PURPOSES)


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
        for c in COLUMNS
    ]
    return {
        "columns": columns,
        "target": TARGET,
        "time_column": TIME_COLUMN,
        "id_column": ID_COLUMN,
    }
