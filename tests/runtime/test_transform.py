"""The feature transform: numeric pass-through, categorical codes, strict mode, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.transform import FORMAT_VERSION, FeatureTransform, UnseenCategoryError


def _train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": [10.5, 20.0, np.nan, 40.25, 5.0],
            "age": [30, 40, 50, 60, 70],
            "grade": ["C", "A", None, "B", "A"],
            "region": ["south", "north", "north", "east", "south"],
            "ignored": ["x"] * 5,
        }
    )


@pytest.fixture
def fitted() -> FeatureTransform:
    return FeatureTransform.fit(_train(), ["income", "age"], ["grade", "region"])


def _expected(df: pd.DataFrame, transform: FeatureTransform) -> np.ndarray:
    """The matrix computed directly: numbers as floats, categories as positions in sorted levels."""
    cols = []
    for name in transform.feature_names:
        if name in transform.categorical:
            levels = sorted(_train()[name].dropna().unique())
            cols.append([float(levels.index(v)) if v in levels else np.nan for v in df[name]])
        else:
            cols.append(df[name].astype(float).tolist())
    return np.array(cols, dtype=float).T


def test_fit_learns_sorted_levels_from_training_rows(fitted):
    assert fitted.categorical == {"grade": ["A", "B", "C"], "region": ["east", "north", "south"]}
    assert fitted.feature_names == ["income", "age", "grade", "region"]
    assert fitted.categorical_indices == [2, 3]


def test_transform_passes_numbers_and_codes_categories(fitted):
    df = _train()
    x = fitted.transform(df)
    assert x.dtype == np.float64
    assert x.shape == (len(df), 4)
    np.testing.assert_array_equal(x, _expected(df, fitted))
    # Spelled out for one row: grade 'C' is level 2 of [A, B, C], region 'south' level 2.
    np.testing.assert_array_equal(x[0], [10.5, 30.0, 2.0, 2.0])


def test_missing_values_stay_missing(fitted):
    x = fitted.transform(_train())
    assert np.isnan(x[2, 0])  # income NaN
    assert np.isnan(x[2, 2])  # grade None
    assert np.isnan(x).sum() == 2


def test_unseen_category_is_missing_by_default(fitted):
    new = _train().assign(grade=["A", "Z", "B", None, "C"])
    x = fitted.transform(new)
    np.testing.assert_array_equal(x[:, 2], [0.0, np.nan, 1.0, np.nan, 2.0])


def test_unseen_category_in_strict_mode_names_column_value_and_row(fitted):
    new = _train().assign(region=["north", "north", "west", "south", "west"])
    with pytest.raises(UnseenCategoryError) as info:
        fitted.transform(new, strict=True)
    err = info.value
    assert err.column == "region"
    assert err.values == ["west"]
    assert err.rows == [2, 4]
    assert err.allowed == ["east", "north", "south"]
    text = str(err)
    assert "'region'" in text and "'west'" in text and "rows 2, 4" in text
    assert isinstance(err, ValueError)


def test_strict_mode_accepts_missing_and_known_values(fitted):
    df = _train()
    np.testing.assert_array_equal(fitted.transform(df, strict=True), fitted.transform(df))


def test_column_order_and_extra_columns_do_not_matter(fitted):
    df = _train()
    shuffled = df[["ignored", "region", "age", "grade", "income"]].assign(more=1)
    np.testing.assert_array_equal(fitted.transform(shuffled), fitted.transform(df))


def test_missing_feature_column_is_refused(fitted):
    with pytest.raises(KeyError, match="grade"):
        fitted.transform(_train().drop(columns="grade"))


def test_numeric_text_is_parsed(fitted):
    as_text = _train().astype({"income": "string", "age": str})
    np.testing.assert_array_equal(fitted.transform(as_text), fitted.transform(_train()))


def test_to_dict_from_dict_round_trip(fitted):
    data = json.loads(json.dumps(fitted.to_dict()))
    assert data["format_version"] == FORMAT_VERSION
    again = FeatureTransform.from_dict(data)
    assert again.to_dict() == fitted.to_dict()
    new = _train().assign(grade=["B", "Z", None, "A", "C"])
    np.testing.assert_array_equal(again.transform(new), fitted.transform(new))


def test_save_load_round_trip(tmp_path, fitted):
    path = fitted.save(tmp_path / "models" / "transform.json")
    assert [p.name for p in path.parent.iterdir()] == ["transform.json"]  # no temp file left
    assert json.loads(path.read_text()) == fitted.to_dict()  # plain JSON, never pickled
    loaded = FeatureTransform.load(path)
    np.testing.assert_array_equal(loaded.transform(_train()), fitted.transform(_train()))
    assert loaded.categorical_indices == fitted.categorical_indices


@pytest.mark.parametrize("version", [None, 0, FORMAT_VERSION + 1, "1"])
def test_wrong_format_version_is_refused(fitted, version):
    data = fitted.to_dict()
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    with pytest.raises(ValueError, match="format"):
        FeatureTransform.from_dict(data)


def test_numeric_coded_category_with_a_missing_value_keeps_its_codes():
    transform = FeatureTransform.fit(pd.DataFrame({"branch": ["1", "2", "3"]}), [], ["branch"])
    as_int = transform.transform(pd.DataFrame({"branch": [1, 2, 3]}))
    np.testing.assert_array_equal(as_int[:, 0], [0.0, 1.0, 2.0])  # integers do match
    as_float = transform.transform(pd.DataFrame({"branch": [1.0, 2.0, np.nan]}))
    np.testing.assert_array_equal(as_float[:, 0], [0.0, 1.0, np.nan])
