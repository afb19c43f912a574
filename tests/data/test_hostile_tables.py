"""Tables as users really have them (issue 12): a row index saved with the CSV, infinite targets,
list and struct columns, column names LightGBM refuses."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.data.io import read_table
from nbops.data.profile import profile_table
from nbops.data.schema import infer_schema, infer_task_type, looks_like_row_index
from nbops.data.validate import validate_table
from nbops.modeling.train import lightgbm_feature_names


def houses(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"sqft": rng.normal(1500, 300, n), "rooms": rng.integers(1, 6, n), "hood": rng.choice(list("abc"), n)}
    )
    df["price"] = df["sqft"] * 100 + df["rooms"] * 5000 + rng.normal(0, 1e4, n)
    return df


def test_a_csv_saved_with_its_row_index_marks_the_index_as_an_id(tmp_path: Path) -> None:
    houses().to_csv(tmp_path / "houses.csv")  # pandas' default: index=True, a blank first header
    df = read_table(tmp_path / "houses.csv")
    assert df.columns[0] == "Unnamed: 0"
    schema = infer_schema(df, dataset="houses", target="price", file="houses.csv")
    index = schema.column("Unnamed: 0")
    assert index.role == "id" and "Unnamed: 0" not in [c.name for c in schema.features]
    assert any("'Unnamed: 0' is a row number written with the table" in note for note in schema.notes)


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("Unnamed: 0", [0, 1, 2, 3], True),
        ("", [1, 2, 3, 4], True),  # R's write.csv
        ("index", [0, 1, 2, 3], True),
        ("Unnamed: 0", [0, 2, 4, 6], False),  # not consecutive: data, not a row number
        ("rooms", [0, 1, 2, 3], False),  # a real column's name
        ("Unnamed: 3", ["a", "b", "c", "d"], False),
    ],
)
def test_what_counts_as_a_row_index(name: str, values: list, expected: bool) -> None:
    assert looks_like_row_index(name, pd.Series(values)) is expected


def test_an_infinite_target_is_quarantined_with_its_reason_and_never_decides_the_task() -> None:
    df = houses()
    df.loc[[5, 9], "price"] = [np.inf, -np.inf]
    assert infer_task_type(df["price"], file="t", column="price")[0] == "regression"
    schema = infer_schema(df, dataset="houses", target="price", file="t")
    result = validate_table(df, schema, file="t")
    assert len(result.valid) == len(df) - 2 and result.n_quarantined == 2
    reasons = " ".join(result.quarantine.astype(str).stack().tolist())
    assert "price: inf is not a finite number" in reasons and "price: -inf is not a finite number" in reasons
    assert np.isfinite(result.valid["price"]).all()


def test_list_and_struct_columns_are_ignored_with_a_note_and_the_profile_works(tmp_path: Path) -> None:
    df = houses(60)
    df["tags"] = [["new", "garden"] if i % 2 else ["old"] for i in range(len(df))]
    df["agent"] = [{"name": "x", "office": i % 3} for i in range(len(df))]
    df.to_parquet(tmp_path / "houses.parquet")
    df = read_table(tmp_path / "houses.parquet")
    schema = infer_schema(df, dataset="houses", target="price", file="houses.parquet")
    assert schema.column("tags").role == "ignore" and schema.column("agent").role == "ignore"
    assert sum("holds lists or records" in n for n in schema.notes) == 2
    result = validate_table(df, schema, file="houses.parquet")
    profile = profile_table(result.valid, schema)
    assert profile["rows"] == len(df)


def test_names_lightgbm_refuses_are_made_safe_unique_and_train() -> None:
    names = ["a,b", "Unnamed: 0", "<img src=x onerror=alert(2)>", "a b", "a_b", "x`y", '{"k": [1]}']
    safe = lightgbm_feature_names(names)
    assert safe == ["a_b", "Unnamed_0", "img_src_x_onerror_alert_2", "a_b_2", "a_b_3", "x_y", "k_1"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, len(names)))
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, y, feature_name=safe), 5)
    assert booster.feature_name() == safe
