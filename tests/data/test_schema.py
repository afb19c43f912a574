"""Task type and schema inference, and the schema file's round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from nbops.data.schema import ColumnSpec, TableSchema, infer_schema, infer_task_type
from nbops.errors import DataError

# --- infer_task_type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        ["0", "1", "1", "0", None],  # CSV text
        [0, 1, 1, 0, 0],  # typed integers
        [0.0, 1.0, 1.0, np.nan],  # float with a missing label
    ],
)
def test_binary_zero_one_needs_no_positive_label(values):
    assert infer_task_type(pd.Series(values), file="f.csv", column="y") == ("binary", None)


def test_binary_string_labels_positive_is_the_rarer_label():
    rng = np.random.default_rng(0)
    labels = rng.choice(["good", "bad"], size=200, p=[0.8, 0.2])
    counts = pd.Series(labels).value_counts()
    rarer = counts.idxmin()
    assert counts[rarer] < counts.max()  # the example really has a rarer label
    assert infer_task_type(pd.Series(labels), file="f.csv", column="y") == ("binary", rarer)
    # And the same when the rarer label is the other one.
    flipped = np.where(labels == "good", "bad", "good")
    other = "good" if rarer == "bad" else "bad"
    assert infer_task_type(pd.Series(flipped), file="f.csv", column="y") == ("binary", other)


def test_regression_for_a_numeric_target_with_many_values():
    y = pd.Series(np.random.default_rng(1).normal(100, 15, 300).round(3).astype(str))
    assert infer_task_type(y, file="f.csv", column="price") == ("regression", None)


@pytest.mark.parametrize("values", [["1", "1", "1"], ["yes", "yes", None]])
def test_single_class_target_is_refused(values):
    with pytest.raises(DataError) as info:
        infer_task_type(pd.Series(values), file="f.csv", column="y")
    assert info.value.column == "y"
    assert info.value.file == "f.csv"
    assert "single class" in str(info.value)


def test_target_without_values_is_refused():
    with pytest.raises(DataError) as info:
        infer_task_type(pd.Series([None, None], dtype=object), file="f.csv", column="y")
    assert info.value.column == "y"


# --- infer_schema ------------------------------------------------------------------------------


def _raw(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A raw table as read from CSV: every column text."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_email": [f"user{i}@example.com" for i in range(n)],
            "ref": [f"R{i:05d}" for i in range(n)],
            "month": [f"2023-{i % 12 + 1:02d}" for i in range(n)],
            "income": rng.uniform(0, 1000, n).round(2).astype(str),
            "balance_change": rng.normal(0, 10, n).round(2).astype(str),
            "grade": rng.choice(["B", "A", "C"], n),
            "y": np.resize(["0", "1"], n),
        }
    )


def test_infer_schema_roles_and_kinds():
    df = _raw()
    schema = infer_schema(df, dataset="loans", target="y", file="loans.csv")
    assert schema.names == list(df.columns)
    spec = {c.name: c for c in schema.columns}
    assert (spec["customer_email"].kind, spec["customer_email"].role) == ("text", "pii")
    assert (spec["ref"].kind, spec["ref"].role) == ("text", "id")
    assert (spec["month"].kind, spec["month"].role) == ("time", "time")
    assert schema.time_column == "month"
    assert (spec["income"].kind, spec["income"].role) == ("numeric", "feature")
    assert spec["income"].min == 0.0
    assert spec["balance_change"].kind == "numeric"
    assert spec["balance_change"].min is None  # has negative values
    assert (spec["grade"].kind, spec["grade"].role) == ("categorical", "feature")
    assert spec["grade"].categories == ["A", "B", "C"]
    assert spec["y"].role == "target" and spec["y"].nullable is False
    assert schema.task_type == "binary" and schema.positive_class is None
    assert [c.name for c in schema.features] == ["income", "balance_change", "grade"]
    assert schema.private == ["customer_email"]
    assert any("customer_email" in note for note in schema.notes)


@pytest.mark.parametrize("name", ["email", "phone_number", "customer_name", "home_address"])
def test_personal_data_names_are_marked_pii(name):
    df = _raw().rename(columns={"customer_email": name})
    schema = infer_schema(df, dataset="d", target="y")
    assert schema.column(name).role == "pii"


def test_settings_mark_id_and_pii_columns():
    df = _raw().assign(contact=lambda d: d["grade"])
    schema = infer_schema(df, dataset="d", target="y", id_columns=["income"], pii_columns=["contact"])
    assert schema.column("income").role == "id"
    assert schema.column("contact").role == "pii"


def test_all_unique_text_is_id_and_high_cardinality_text_is_ignored():
    n = 400
    df = pd.DataFrame(
        {
            "token": [f"t{i:04d}x" for i in range(n)],  # different on every row
            "comment": [f"word{i % 300}" for i in range(n)],  # 300 levels, repeated
            "y": np.resize(["0", "1"], n),
        }
    )
    schema = infer_schema(df, dataset="d", target="y")
    assert schema.column("token").role == "id"
    assert schema.column("comment").role == "ignore"


@pytest.mark.parametrize("name", ["date", "application_date", "created_at"])
def test_time_like_name_with_dates_is_the_time_column(name):
    df = pd.DataFrame(
        {
            name: pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d"),
            "x": np.arange(60).astype(str),
            "y": np.resize(["0", "1"], 60),
        }
    )
    schema = infer_schema(df, dataset="d", target="y")
    assert schema.time_column == name
    assert schema.column(name).kind == "time"


def test_time_column_none_disables_detection():
    schema = infer_schema(_raw(), dataset="d", target="y", time_column="none")
    assert schema.time_column is None
    assert schema.column("month").role != "time"


def test_numeric_column_min_zero_only_when_non_negative_and_nullable_tracked():
    df = pd.DataFrame(
        {
            "count": ["0", "3", "5", None],
            "signed": ["-1", "3", "5", "2"],
            "y": ["0", "1", "0", "1"],
        }
    )
    schema = infer_schema(df, dataset="d", target="y")
    assert schema.column("count").min == 0.0 and schema.column("count").nullable is True
    assert schema.column("signed").min is None and schema.column("signed").nullable is False


def test_regression_target_is_numeric():
    df = pd.DataFrame({"x": np.arange(50).astype(str), "price": np.linspace(1, 2, 50).astype(str)})
    schema = infer_schema(df, dataset="d", target="price")
    assert schema.task_type == "regression"
    assert schema.column("price").kind == "numeric"


def test_string_binary_target_records_positive_class():
    df = pd.DataFrame({"x": np.arange(40).astype(str), "y": ["no"] * 30 + ["yes"] * 10})
    schema = infer_schema(df, dataset="d", target="y")
    assert (schema.task_type, schema.positive_class) == ("binary", "yes")
    assert schema.column("y").kind == "categorical"


def test_all_null_column_is_refused_naming_it():
    df = _raw().assign(empty=None)
    with pytest.raises(DataError) as info:
        infer_schema(df, dataset="d", target="y", file="loans.csv")
    assert info.value.column == "empty"
    assert info.value.file == "loans.csv"
    assert "entirely empty" in str(info.value)


@pytest.mark.parametrize("setting", ["target", "id_columns", "pii_columns", "time_column"])
def test_setting_naming_a_missing_column_is_refused(setting):
    kwargs = {"target": "y"}
    kwargs[setting] = "nope" if setting in ("target", "time_column") else ["nope"]
    with pytest.raises(DataError) as info:
        infer_schema(_raw(), dataset="d", file="loans.csv", **kwargs)
    assert info.value.column == "nope"
    assert info.value.file == "loans.csv"


# --- the schema file ---------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    schema = infer_schema(_raw(), dataset="loans", target="y", file="loans.csv")
    path = schema.save(tmp_path / "schemas" / "loans.schema.yaml")
    text = path.read_text()
    assert text.startswith("# Schema of 'loans'")
    for note in schema.notes:
        assert f"# note: {note}" in text
    loaded = TableSchema.load(path)
    assert loaded.to_dict() == schema.to_dict()
    assert loaded.columns == schema.columns
    assert [p.name for p in path.parent.iterdir()] == ["loans.schema.yaml"]


def test_load_refuses_an_unknown_role(tmp_path):
    schema = TableSchema("d", "y", "binary", [ColumnSpec("x", "numeric"), ColumnSpec("y", "numeric", "target")])
    raw = schema.to_dict()
    raw["columns"][0]["role"] = "secret"
    path = tmp_path / "d.schema.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError) as info:
        TableSchema.load(path)
    assert info.value.file == str(path)
    assert info.value.column == "x"
    assert "'secret'" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda raw: raw["columns"][0].update(kind="float"), "unknown kind or role"),
        (lambda raw: raw["columns"][0].update(colour="red"), "missing a key or has an unknown one"),
        (lambda raw: raw.update(task_type="ordinal"), "unsupported task_type"),
        (lambda raw: raw.update(task_type="multiclass"), "a multiclass schema must list its classes"),
        (lambda raw: raw.update(target="z"), "does not list its target"),
        (lambda raw: raw.pop("columns"), "missing a key"),
    ],
)
def test_load_refuses_a_broken_schema(tmp_path, edit, words):
    schema = TableSchema("d", "y", "binary", [ColumnSpec("x", "numeric"), ColumnSpec("y", "numeric", "target")])
    raw = schema.to_dict()
    edit(raw)
    path = tmp_path / "d.schema.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError) as info:
        TableSchema.load(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_load_refuses_invalid_yaml(tmp_path):
    path = tmp_path / "bad.schema.yaml"
    path.write_text("columns: [unclosed\n")
    with pytest.raises(DataError) as info:
        TableSchema.load(path)
    assert "not valid YAML" in str(info.value)
    assert info.value.file == str(path)
