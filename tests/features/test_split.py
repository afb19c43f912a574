"""Train/valid/test split (time-ordered or seeded random) and the features stage that writes it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbops.data.schema import ColumnSpec, TableSchema
from nbops.features.build import build_features, split_table
from nbops.features.split import SPLITS, split_rows
from nbops.params import FeaturesParams
from nbops.runtime.transform import FeatureTransform


def _rows(n: int = 400, seed: int = 0, months: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    month = pd.to_datetime("2023-01-01") + pd.to_timedelta(
        rng.integers(0, months, n) * 31, unit="D"
    )
    month = month.to_period("M").to_timestamp()
    return pd.DataFrame(
        {
            "uid": np.arange(n),
            "month": month,
            "x": rng.normal(size=n),
            "grade": rng.choice(["A", "B", "C"], n),
            "y": rng.integers(0, 2, n).astype(float),
        }
    ).sample(frac=1.0, random_state=seed, ignore_index=True)  # not in time order


def _assert_partition(df: pd.DataFrame, split) -> None:
    ids = np.concatenate([getattr(split, name)["uid"].to_numpy() for name in SPLITS])
    assert len(ids) == len(df)
    assert len(np.unique(ids)) == len(ids)
    assert set(ids) == set(df["uid"])
    for name in SPLITS:
        part = getattr(split, name)
        assert len(part) > 0, name
        # Rows are unchanged: joining back on the id gives the same values.
        merged = part.merge(df, on="uid", suffixes=("", "_orig"))
        assert len(merged) == len(part)
        np.testing.assert_array_equal(merged["x"], merged["x_orig"])
        assert (merged["month"] == merged["month_orig"]).all()


def test_time_split_puts_test_after_train_and_keeps_timestamps_together():
    df = _rows()
    split = split_rows(df, time_column="month", valid_fraction=0.15, test_fraction=0.15, seed=1)
    assert split.method == "time"
    _assert_partition(df, split)
    assert split.train["month"].max() < split.valid["month"].min()
    assert split.valid["month"].max() < split.test["month"].min()
    assert split.train["month"].max() < split.test["month"].min()
    # No timestamp is in two splits.
    times = [set(getattr(split, name)["month"]) for name in SPLITS]
    assert not (times[0] & times[1] or times[0] & times[2] or times[1] & times[2])
    # Shares are roughly as asked (cut at whole months of ~1/24 of the rows each).
    assert abs(len(split.test) / len(df) - 0.15) < 0.1
    assert abs(len(split.valid) / len(df) - 0.15) < 0.1


def test_time_split_with_few_distinct_times_falls_back_to_random():
    df = _rows(months=1)
    split = split_rows(df, time_column="month", valid_fraction=0.15, test_fraction=0.15, seed=1)
    assert split.method.startswith("random")
    _assert_partition(df, split)


def test_random_split_is_seeded():
    df = _rows()
    a = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=7)
    b = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=7)
    c = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=8)
    assert a.method == "random"
    for name in SPLITS:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert any(set(getattr(a, name)["uid"]) != set(getattr(c, name)["uid"]) for name in SPLITS)
    _assert_partition(df, a)
    _assert_partition(df, c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_split_shares_are_close_to_the_fractions(seed):
    df = _rows(n=2000, seed=seed)
    split = split_rows(df, time_column=None, valid_fraction=0.1, test_fraction=0.3, seed=seed)
    sizes = split.sizes()
    assert sum(sizes.values()) == len(df)
    # Binomial standard deviation is about 1% of the rows here: 5% is far outside chance.
    assert abs(sizes["test"] / len(df) - 0.3) < 0.05
    assert abs(sizes["valid"] / len(df) - 0.1) < 0.05


@pytest.mark.parametrize("n", [0, 1, 29])
def test_too_few_rows_raise(n):
    with pytest.raises(ValueError, match=f"{n} valid rows are too few"):
        split_rows(
            _rows().head(n), time_column=None, valid_fraction=0.15, test_fraction=0.15, seed=0
        )


def test_thirty_rows_are_enough():
    df = _rows().head(30)
    split = split_rows(df, time_column=None, valid_fraction=0.3, test_fraction=0.3, seed=0)
    assert sum(split.sizes().values()) == 30


# --- the features stage ------------------------------------------------------------------------


def _schema(time_column: str | None = "month") -> TableSchema:
    return TableSchema(
        dataset="d",
        target="y",
        task_type="binary",
        time_column=time_column,
        columns=[
            ColumnSpec("uid", "text", "id"),
            ColumnSpec("month", "time", "time"),
            ColumnSpec("x", "numeric"),
            ColumnSpec("grade", "categorical", categories=["A", "B", "C"]),
            ColumnSpec("y", "numeric", "target"),
        ],
    )


def test_build_features_writes_splits_transform_and_summary(tmp_path):
    df = _rows()
    valid_rows = tmp_path / "valid.parquet"
    df.to_parquet(valid_rows, index=False)
    out = {name: tmp_path / "features" / f"{name}.parquet" for name in SPLITS}
    out["transform"] = tmp_path / "features" / "transform.json"
    out["summary"] = tmp_path / "features" / "summary.json"
    params = FeaturesParams(valid_fraction=0.15, test_fraction=0.15, seed=3, tracking="disabled")
    result = build_features(params, schema=_schema(), valid_rows=valid_rows, out=out)

    assert result.split.method == "time"
    written = {name: pd.read_parquet(out[name]) for name in SPLITS}
    assert sum(len(part) for part in written.values()) == len(df)
    for name in SPLITS:
        pd.testing.assert_frame_equal(written[name], getattr(result.split, name), check_dtype=False)

    # The transform: the schema's numeric and categorical features, levels from the training rows.
    transform = FeatureTransform.load(out["transform"])
    assert transform.numeric == ["x"]
    assert transform.feature_names == ["x", "grade"]
    assert transform.categorical == {"grade": sorted(written["train"]["grade"].unique())}

    summary = json.loads(out["summary"].read_text())
    assert summary == result.summary
    assert summary["method"] == "time"
    for name in SPLITS:
        entry = summary["splits"][name]
        assert entry["rows"] == len(written[name])
        assert entry["target_mean"] == pytest.approx(written[name]["y"].mean())
        assert entry["from"] == str(written[name]["month"].min())
    table = split_table(result.summary)
    assert table["split"].tolist() == list(SPLITS)
    assert table["rows"].sum() == len(df)


def test_build_features_without_time_column_splits_at_random(tmp_path):
    df = _rows()
    valid_rows = tmp_path / "valid.parquet"
    df.to_parquet(valid_rows, index=False)
    out = {name: tmp_path / f"{name}.parquet" for name in (*SPLITS, "transform", "summary")}
    out["transform"] = tmp_path / "transform.json"
    out["summary"] = tmp_path / "summary.json"
    result = build_features(
        FeaturesParams(seed=3), schema=_schema(time_column=None), valid_rows=valid_rows, out=out
    )
    assert result.split.method == "random"
    assert "from" not in result.summary["splits"]["train"]
    _assert_partition(df, result.split)
