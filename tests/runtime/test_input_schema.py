"""The input contract's pass-through fields: a scalar or null, as the API documents them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.schema import FieldSpec, InputError, InputSchema, known_categories

SCHEMA = InputSchema(
    fields=[FieldSpec("age", "numeric", nullable=False, min=18, max=100), FieldSpec("region", "categorical")],
    passthrough=["application_id", "month"],
)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


# Every kind of value a pass-through field may hold (a DataFrame row as a dict adds timestamps and numpy scalars).
ACCEPTED = ["A-17", 17, 17.5, None, float("nan"), 10**400, pd.Timestamp("2024-03-01"), np.int64(3)]


@pytest.mark.parametrize(
    "value",
    [nested(900), {"a": 1}, [1, 2], [], True, False, b"bytes", np.array([1, 2])],
    ids=["object-900-deep", "object", "list", "empty-list", "true", "false", "bytes", "array"],
)
def test_a_pass_through_field_that_is_not_text_a_number_or_null_is_refused_naming_it(value: Any) -> None:
    records = [{"age": 30, "region": "north", "application_id": v, "month": v} for v in ACCEPTED]
    records.insert(1, {"age": 30, "region": "north", "application_id": "A1", "month": None})
    records[1]["application_id"] = value
    with pytest.raises(InputError) as caught:
        SCHEMA.check_records(records)
    assert [(p.record, p.field) for p in caught.value.problems] == [(1, "application_id")], caught.value.problems
    assert "application_id" in str(caught.value) and "text, a number or null" in str(caught.value)


@pytest.mark.parametrize(
    "dtype",
    [pd.StringDtype("pyarrow", na_value=np.nan), pd.StringDtype("pyarrow"), "string[python]", object, "category"],
)
def test_known_categories_agree_with_text_membership_on_every_text_kind(dtype):
    values = pd.Series(["north", None, "atlantis", "south", "north"], dtype=dtype)
    expected = values.astype("string").isin(["north", "south"]).fillna(False).to_numpy(dtype=bool)
    np.testing.assert_array_equal(known_categories(values, ["north", "south"]), expected)


def test_a_parquet_batch_names_its_unseen_category_and_bad_number(tmp_path):
    schema = InputSchema(
        [FieldSpec("region", "categorical", categories=["north", "south"]), FieldSpec("income", "numeric")]
    )
    frame = pd.DataFrame({"region": ["north"] * 5 + ["atlantis"], "income": ["1", "2", "3", "4", "x", "6"]})
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    read = pd.read_parquet(tmp_path / "batch.parquet")
    assert read["region"].dtype.storage == "pyarrow"
    with pytest.raises(InputError) as caught:
        schema.check_frame(read, first_row=100)
    assert [str(p) for p in caught.value.problems] == [
        "record 105, field 'region': unseen category 'atlantis'; expected one of north, south",
        "record 104, field 'income': expected a number, found 'x'",
    ]
