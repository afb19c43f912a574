"""The input contract's pass-through fields: a scalar or null, as the API documents them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.schema import FieldSpec, InputError, InputSchema

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
