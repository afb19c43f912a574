"""Train/valid/test split (time-ordered or seeded random) and the features stage that writes it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbops.config.params import FeaturesParams
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.features.build import build_features, split_table
from nbops.features.split import SPLITS, split_rows
from nbops.runtime.transform import FeatureTransform


def _rows(n: int = 400, seed: int = 0, months: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    month = pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, months, n) * 31, unit="D")
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
        split_rows(_rows().head(n), time_column=None, valid_fraction=0.15, test_fraction=0.15, seed=0)


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
    result = build_features(FeaturesParams(seed=3), schema=_schema(time_column=None), valid_rows=valid_rows, out=out)
    assert result.split.method == "random"
    assert "from" not in result.summary["splits"]["train"]
    _assert_partition(df, result.split)


# --- stratification of binary targets ------------------------------------------------------------


def _binary_table(n: int = 569, positive_share: float = 0.4, seed: int = 0, months: int | None = None) -> pd.DataFrame:
    """A generated binary table (the size of the one that showed the problem: 569 rows, ~40% positive)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"uid": np.arange(n), "x": rng.normal(size=n), "y": (rng.random(n) < positive_share).astype(float)}
    )
    if months:
        df["month"] = (
            (pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, months, n) * 31, unit="D"))
            .to_period("M")
            .to_timestamp()
        )
    return df


def _rates_within_tolerance(df: pd.DataFrame, split) -> list[str]:
    overall = df["y"].mean()
    problems = []
    for name in SPLITS:
        part = getattr(split, name)
        rate = part["y"].mean()
        if abs(rate - overall) > 1 / len(part) + 0.01:
            problems.append(f"{name}: positive rate {rate:.3f} over {len(part)} rows against {overall:.3f} overall")
    return problems


@pytest.mark.parametrize("seed", range(8))
def test_stratified_random_split_keeps_the_positive_rate_in_every_split(seed):
    df = _binary_table(seed=seed)
    split = split_rows(df, time_column=None, valid_fraction=0.15, test_fraction=0.15, seed=seed, stratify="y")
    assert _rates_within_tolerance(df, split) == []
    assert split.method == "random" and split.stratified_by == "y"
    assert split.description() == "random, stratified by y"
    ids = np.concatenate([getattr(split, name)["uid"].to_numpy() for name in SPLITS])
    assert sorted(ids) == df["uid"].tolist()  # every row in exactly one split
    # The shares asked for, to the row (the totals are apportioned, not drawn).
    assert split.sizes() == {"train": 569 - 85 - 85, "valid": 85, "test": 85}


def test_stratified_split_is_seeded_and_differs_by_seed():
    df = _binary_table()
    a = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=5, stratify="y")
    b = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=5, stratify="y")
    c = split_rows(df, time_column=None, valid_fraction=0.2, test_fraction=0.2, seed=6, stratify="y")
    for name in SPLITS:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert set(a.test["uid"]) != set(c.test["uid"])


def test_stratified_split_of_a_rare_class_still_fills_every_split():
    df = _binary_table(n=40, positive_share=0.0)
    df.loc[[3, 11], "y"] = 1.0  # two positives in 40 rows
    split = split_rows(df, time_column=None, valid_fraction=0.1, test_fraction=0.1, seed=0, stratify="y")
    assert all(n > 0 for n in split.sizes().values())
    assert sum(split.sizes().values()) == 40
    assert split.train["y"].sum() >= 1  # the training split keeps at least one of each class


def test_time_ordered_split_is_unchanged_by_stratification():
    df = _binary_table(n=2000, months=24)
    plain = split_rows(df, time_column="month", valid_fraction=0.15, test_fraction=0.15, seed=1)
    asked = split_rows(df, time_column="month", valid_fraction=0.15, test_fraction=0.15, seed=1, stratify="y")
    assert asked.method == "time" and asked.stratified_by is None
    for name in SPLITS:
        pd.testing.assert_frame_equal(getattr(plain, name), getattr(asked, name))


def test_unstratified_random_split_is_unchanged():
    """Without ``stratify`` the random split is the same draw as before (the Dask split repeats it)."""
    df = _binary_table(n=1000)
    u = np.random.default_rng(3).random(len(df))
    split = split_rows(df, time_column=None, valid_fraction=0.15, test_fraction=0.15, seed=3)
    assert split.stratified_by is None
    assert split.test["uid"].tolist() == df["uid"][u < 0.15].tolist()
    assert split.valid["uid"].tolist() == df["uid"][(u >= 0.15) & (u < 0.3)].tolist()


def test_features_stage_stratifies_a_binary_target_without_time_column(tmp_path):
    df = _binary_table(seed=0)  # unstratified, this seed gives valid 0.354 and test 0.438 against 0.404
    df["grade"] = np.random.default_rng(2).choice(["A", "B", "C"], len(df))
    df["month"] = pd.Timestamp("2024-01-01")
    valid_rows = tmp_path / "valid.parquet"
    df.to_parquet(valid_rows, index=False)
    out = {name: tmp_path / f"{name}.parquet" for name in SPLITS}
    out["transform"] = tmp_path / "transform.json"
    out["summary"] = tmp_path / "summary.json"
    result = build_features(FeaturesParams(seed=0), schema=_schema(time_column=None), valid_rows=valid_rows, out=out)
    assert _rates_within_tolerance(df, result.split) == []
    summary = json.loads(out["summary"].read_text())
    assert summary["method"] == "random" and summary["stratified_by"] == "y"
    # The report's table names the target's mean in the data's words.
    table = split_table(summary)
    assert list(table.columns) == ["split", "rows", "rate of y = 1"]
    assert table["rows"].dtype.kind == "i"


def test_features_stage_does_not_stratify_a_regression_target(tmp_path):
    df = _binary_table(seed=4).assign(y=lambda d: d["x"] * 3.0, grade="A", month=pd.Timestamp("2024-01-01"))
    valid_rows = tmp_path / "valid.parquet"
    df.to_parquet(valid_rows, index=False)
    out = {name: tmp_path / f"{name}.parquet" for name in SPLITS}
    out["transform"] = tmp_path / "transform.json"
    out["summary"] = tmp_path / "summary.json"
    schema = _schema(time_column=None)
    schema.task_type = "regression"
    result = build_features(FeaturesParams(seed=4), schema=schema, valid_rows=valid_rows, out=out)
    assert result.split.stratified_by is None and "stratified_by" not in result.summary
    assert list(split_table(result.summary).columns) == ["split", "rows", "mean y"]
