"""Multiclass targets in the data layer: detection, the class order in the schema, validation of the
labels, and the errors for one class, too many classes and a class the training rows lack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbops.data.schema import MAX_CLASSES, ColumnSpec, TableSchema, infer_schema, infer_task_type
from nbops.data.validate import check_split_classes, validate_table
from nbops.errors import DataError
from nbops.runtime.schema import class_codes, label_text
from tests.support.multiclass import PLANS, TARGET, multiclass_table

# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b", "c", "a", None],  # text, three classes
        ["0", "1", "2", "1", "2"],  # whole numbers read from a CSV
        [1, 2, 3, 4, 5, 1, 2],  # typed whole numbers, few values
        list(PLANS) * 3,
        [f"class {i}" for i in range(MAX_CLASSES)] * 2,  # the most classes allowed
    ],
)
def test_three_to_fifty_labels_are_multiclass(values):
    assert infer_task_type(pd.Series(values), file="f.csv", column="label") == ("multiclass", None)


@pytest.mark.parametrize(
    "values",
    [
        np.arange(30).astype(float),  # whole numbers with many values: a count
        np.random.default_rng(0).normal(size=40).round(3),  # a real number
    ],
)
def test_numbers_with_many_values_stay_regression(values):
    assert infer_task_type(pd.Series(values), file="f.csv", column="y") == ("regression", None)


def test_binary_detection_is_unchanged_beside_multiclass():
    assert infer_task_type(pd.Series(["yes", "no", "no"]), file="f.csv", column="y") == ("binary", "yes")
    assert infer_task_type(pd.Series([0, 1, 1]), file="f.csv", column="y") == ("binary", None)


def test_more_than_fifty_classes_is_refused_naming_the_file_column_and_count():
    labels = pd.Series([f"product {i}" for i in range(MAX_CLASSES + 7)] * 2)
    with pytest.raises(DataError) as info:
        infer_task_type(labels, file="orders.csv", column="product")
    text = str(info.value)
    assert "the target has 57 classes, more than the 50 a multiclass model takes" in text
    assert "where: file orders.csv, column 'product'" in text
    assert "expected: 2 to 50 distinct labels" in text
    assert "found: 57 distinct labels, e.g. 'product 0'" in text
    assert "what to do: group rare labels" in text
    assert text.splitlines()[-1].startswith("  what to do:")  # what to do is said last


def test_forced_multiclass_with_more_than_fifty_whole_numbers_is_refused():
    df = pd.DataFrame({"x": range(120), "code": np.arange(120) % 60})
    with pytest.raises(DataError) as info:
        infer_schema(df, dataset="d", target="code", task_type="multiclass", file="codes.csv")
    assert "60 classes, more than the 50" in str(info.value) and "codes.csv" in str(info.value)


def test_one_class_is_refused_for_a_forced_multiclass_target():
    df = pd.DataFrame({"x": range(10), "kind": ["a"] * 10})
    with pytest.raises(DataError) as info:
        infer_schema(df, dataset="d", target="kind", task_type="multiclass", file="kinds.csv")
    text = str(info.value)
    assert "the target has a single class" in text and "column 'kind'" in text and "every labelled row is 'a'" in text


# --- the class order in the schema ----------------------------------------------------------------


def test_inferred_schema_records_the_classes_in_order():
    df = multiclass_table(400)
    schema = infer_schema(df, dataset="plans", target="plan", file="plans.csv")
    assert schema.task_type == "multiclass"
    assert schema.column("plan").categories == sorted(PLANS) == schema.classes
    assert schema.column("plan").kind == "categorical" and not schema.integer_classes


def test_whole_number_classes_sort_as_numbers_and_round_trip_through_the_file(tmp_path):
    df = pd.DataFrame({"x": range(40), "grade": [2, 10, 1, 3] * 10})
    schema = infer_schema(df, dataset="g", target="grade", file="g.csv")
    assert schema.task_type == "multiclass"
    assert schema.classes == ["1", "2", "3", "10"]  # not "1", "10", "2", "3"
    assert schema.integer_classes
    again = TableSchema.load(schema.save(tmp_path / "g.schema.yaml"))
    assert again.classes == ["1", "2", "3", "10"] and again.integer_classes


def test_target_codes_follow_the_class_order_whatever_the_labels_type():
    schema = TableSchema(
        "g", "grade", "multiclass", [ColumnSpec("grade", "numeric", "target", categories=["1", "2", "3", "10"])]
    )
    for values in ([10, 1, 3, None], ["10", "1", "3", None], [10.0, 1.0, 3.0, np.nan]):
        codes = schema.target_codes(pd.Series(values))
        assert codes[:3].tolist() == [3.0, 0.0, 2.0] and np.isnan(codes[3])
    assert label_text(pd.Series([2.0, 2.5])).tolist() == ["2", "2.5"]
    assert np.isnan(class_codes(pd.Series(["7"]), ["1", "2"])[0])


def test_a_multiclass_schema_with_too_many_classes_is_refused_on_load():
    raw = {
        "dataset": "d",
        "target": "y",
        "task_type": "multiclass",
        "columns": [
            {"name": "x", "kind": "numeric"},
            {"name": "y", "kind": "categorical", "role": "target", "categories": [str(i) for i in range(51)]},
        ],
    }
    with pytest.raises(DataError) as info:
        TableSchema.from_dict(raw, source="schemas/d.schema.yaml")
    text = str(info.value)
    assert "a multiclass schema must list its classes" in text and "found: 51 categories" in text
    assert "schemas/d.schema.yaml" in text


# --- validation -----------------------------------------------------------------------------------


def _schema() -> TableSchema:
    return TableSchema(
        "plans",
        "plan",
        "multiclass",
        [
            ColumnSpec("x", "numeric"),
            ColumnSpec("plan", "categorical", "target", nullable=False, categories=["basic", "plus", "premium"]),
        ],
    )


def test_an_unknown_label_is_quarantined_with_the_class_list():
    raw = pd.DataFrame({"x": ["1", "2", "3", "4"], "plan": ["basic", "plus", "gold", "premium"]})
    result = validate_table(raw, _schema(), file="plans.csv")
    assert result.valid["plan"].tolist() == ["basic", "plus", "premium"]
    assert result.quarantine["_row"].tolist() == [3]
    assert "plan: label 'gold' is not one of the 3 classes (basic, plus, premium)" in result.quarantine["_reason"][0]


def test_one_class_among_the_valid_rows_is_refused():
    raw = pd.DataFrame({"x": ["1", "2", "3"], "plan": ["plus", "plus", "gold"]})
    with pytest.raises(DataError) as info:
        validate_table(raw, _schema(), file="plans.csv")
    text = str(info.value)
    assert "the target has a single class among the valid rows" in text
    assert "file plans.csv" in text and "every labelled row is 'plus'" in text


def test_a_class_in_test_but_not_in_train_is_refused_naming_it():
    train = pd.DataFrame({"plan": ["basic", "plus"] * 5})
    test = pd.DataFrame({"plan": ["basic", "premium", "premium"]})
    with pytest.raises(DataError) as info:
        check_split_classes(_schema(), {"train": train, "valid": train, "test": test}, file="interim/valid.parquet")
    text = str(info.value)
    assert "a class of the test split never appears in the training split" in text
    assert "file interim/valid.parquet, column 'plan'" in text
    assert "found: 'premium' in 2 test row(s)" in text
    assert "they hold 'basic', 'plus'" in text
    assert text.splitlines()[-1].startswith("  what to do:")


def test_a_class_in_valid_but_not_in_train_is_refused_too():
    train = pd.DataFrame({"plan": ["basic", "plus"]})
    with pytest.raises(DataError, match="a class of the valid split"):
        check_split_classes(
            _schema(), {"train": train, "valid": pd.DataFrame({"plan": ["premium"]}), "test": train}, file="f"
        )
    check_split_classes(_schema(), {"train": train, "valid": train, "test": train}, file="f")  # all there: fine


def test_the_features_stage_refuses_a_class_that_only_the_latest_months_have(tmp_path):
    from nbops.config.params import FeaturesParams
    from nbops.features.build import build_features

    df = multiclass_table(600, months=10)
    df.loc[df["month"] >= "2024-10", TARGET] = "enterprise"  # a plan launched in the last month
    schema = infer_schema(df, dataset="plans", target=TARGET, file="plans.csv")
    assert "enterprise" in schema.classes
    valid = tmp_path / "valid.parquet"
    validate_table(df, schema, file="plans.csv").valid.to_parquet(valid)
    out = {name: tmp_path / f"{name}.parquet" for name in ("train", "valid", "test")}
    out.update(transform=tmp_path / "transform.json", summary=tmp_path / "summary.json")
    with pytest.raises(DataError) as info:
        build_features(FeaturesParams(), schema=schema, valid_rows=valid, out=out)
    text = str(info.value)
    assert "a class of the test split never appears in the training split" in text
    assert "'enterprise' in" in text and str(valid) in text
    assert not out["train"].exists()  # refused before any split is written
