"""The API docs' example record, built from a reference profile (fast: no server, no wheel).

The end-to-end checks (the example in /openapi.json of the installed wheel, POSTed and scored, and
Swagger UI's "Try it out" in Chromium) are in test_api.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbops.monitoring.profile import build_reference_profile
from nbops.runtime.schema import FieldSpec, InputSchema
from nbops.runtime.serve import example_record

SCHEMA = InputSchema(
    [
        FieldSpec("age", "numeric", nullable=False, min=18.0, max=100.0),
        FieldSpec("ratio", "numeric", nullable=True),
        FieldSpec("income", "numeric", nullable=False, min=0.0),
        FieldSpec("region", "categorical", nullable=False, categories=["north", "south", "east"]),
        FieldSpec("channel", "categorical", nullable=True),  # levels known only to the transform
    ],
    passthrough=["customer_id", "month"],
)
LEVELS = {"region": ["east", "north", "south"], "channel": ["app", "branch", "web"]}


def training_rows(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0, 1, n)
    ratio[rng.random(n) < 0.3] = np.nan  # missing values are not part of the median
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "ratio": ratio,
            "income": rng.lognormal(10, 0.5, n),
            "region": rng.choice(["north", "south", "east"], n, p=[0.2, 0.5, 0.3]),
            "channel": rng.choice(["app", "branch", "web"], n, p=[0.1, 0.3, 0.6]),
        }
    )


def test_the_example_is_each_features_median_or_most_frequent_level() -> None:
    rows = training_rows()
    profile = build_reference_profile(rows, ["age", "ratio", "income"], ["region", "channel"]).to_dict()
    record = example_record(SCHEMA, profile, LEVELS)
    assert record is not None
    assert list(record) == SCHEMA.names, "only the features, none of the pass-through identifiers"
    assert isinstance(record["age"], int) and abs(record["age"] - rows["age"].median()) <= 0.5
    for name in ("ratio", "income"):
        median = rows[name].median()
        assert abs(record[name] - median) <= 1e-5 * abs(median), (name, record[name], median)
    assert record["region"] == rows["region"].value_counts().idxmax()
    assert record["channel"] == rows["channel"].value_counts().idxmax()
    SCHEMA.check_records([record])  # the record the docs show is one the API accepts


def test_without_a_profile_the_example_still_passes_the_schema() -> None:
    record = example_record(SCHEMA, None, LEVELS)
    assert record is not None
    assert record["age"] == 59 and record["region"] == "north" and record["channel"] == "app"
    SCHEMA.check_records([record])


def test_a_level_the_schema_no_longer_allows_is_not_shown() -> None:
    rows = training_rows()
    rows.loc[: len(rows) * 3 // 4, "region"] = "west"  # most frequent in training, not allowed now
    profile = build_reference_profile(rows, ["age", "ratio", "income"], ["region", "channel"]).to_dict()
    record = example_record(SCHEMA, profile, LEVELS)
    assert record is not None and record["region"] != "west"
    SCHEMA.check_records([record])


def test_a_median_outside_the_declared_range_is_clipped_into_it() -> None:
    rows = training_rows().assign(age=17)  # below the schema's minimum of 18
    profile = build_reference_profile(rows, ["age", "ratio", "income"], ["region", "channel"]).to_dict()
    record = example_record(SCHEMA, profile, LEVELS)
    assert record is not None and record["age"] == 18


def test_no_example_when_no_valid_record_can_be_built() -> None:
    schema = InputSchema([FieldSpec("kind", "categorical", nullable=False, categories=[])])
    assert example_record(schema, None, {}) is None
