"""Training: deterministic for a seed, saved as text, early stopping trims, threads resolved sanely."""

from __future__ import annotations

import json
import os

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.config.params import TrainParams
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.modeling.train import booster_params, learning_curve, resolve_threads, train_model
from nbops.runtime.transform import FeatureTransform

SCHEMA = TableSchema(
    dataset="toy",
    target="y",
    task_type="binary",
    columns=[
        ColumnSpec("signal", "numeric"),
        ColumnSpec("noise", "numeric"),
        ColumnSpec("grade", "categorical", categories=["A", "B", "C"]),
        ColumnSpec("y", "numeric", "target"),
    ],
)


def _rows(n: int, seed: int, informative: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    grade = rng.choice(["A", "B", "C"], n)
    logit = 2.0 * signal + (grade == "C") if informative else np.zeros(n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "grade": grade, "y": y})


def _params(**kw) -> TrainParams:
    base = dict(
        num_threads=1,
        num_boost_round=40,
        early_stopping_rounds=10,
        learning_rate=0.1,
        num_leaves=7,
        min_data_in_leaf=20,
        tracking="disabled",
    )
    return TrainParams(**{**base, **kw})


def _train(
    tmp_path,
    name: str,
    params: TrainParams,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    schema=SCHEMA,
):
    transform = FeatureTransform.fit(train, ["signal", "noise"], ["grade"])
    return train_model(
        params,
        schema=schema,
        transform=transform,
        train_rows=train,
        valid_rows=valid,
        model_out=tmp_path / name / "model.txt",
        summary_out=tmp_path / name / "train_summary.json",
    )


def test_same_data_and_seed_give_byte_identical_model_files(tmp_path):
    train, valid = _rows(800, 1), _rows(300, 2)
    a = _train(tmp_path, "a", _params(), train, valid)
    b = _train(tmp_path, "b", _params(), train, valid)
    bytes_a = (tmp_path / "a" / "model.txt").read_bytes()
    bytes_b = (tmp_path / "b" / "model.txt").read_bytes()
    assert bytes_a == bytes_b
    assert a.best_iteration == b.best_iteration
    # A different seed changes the model (bagging and feature sampling are seeded).
    _train(tmp_path, "c", _params(seed=7), train, valid)
    assert (tmp_path / "c" / "model.txt").read_bytes() != bytes_a


def test_saved_model_is_lightgbm_text_trimmed_to_the_best_iteration(tmp_path):
    train, valid = _rows(800, 1), _rows(300, 2)
    result = _train(tmp_path, "m", _params(), train, valid)
    path = tmp_path / "m" / "model.txt"
    text = path.read_text()
    assert text.startswith("tree")
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    reloaded = lgb.Booster(model_file=str(path))
    assert reloaded.num_trees() == result.best_iteration  # binary: one tree per round
    assert result.booster.num_trees() == result.best_iteration
    assert reloaded.feature_name() == ["signal", "noise", "grade"]
    # The returned booster predicts exactly as the file does.
    x = FeatureTransform.fit(train, ["signal", "noise"], ["grade"]).transform(valid)
    np.testing.assert_array_equal(result.booster.predict(x), reloaded.predict(x))
    # And it learned the signal: higher signal, higher predicted risk (Spearman > 0.5).
    p = reloaded.predict(x)
    assert pd.Series(p).corr(valid["signal"], method="spearman") > 0.5


def test_summary_file_records_the_training(tmp_path):
    train, valid = _rows(800, 1), _rows(300, 2)
    result = _train(tmp_path, "m", _params(), train, valid)
    written = json.loads((tmp_path / "m" / "train_summary.json").read_text())
    summary = written["summary"]
    assert summary["best_iteration"] == result.best_iteration
    assert summary["train_rows"] == len(train) and summary["valid_rows"] == len(valid)
    assert summary["num_threads"] == 1
    assert summary["features"] == ["signal", "noise", "grade"]
    curve = result.history["valid"]["binary_logloss"]
    assert summary["valid_binary_logloss"] == pytest.approx(curve[result.best_iteration - 1])
    assert summary["trees_trained"] == len(curve)
    assert written["booster_params"]["seed"] == 42
    assert written["booster_params"]["deterministic"] is True


def test_early_stopping_trims_on_a_noisy_target(tmp_path):
    train, valid = _rows(600, 3, informative=False), _rows(300, 4, informative=False)
    params = _params(
        num_boost_round=300,
        early_stopping_rounds=5,
        learning_rate=0.3,
        num_leaves=15,
        min_data_in_leaf=5,
    )
    result = _train(tmp_path, "noise", params, train, valid)
    assert result.best_iteration < params.num_boost_round
    trained = len(result.history["valid"]["binary_logloss"])
    assert trained < params.num_boost_round  # it stopped early, not at the last round
    assert trained == result.best_iteration + params.early_stopping_rounds
    curve = np.array(result.history["valid"]["binary_logloss"])
    assert curve[result.best_iteration - 1] == curve.min()
    assert result.booster.num_trees() == result.best_iteration


def test_regression_task_trains(tmp_path):
    rng = np.random.default_rng(5)

    def rows(n):
        df = _rows(n, int(rng.integers(1_000)))
        df["y"] = 3 * df["signal"] + rng.normal(scale=0.3, size=n)
        return df

    schema = TableSchema("toy", "y", "regression", SCHEMA.columns)
    train, valid = rows(800), rows(300)
    result = _train(tmp_path, "reg", _params(num_boost_round=100), train, valid, schema=schema)
    assert "valid_l2" in result.summary
    x = FeatureTransform.fit(train, ["signal", "noise"], ["grade"]).transform(valid)
    residual = valid["y"].to_numpy() - result.booster.predict(x)
    assert np.mean(residual**2) < 0.5 * np.var(valid["y"])


# --- threads and parameters --------------------------------------------------------------------


def test_resolve_threads_divides_the_cores_by_the_tasks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_threads(0, 1) == 2
    assert resolve_threads(0, 2) == 1
    assert resolve_threads(0, 5) == 1  # never zero
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert resolve_threads(0, 2) == 4
    assert resolve_threads(0, 3) == 2


@pytest.mark.parametrize("explicit", [1, 3, 16])
def test_explicit_thread_count_wins(monkeypatch, explicit):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_threads(explicit, 1) == explicit
    assert resolve_threads(explicit, 4) == explicit


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) != 2,
    reason="checks the 2-core machine the project is developed on",
)
def test_resolve_threads_on_this_two_core_machine():
    assert resolve_threads(0, 2) == 1
    assert resolve_threads(0, 1) == 2


def test_booster_params_seed_every_source_of_randomness():
    p = booster_params(_params(seed=11, bagging_fraction=0.7), "binary")
    assert p["seed"] == 11 and p["deterministic"] is True
    assert p["objective"] == "binary" and p["metric"][0] == "binary_logloss"
    assert p["bagging_freq"] == 1
    assert booster_params(_params(bagging_fraction=1.0), "regression")["bagging_freq"] == 0
    assert booster_params(_params(), "regression")["objective"] == "regression"


def test_learning_curve_marks_the_best_iteration():
    history = {"train": {"l2": [3.0, 2.0, 1.0]}, "valid": {"l2": [3.5, 2.5, 2.7]}}
    fig = learning_curve(history, 2)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["train", "valid", "best iteration 2"]
    np.testing.assert_array_equal(lines[1].get_ydata(), [3.5, 2.5, 2.7])
