"""The project's feature code at the features stage, in a notebook, and in `nbops check`: errors in the
house style (file, function, line, rows; expected, found, what to do), derived columns in the splits."""

from __future__ import annotations

import contextlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.config.params import FeaturesParams
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.errors import ConfigError, DataError
from nbops.features import load_feature_code, try_feature_code
from nbops.features.build import NO_FEATURE_CODE, build_features, derived_table
from nbops.pipeline.check import check_project
from nbops.runtime.integrity import FEATURE_CODE_FILE
from nbops.runtime.transform import FeatureTransform
from tests.support import nbops_in_process, output_of

RATIO = '''\
"""Derived features of the test table."""
import pandas as pd


def loan_to_income(df: pd.DataFrame) -> pd.Series:
    return df["loan"] / df["income"].where(df["income"] > 0)
'''


def schema() -> TableSchema:
    return TableSchema(
        dataset="loans",
        target="bad",
        task_type="binary",
        columns=[
            ColumnSpec("uid", "text", role="id"),
            ColumnSpec("loan", "numeric"),
            ColumnSpec("income", "numeric"),
            ColumnSpec("grade", "categorical"),
            ColumnSpec("bad", "numeric", role="target"),
        ],
    )


def valid_rows(folder: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "uid": [f"U{i}" for i in range(n)],
            "loan": rng.uniform(1_000, 30_000, n).round(0),
            "income": rng.uniform(10_000, 90_000, n).round(0),
            "grade": rng.choice(["A", "B", "C"], n),
            "bad": rng.integers(0, 2, n).astype(float),
        }
    )
    df.loc[42, "income"] = np.nan
    path = folder / "valid.parquet"
    df.to_parquet(path, index=False)
    return path


def run_stage(folder: Path, source: str | None, **params: object):
    if source is not None:
        (folder / "features.py").write_text(textwrap.dedent(source))
    out = {k: folder / "out" / f"{k}.parquet" for k in ("train", "valid", "test")}
    out |= {
        "transform": folder / "out" / "feature_transform.json",
        "feature_code": folder / "out" / FEATURE_CODE_FILE,
        "summary": folder / "out" / "summary.json",
    }
    return build_features(
        FeaturesParams(tracking="disabled", feature_code="features.py" if source else None, **params),
        schema=schema(),
        valid_rows=valid_rows(folder),
        out=out,
        project=folder,
    ), out


def stage_error(tmp_path: Path, source: str) -> DataError:
    with pytest.raises(DataError) as info:
        run_stage(tmp_path, source)
    return info.value


def test_the_splits_carry_the_derived_column_and_the_transform_its_code(tmp_path):
    result, out = run_stage(tmp_path, RATIO)
    train = pd.read_parquet(out["train"])
    expected = (train["loan"] / train["income"]).to_numpy()
    np.testing.assert_array_equal(train["loan_to_income"].to_numpy(), expected)
    assert out["feature_code"].read_text() == RATIO
    transform = FeatureTransform.load(out["transform"])
    assert transform.feature_names[-1] == "loan_to_income" and transform.derived == {"loan_to_income": "numeric"}
    raw = train.drop(columns=["loan_to_income"])
    np.testing.assert_array_equal(transform.transform(raw), transform.transform(train))
    summary = json.loads(out["summary"].read_text())
    assert summary["derived"] == {"loan_to_income": "numeric"} and summary["feature_code"]["name"] == "features.py"
    shown = derived_table(result)
    assert shown["feature"].tolist() == ["loan_to_income"] and shown["kind"].tolist() == ["numeric"]


def test_without_feature_code_the_product_says_there_is_none(tmp_path):
    result, out = run_stage(tmp_path, None)
    assert out["feature_code"].read_text() == NO_FEATURE_CODE
    assert result.transform.derived == {} and "derived" not in json.loads(out["transform"].read_text())


def test_a_raising_function_is_a_features_stage_error_naming_file_function_line_and_rows(tmp_path):
    err = stage_error(
        tmp_path,
        """\
        import math


        def log_income(df):
            return df["income"].map(lambda v: math.log(v) if v == v else float("nan")) - df["income"].map(_check)


        def _check(v):
            if v != v:
                raise ValueError("income is missing")
            return 0.0
        """,
    )
    text = str(err)
    assert (
        text.splitlines()[0] == "raised ValueError: income is missing (positions in ingest's valid rows, valid.parquet)"
    )
    assert "where: file features.py, function log_income(), line 10, rows 42" in text
    assert "what to do: fix the function" in text


@pytest.mark.parametrize(
    ("body", "first_line", "found"),
    [
        ("return df['income'].dropna()", "returned 299 values for 300 rows", "a Series of length 299"),
        ("return df['loan'].sort_values()", "returned a Series whose index is not the DataFrame's", "index labels"),
        (
            "return pd.to_datetime(df['loan'], unit='D')",
            "returned values that are neither numbers nor categories (dtype datetime64",
            "Timestamp",
        ),
    ],
    ids=["wrong-length", "wrong-index", "dates"],
)
def test_each_bad_return_is_named_at_the_features_stage(tmp_path, body, first_line, found):
    err = stage_error(tmp_path, f"import pandas as pd\n\n\ndef bad_feature(df):\n    {body}\n")
    text = str(err)
    assert text.splitlines()[0].startswith(first_line), text
    assert "function bad_feature()" in text and f"found: {found}" in text and "what to do:" in text


def test_a_function_named_like_a_column_of_the_table_is_refused(tmp_path):
    err = stage_error(tmp_path, "def bad(df):\n    return df['loan'] * 0\n")  # 'bad' is the target
    assert "named like a column of the table ('bad')" in str(err) and "rename the function" in str(err)


def test_a_missing_module_is_named_with_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"(?s)does not exist.*feature_code: none"):
        build_features(
            FeaturesParams(tracking="disabled", feature_code="nowhere.py"),
            schema=schema(),
            valid_rows=valid_rows(tmp_path),
            out={"transform": tmp_path / "t.json"},
            project=tmp_path,
        )


# -- in a notebook ------------------------------------------------------------------------------------


def test_a_notebook_loads_the_module_named_in_env_yaml_and_tries_a_function(project: Path, monkeypatch):
    (project / "features.py").write_text(
        RATIO.replace('"loan"', '"loan_amount"').replace('"income"', '"annual_income"')
    )
    env = project / "env.yaml"
    env.write_text(env.read_text().replace("feature_code: none", "feature_code: features.py"))
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    df = pd.DataFrame({"loan_amount": [1000.0, 500.0], "annual_income": [4000.0, 0.0]}, index=[10, 11])
    with contextlib.chdir(project / "notebooks"):  # where a notebook's kernel starts
        features = load_feature_code()
        assert features.loan_to_income(df).tolist()[0] == 0.25
        derived = try_feature_code(df)
    assert list(derived.index) == [10, 11] and derived["loan_to_income"].iloc[0] == 0.25
    assert np.isnan(derived["loan_to_income"].iloc[1])


def test_try_feature_code_fails_as_the_stage_does(project: Path, monkeypatch):
    (project / "features.py").write_text("def centred(df):\n    return df['x'] - df['x'].mean()\n")
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    with contextlib.chdir(project / "notebooks"), pytest.raises(DataError, match="not computed row by row"):
        try_feature_code(pd.DataFrame({"x": [1.0, 2.0, 6.0]}), "features.py")


def test_load_feature_code_without_the_env_key_says_how_to_set_it(project: Path, monkeypatch):
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    with contextlib.chdir(project), pytest.raises(ConfigError, match="'feature_code' is none"):
        load_feature_code()


# -- nbops check --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "the feature module does not exist"),
        ("def f(df):\n    return df[\n", "the feature module is not valid Python"),
        ("def _helper(df):\n    return df\n", "the feature module defines no public function"),
    ],
    ids=["missing", "syntax", "no-function"],
)
def test_check_refuses_an_unusable_feature_module_before_anything_runs(project: Path, content, message):
    if content is not None:
        (project / "features.py").write_text(content)
    proc = nbops_in_process(project, "check", "--env", "env.test.yaml", "--set", "feature_code=features.py")
    assert proc.returncode != 0
    assert message in output_of(proc) and "features.py" in output_of(proc)


def test_check_accepts_a_good_module_and_passes_it_to_the_features_task(project: Path):
    (project / "features.py").write_text(RATIO)
    checked = check_project(project, "env.test.yaml", {"feature_code": "features.py"})
    features = next(t for t in checked.tasks if t.name == "features")
    assert features.params["feature_code"] == "features.py"
    assert check_project(project, "env.test.yaml").settings.feature_code is None


def test_the_feature_code_product_must_sit_beside_the_transform(tmp_path):
    (tmp_path / "features.py").write_text(RATIO)
    with pytest.raises(ConfigError, match="must sit beside its 'transform'"):
        build_features(
            FeaturesParams(tracking="disabled", feature_code="features.py"),
            schema=schema(),
            valid_rows=valid_rows(tmp_path),
            out={
                **{k: tmp_path / f"{k}.parquet" for k in ("train", "valid", "test")},
                "transform": tmp_path / "models" / "feature_transform.json",
                "feature_code": tmp_path / "elsewhere" / "feature_code.py",
                "summary": tmp_path / "summary.json",
            },
            project=tmp_path,
        )
    assert not (tmp_path / "models" / "feature_transform.json").exists()
