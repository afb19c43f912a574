"""validate_table: bad rows are quarantined with a reason, never dropped; bad tables raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.data.schema import ColumnSpec, TableSchema
from nbops.data.validate import REASON_COLUMN, ROW_COLUMN, validate_table
from nbops.errors import DataError

FILE = "data/loans.csv"


def _schema(**target) -> TableSchema:
    return TableSchema(
        dataset="loans",
        target="y",
        task_type=target.get("task_type", "binary"),
        positive_class=target.get("positive_class"),
        time_column="month",
        columns=[
            ColumnSpec("email", "text", "pii"),
            ColumnSpec("month", "time", "time", nullable=False),
            ColumnSpec("income", "numeric", "feature", nullable=True, min=0.0, max=1000.0),
            ColumnSpec("grade", "categorical", "feature", nullable=False, categories=["A", "B", "C"]),
            ColumnSpec("y", target.get("target_kind", "numeric"), "target", nullable=False),
        ],
    )


def _clean(n: int = 12) -> pd.DataFrame:
    """A clean raw table (text, as read from CSV)."""
    return pd.DataFrame(
        {
            "email": [f"person{i}@example.com" for i in range(n)],
            "month": [f"2024-{i % 12 + 1:02d}" for i in range(n)],
            "income": [f"{10 * i + 0.5}" for i in range(n)],
            "grade": [["A", "B", "C"][i % 3] for i in range(n)],
            "y": [str(i % 2) for i in range(n)],
        }
    )


def _quarantined(result, row: int) -> pd.Series:
    """The quarantine record of 1-based input row ``row``."""
    match = result.quarantine[result.quarantine[ROW_COLUMN] == row]
    assert len(match) == 1, f"row {row} is quarantined {len(match)} times"
    return match.iloc[0]


def test_clean_table_is_all_valid_and_typed():
    raw = _clean()
    result = validate_table(raw, _schema(), file=FILE)
    assert result.n_rows == len(raw)
    assert result.n_quarantined == 0
    assert len(result.valid) == len(raw)
    assert pd.api.types.is_float_dtype(result.valid["income"])
    np.testing.assert_allclose(result.valid["income"], raw["income"].astype(float))
    assert pd.api.types.is_datetime64_any_dtype(result.valid["month"])
    assert result.valid["grade"].tolist() == raw["grade"].tolist()
    np.testing.assert_array_equal(result.valid["y"].to_numpy(float), raw["y"].astype(float).to_numpy())
    assert result.reasons.empty


@pytest.mark.parametrize(
    ("column", "bad", "words"),
    [
        ("income", "12,5", "is not a number"),
        ("income", "-3", "below the minimum 0"),
        ("income", "1500", "above the maximum 1000"),
        ("grade", "Z", "unseen category"),
        ("grade", None, "nullable: false"),
        ("month", "2024-13", "is not a date"),
        ("month", None, "nullable: false"),
        ("y", None, "target is missing"),
        ("y", "2", "is not one of the two classes"),
    ],
)
def test_each_bad_value_is_quarantined_with_a_reason(column, bad, words):
    raw = _clean()
    position = 4  # 0-based position, so row 5 in the file's data rows
    original = raw.loc[position].copy()
    raw.loc[position, column] = bad
    result = validate_table(raw, _schema(), file=FILE)
    assert result.n_quarantined == 1
    assert len(result.valid) == len(raw) - 1
    record = _quarantined(result, position + 1)
    reason = record[REASON_COLUMN]
    assert reason.startswith(f"{column}:")
    assert words in reason
    if bad is not None:
        assert bad in reason  # the value as written
    # The quarantined row keeps its original values, including the cell that was bad.
    for name in raw.columns:
        expected = raw.loc[position, name]
        assert (pd.isna(record[name]) and pd.isna(expected)) or record[name] == expected
    # The other rows are all valid and keep their order.
    kept = raw.drop(index=position)["income"].astype(float).to_numpy()
    if column != "income":
        np.testing.assert_allclose(result.valid["income"].to_numpy(), kept)
    assert original["email"] not in result.valid.to_numpy().astype(str)


def test_row_numbers_are_one_based_input_positions_and_reasons_are_joined():
    raw = _clean(20)
    raw.loc[0, "income"] = "abc"
    raw.loc[7, "grade"] = "D"
    raw.loc[7, "income"] = "-1"
    raw.loc[19, "y"] = None
    result = validate_table(raw, _schema(), file=FILE)
    assert result.quarantine[ROW_COLUMN].tolist() == [1, 8, 20]
    both = _quarantined(result, 8)[REASON_COLUMN]
    assert "income: -1" in both and "grade: unseen category 'D'" in both and "; " in both
    summary = result.reasons
    assert set(summary["column"]) == {"income", "grade", "y"}
    assert summary["rows"].sum() == 4  # one problem per bad cell
    assert summary.loc[summary["column"] == "y", "first_rows"].item() == "20"


def test_row_numbers_do_not_depend_on_the_frame_index():
    raw = _clean(10)
    raw.index = range(100, 110)
    raw.loc[103, "income"] = "n/a"
    result = validate_table(raw, _schema(), file=FILE)
    assert result.quarantine[ROW_COLUMN].tolist() == [4]


def test_pii_columns_are_absent_from_the_valid_rows():
    raw = _clean()
    result = validate_table(raw, _schema(), file=FILE)
    assert "email" not in result.valid.columns
    assert list(result.valid.columns) == ["month", "income", "grade", "y"]


def test_string_labels_map_the_positive_class_to_one():
    raw = _clean().assign(y=["yes" if i % 3 == 0 else "no" for i in range(12)])
    result = validate_table(raw, _schema(positive_class="yes", target_kind="categorical"), file=FILE)
    expected = (raw["y"] == "yes").astype(float).to_numpy()
    np.testing.assert_array_equal(result.valid["y"].to_numpy(float), expected)


def test_a_stray_label_is_quarantined_not_the_real_negative_class():
    labels = ["maybe"] + ["no" if i % 3 else "yes" for i in range(1, 12)]
    raw = _clean().assign(y=labels)
    result = validate_table(raw, _schema(positive_class="yes", target_kind="categorical"), file=FILE)
    assert result.quarantine[ROW_COLUMN].tolist() == [1]
    assert "'maybe'" in result.quarantine[REASON_COLUMN].iloc[0]


def test_typed_parquet_columns_are_validated_too():
    raw = _clean()
    raw["income"] = raw["income"].astype(float)
    raw["y"] = raw["y"].astype(int)
    raw.loc[2, "income"] = -5.0
    result = validate_table(raw, _schema(), file="loans.parquet")
    assert result.quarantine[ROW_COLUMN].tolist() == [3]
    assert "below the minimum" in result.quarantine[REASON_COLUMN].iloc[0]


# --- problems with the whole table -------------------------------------------------------------


def test_missing_target_column_is_refused():
    raw = _clean().drop(columns="y")
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file=FILE)
    assert (info.value.file, info.value.column) == (FILE, "y")
    assert "target column is missing" in str(info.value)


def test_missing_declared_column_is_refused():
    raw = _clean().drop(columns="grade")
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file=FILE)
    assert (info.value.file, info.value.column) == (FILE, "grade")


def test_undeclared_extra_column_is_refused():
    raw = _clean().assign(surprise="x")
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file=FILE)
    assert (info.value.file, info.value.column) == (FILE, "surprise")
    assert "does not declare" in str(info.value)


def test_all_null_feature_column_is_refused():
    raw = _clean().assign(income=None)
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file=FILE)
    assert (info.value.file, info.value.column) == (FILE, "income")
    assert "entirely empty" in str(info.value)


def test_all_null_pii_column_is_fine():
    raw = _clean().assign(email=None)
    assert validate_table(raw, _schema(), file=FILE).n_quarantined == 0


def test_single_class_among_valid_rows_is_refused():
    raw = _clean()
    # Every row with y=1 is bad, so the valid rows hold only y=0.
    raw.loc[raw["y"] == "1", "income"] = "oops"
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file=FILE)
    assert (info.value.file, info.value.column) == (FILE, "y")
    assert "single class" in str(info.value)


def test_regression_target_must_be_numeric():
    raw = _clean().assign(y=[f"{i * 1.5}" for i in range(12)])
    raw.loc[3, "y"] = "lots"
    result = validate_table(raw, _schema(task_type="regression"), file=FILE)
    assert result.quarantine[ROW_COLUMN].tolist() == [4]
    assert "y: 'lots' is not a number" in result.quarantine[REASON_COLUMN].iloc[0]


# --- property: rows are never lost or duplicated -----------------------------------------------

BAD_CELLS = {
    "income": ["abc", "-1", "2000", "1e9"],
    "grade": ["Z", None, "a"],
    "month": ["never", None, "2024-02-30"],
    "y": [None, "7", "yes"],
}


@st.composite
def tables_with_bad_cells(draw):
    n = draw(st.integers(min_value=2, max_value=60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = pd.DataFrame(
        {
            "email": [f"p{i}@x.org" for i in range(n)],
            "month": [f"2024-{m:02d}-01" for m in rng.integers(1, 13, n)],
            "income": rng.uniform(0, 1000, n).round(2).astype(str),
            "grade": rng.choice(["A", "B", "C"], n),
            "y": ["0", "1"] + list(rng.choice(["0", "1"], n - 2)),
        }
    )
    # Optionally blank some incomes (nullable) and emails (pii): these are not problems.
    for col in ("income", "email"):
        blanks = rng.random(n) < 0.1
        blanks[:2] = False
        raw.loc[blanks, col] = None
    injections = draw(
        st.lists(
            st.tuples(
                st.integers(2, max(2, n - 1)),
                st.sampled_from(sorted(BAD_CELLS)),
                st.integers(0, 10),
            ),
            max_size=n,
        )
    )
    bad_rows = set()
    for pos, col, k in injections:
        if pos >= n:
            continue
        raw.loc[pos, col] = BAD_CELLS[col][k % len(BAD_CELLS[col])]
        bad_rows.add(pos)
    return raw, bad_rows


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables_with_bad_cells())
def test_rows_are_never_lost_or_duplicated(case):
    raw, bad_rows = case
    result = validate_table(raw, _schema(), file=FILE)
    n = len(raw)
    assert len(result.valid) + result.n_quarantined == n
    rows = result.quarantine[ROW_COLUMN].tolist()
    assert rows == sorted(set(rows))  # unique and in input order
    assert set(rows) == {p + 1 for p in bad_rows}
    assert result.quarantine[REASON_COLUMN].notna().all()
    # Quarantined rows carry their original values.
    original = raw.iloc[[r - 1 for r in rows]].astype("string").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        result.quarantine.drop(columns=[ROW_COLUMN, REASON_COLUMN]), original, check_dtype=False
    )
    # Valid rows are exactly the other rows, in order.
    good = [i for i in range(n) if i not in bad_rows]
    np.testing.assert_allclose(
        result.valid["income"].to_numpy(float),
        pd.to_numeric(raw["income"].iloc[good]).to_numpy(float),
    )
    assert result.valid["grade"].tolist() == raw["grade"].iloc[good].tolist()
    assert result.reasons["rows"].sum() >= result.n_quarantined
