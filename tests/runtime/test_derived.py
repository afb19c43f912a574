"""Derived features (the project's feature code) inside the runtime transform: every way a feature
function can be wrong fails with the function, the problem and the rows named; the DataFrame and the
record paths compute the same matrix; the code travels as a checksummed file beside the JSON."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.derived import FeatureCode, FeatureCodeError
from nbops.runtime.integrity import FEATURE_CODE_FILE, IntegrityError
from nbops.runtime.transform import FeatureTransform, frame_of_blocks, slow_frame_of_blocks, text_array

NUMERIC = ["income", "debt", "age"]
CATEGORICAL = ["grade", "region"]
GOOD = """
import math

import numpy as np
import pandas as pd


def debt_to_income(df: pd.DataFrame) -> pd.Series:
    return df["debt"] / df["income"].where(df["income"] > 0)


def age_band(df: pd.DataFrame) -> pd.Series:
    return pd.Series(np.where(df["age"] < 40, "young", "older"), index=df.index).where(df["age"].notna())


def grade_region(df: pd.DataFrame) -> pd.Series:
    return df["grade"] + "-" + df["region"]


def log_income(df):
    return np.log1p(df["income"].clip(lower=0)).map(_round)


def _round(value):
    return value if math.isnan(value) else round(value, 6)
"""


def table(n: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n).round(2),
            "debt": rng.uniform(0, 20_000, n).round(2),
            "age": rng.integers(18, 80, n),
            "grade": rng.choice(["A", "B", "C"], n),
            "region": rng.choice(["north", "south"], n).astype(object),
            "target": rng.integers(0, 2, n),
        }
    )
    df.loc[3, "income"] = 0.0
    df.loc[5, "income"] = np.nan
    df.loc[7, "grade"] = None
    return df


def code_of(source: str, name: str = "features.py") -> FeatureCode:
    return FeatureCode.from_source(textwrap.dedent(source).encode(), name)


def fit(source: str, df: pd.DataFrame | None = None) -> FeatureTransform:
    return FeatureTransform.fit(table() if df is None else df, NUMERIC, CATEGORICAL, code=code_of(source))


def records_of(df: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as a JSON client sends them: plain Python values, null for missing."""
    out = []
    for row in df[NUMERIC + CATEGORICAL].to_dict("records"):
        out.append({k: None if v is None or (isinstance(v, float) and np.isnan(v)) else v for k, v in row.items()})
    return out


# -- a good module ----------------------------------------------------------------------------------


def test_derived_columns_follow_the_raw_features_named_after_their_functions():
    t = fit(GOOD)
    assert t.feature_names == [*NUMERIC, *CATEGORICAL, "debt_to_income", "age_band", "grade_region", "log_income"]
    assert t.derived == {
        "debt_to_income": "numeric",
        "age_band": "categorical",
        "grade_region": "categorical",
        "log_income": "numeric",
    }
    assert t.categorical["age_band"] == ["older", "young"]
    assert t.categorical_indices == [3, 4, 6, 7]


def test_the_matrix_holds_the_functions_values_computed_from_raw_columns():
    df = table()
    t = fit(GOOD, df)
    x = t.transform(df.drop(columns=["target"]))
    ratio = (df["debt"] / df["income"]).where(df["income"] > 0).to_numpy()
    np.testing.assert_array_equal(x[:, t.feature_names.index("debt_to_income")], ratio)
    assert np.isnan(x[3, t.feature_names.index("debt_to_income")])  # income 0: NaN, not inf
    band = x[:, t.feature_names.index("age_band")]
    np.testing.assert_array_equal(band, np.where(df["age"] < 40, 1.0, 0.0))  # levels [older, young]
    combined = x[:, t.feature_names.index("grade_region")]
    assert np.isnan(combined[7])  # a missing grade: a missing combination
    assert combined[0] == t.categorical["grade_region"].index(f"{df.loc[0, 'grade']}-{df.loc[0, 'region']}")


def test_records_and_frames_give_identical_matrices_row_by_row_and_together():
    df = table()
    t = fit(GOOD, df)
    records = records_of(df)
    full = t.transform(df)
    np.testing.assert_array_equal(t.transform_records(records), full)
    for i in (0, 3, 5, 7, 11):
        np.testing.assert_array_equal(t.transform_records([records[i]])[0], full[i])


def test_the_feature_code_sees_the_same_frame_from_records_as_from_a_dataframe():
    df = table()
    t = fit(GOOD, df)
    from_frame = t.input_frame(df)
    from_records = t.input_frame_records(records_of(df))
    pd.testing.assert_frame_equal(from_records, from_frame)
    assert list(from_frame.columns) == NUMERIC + CATEGORICAL
    assert from_frame["age"].dtype == np.float64 and from_frame["grade"].dtype == "str"
    assert isinstance(from_frame.index, pd.RangeIndex)


def test_the_fast_frame_constructor_equals_pandas_public_one():
    t = fit(GOOD)
    frame = t.input_frame(table())
    numbers = frame[NUMERIC].to_numpy().T.copy()
    texts = [text_array([None if pd.isna(v) else v for v in frame[c]]) for c in CATEGORICAL]
    fast = frame_of_blocks(numbers, texts, frame.columns, len(frame))
    pd.testing.assert_frame_equal(fast, slow_frame_of_blocks(numbers, texts, frame.columns, len(frame)))
    pd.testing.assert_frame_equal(fast, frame)
    assert fast["grade"].dtype == "str" and fast["income"].dtype == np.float64


def test_the_text_array_is_pandas_own_str_array():
    values = ["a", None, "b"]
    pd.testing.assert_extension_array_equal(text_array(values), pd.array(values, dtype="str"))


def test_records_with_no_numeric_or_no_categorical_feature_still_build_the_frame():
    df = table()
    for numeric, categorical in ((["income", "debt"], []), ([], ["grade", "region"])):
        code = code_of("def n(df):\n    return df[df.columns[0]]\n")
        t = FeatureTransform.fit(df, numeric, categorical, code=code)
        pd.testing.assert_frame_equal(t.input_frame_records(records_of(df)), t.input_frame(df))


def test_a_client_never_sends_derived_columns_and_one_it_sends_is_recomputed():
    df = table()
    t = fit(GOOD, df)
    forged = df.assign(debt_to_income=123.0, age_band="young")
    np.testing.assert_array_equal(t.transform(forged), t.transform(df))


def test_an_unseen_derived_category_is_missing_when_scoring():
    t = fit(GOOD)
    row = {"income": 1000.0, "debt": 10.0, "age": 30, "grade": "A", "region": "east"}  # east never seen
    x = t.transform_records([row])
    assert np.isnan(x[0, t.feature_names.index("grade_region")])
    assert x[0, t.feature_names.index("region")] != x[0, t.feature_names.index("region")]  # raw: missing too


def test_with_derived_adds_the_columns_on_the_callers_index():
    df = table().set_index(pd.Index([f"r{i}" for i in range(40)]))
    out = fit(GOOD).with_derived(df)
    assert list(out.index) == list(df.index)
    assert {"debt_to_income", "age_band", "grade_region", "log_income"} <= set(out.columns)


# -- the file travels beside the JSON, checksummed ---------------------------------------------------


def test_save_and_load_carry_the_code_file_and_its_checksum(tmp_path):
    df = table()
    t = fit(GOOD, df)
    path = t.save(tmp_path / "feature_transform.json")
    assert (tmp_path / FEATURE_CODE_FILE).read_bytes() == textwrap.dedent(GOOD).encode()
    data = json.loads(path.read_text())
    assert data["format_version"] == 2
    assert data["feature_code"] == {"file": FEATURE_CODE_FILE, "name": "features.py", "sha256": t.code.sha256}
    assert "source" not in data["feature_code"]
    np.testing.assert_array_equal(FeatureTransform.load(path).transform(df), t.transform(df))


def test_a_changed_code_file_is_refused(tmp_path):
    path = fit(GOOD).save(tmp_path / "feature_transform.json")
    code = tmp_path / FEATURE_CODE_FILE
    code.write_text(code.read_text().replace('df["debt"] /', '2 * df["debt"] /'))
    with pytest.raises(IntegrityError, match="feature_code.py.*SHA-256"):
        FeatureTransform.load(path)


def test_a_missing_code_file_is_refused_naming_it(tmp_path):
    path = fit(GOOD).save(tmp_path / "feature_transform.json")
    (tmp_path / FEATURE_CODE_FILE).unlink()
    with pytest.raises(ValueError, match="debt_to_income.*feature_code.py, from features.py"):
        FeatureTransform.load(path)


def test_the_dict_with_code_rebuilds_the_same_transform_without_files():
    df = table()
    t = fit(GOOD, df)
    shipped = json.loads(json.dumps(t.to_dict(include_code=True)))
    np.testing.assert_array_equal(FeatureTransform.from_dict(shipped).transform(df), t.transform(df))


def test_a_transform_without_feature_code_keeps_format_1_and_its_keys():
    t = FeatureTransform.fit(table(), NUMERIC, CATEGORICAL)
    assert t.to_dict() == {
        "format_version": 1,
        "numeric": NUMERIC,
        "categorical": t.categorical,
        "feature_names": NUMERIC + CATEGORICAL,
    }


def test_the_module_is_not_importable_by_name_from_the_project(tmp_path, monkeypatch):
    (tmp_path / "features.py").write_text("raise RuntimeError('the project copy was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    t = fit(GOOD)
    assert t.code is not None and t.code.module.__name__.startswith("_nbops_feature_code_")
    t.transform(table())  # runs the verified bytes, never the file of the same name on sys.path


# -- every way a function can be wrong ----------------------------------------------------------------


def error_of(source: str, df: pd.DataFrame | None = None) -> FeatureCodeError:
    with pytest.raises(FeatureCodeError) as info:
        fit(source, df)
    return info.value


def test_a_function_that_raises_names_itself_the_error_the_line_and_the_rows():
    err = error_of(
        """
        import pandas as pd

        def per_grade(df):
            weights = {"A": 1.0, "B": 2.0, "C": 3.0}
            return df["grade"].map(lambda g: weights[g])
        """
    )
    assert err.function == "per_grade"
    assert err.problem.startswith("raised KeyError")
    assert err.line == 6
    assert err.rows == [7]  # the row whose grade is missing, found by trying rows one by one
    assert "feature function 'per_grade'" in str(err) and "rows 7" in str(err)


def test_a_function_that_fails_on_the_whole_table_only_names_no_row():
    err = error_of(
        """
        def too_big(df):
            if len(df) > 1:
                raise ValueError("expects one row")
            return df["age"]
        """
    )
    assert err.function == "too_big" and "ValueError: expects one row" in err.problem and err.rows == []


def test_a_function_returning_the_wrong_length_says_how_many_for_how_many_rows():
    err = error_of("def known_income(df):\n    return df['income'].dropna()\n")
    assert err.function == "known_income"
    assert err.problem == "returned 39 values for 40 rows"
    assert "return NaN" in (err.hint or "")


def test_a_function_returning_another_index_names_the_misaligned_rows():
    err = error_of("def by_age(df):\n    return df['age'].sort_values()\n")
    assert err.function == "by_age" and "index is not the DataFrame's" in err.problem
    assert err.rows and all(isinstance(r, int) for r in err.rows)
    order = table()["age"].astype(float).sort_values(kind="quicksort").index.to_numpy()
    assert err.rows == np.flatnonzero(order != np.arange(40)).tolist()


def test_a_function_returning_a_reset_index_is_caught_when_the_index_is_not_0_to_n():
    # the frame a function gets is indexed 0..n-1, so a length-preserving new Series is aligned; a shifted one is not
    err = error_of(
        "import pandas as pd\ndef shifted(df):\n    return pd.Series(df['age'].to_numpy(), index=df.index + 1)\n"
    )
    assert err.rows == list(range(40))


def test_a_function_returning_dates_is_neither_numbers_nor_categories():
    err = error_of(
        "import pandas as pd\n"
        "def born(df):\n"
        "    return pd.Timestamp('2024-01-01') - pd.to_timedelta(df['age'] * 365, unit='D')\n"
    )
    assert err.function == "born"
    assert "neither numbers nor categories (dtype datetime64" in err.problem
    assert err.rows[:3] == [0, 1, 2]
    assert "Timestamp" in (err.found or "")


def test_a_function_mixing_text_and_numbers_names_the_odd_rows():
    err = error_of(
        """
        import pandas as pd

        def grade_or_age(df):
            return pd.Series([g if isinstance(g, str) else 0 for g in df["grade"]], index=df.index, dtype=object)
        """
    )
    assert err.function == "grade_or_age" and "neither numbers nor categories (dtype object)" in err.problem
    assert err.rows == [7] and err.found == "int 0"


def test_a_function_returning_something_else_than_a_series_says_what():
    err = error_of("def ratio(df):\n    return (df['debt'] / df['income']).to_numpy()\n")
    assert err.problem == "did not return a pandas Series" and (err.found or "").startswith("numpy.ndarray")


def test_infinite_values_are_refused_with_their_rows():
    err = error_of("def ratio(df):\n    return df['debt'] / df['income']\n")
    assert err.function == "ratio" and err.problem == "returned infinite values" and err.rows == [3]


def test_a_function_that_depends_on_other_rows_is_refused_because_serving_scores_one_row():
    err = error_of("def centred_age(df):\n    return df['age'] - df['age'].mean()\n")
    assert err.function == "centred_age" and "not computed row by row" in err.problem
    assert "alone" in (err.found or "")


def test_a_public_helper_with_two_arguments_is_refused():
    err = error_of("def clip(x, lo):\n    return x.clip(lo)\n")
    assert err.function == "clip" and err.problem == "takes (x, lo)" and "_clip" in (err.hint or "")


def test_a_function_named_like_a_raw_feature_is_refused():
    err = error_of("def age(df):\n    return df['age'] * 2\n")
    assert err.function == "age" and "raw feature 'age'" in err.problem


def test_a_module_without_public_functions_is_refused():
    err = error_of("def _helper(df):\n    return df\n")
    assert "defines no public function" in err.problem


def test_a_module_that_does_not_parse_names_the_line():
    err = error_of("def ratio(df):\n    return df['debt'] /\n")
    assert "not valid Python" in err.problem and err.line == 2


def test_a_module_importing_what_is_not_installed_names_the_module():
    err = error_of("import not_a_real_module_xyz\n\ndef f(df):\n    return df['age']\n")
    assert "No module named 'not_a_real_module_xyz'" in err.problem and err.line == 1


def test_a_function_reading_a_column_that_is_not_a_raw_feature_lists_the_raw_features():
    err = error_of("def per_target(df):\n    return df['target'] * 2\n")  # the target is never given
    assert (
        err.function == "per_target" and err.problem == "reads column 'target', which is not a raw feature of the model"
    )
    assert err.expected == "columns among the raw features: income, debt, age, grade, region"
    assert err.rows == [] and err.line == 2
