"""The promotion gate: decide() for both tasks and tolerances, and production metrics from a registered model."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.modeling.metrics import GATE_METRIC, task_metrics
from nbops.registry.gate import GateDecision, decide, production_metrics_on
from nbops.registry.store import Registry
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import FieldSpec, InputSchema
from nbops.runtime.transform import FeatureTransform

# -- decide --------------------------------------------------------------------------------------


def test_gate_metrics_per_task():
    assert GATE_METRIC == {
        "binary": ("roc_auc", True),
        "multiclass": ("log_loss", False),
        "regression": ("rmse", False),
    }


@pytest.mark.parametrize(("task", "metric", "value"), [("binary", "roc_auc", 0.71), ("regression", "rmse", 3.5)])
def test_first_model_is_promoted(task, metric, value):
    d = decide(task, {metric: value, "other": 1.0}, None, None, 0.005)
    assert d.promote is True
    assert "no production model yet" in d.reason and "first model is promoted" in d.reason
    assert (d.metric, d.candidate, d.production, d.production_version, d.tolerance) == (
        metric,
        value,
        None,
        None,
        0.005,
    )


@pytest.mark.parametrize(
    ("task", "metric", "candidate", "production"),
    [("binary", "roc_auc", 0.80, 0.75), ("regression", "rmse", 2.0, 2.5)],
)
def test_better_candidate_is_promoted(task, metric, candidate, production):
    d = decide(task, {metric: candidate}, {metric: production}, "v0001", 0.005)
    assert d.promote is True
    assert "promote" in d.reason and "keep production" not in d.reason
    assert f"{candidate:.4f}" in d.reason and f"{production:.4f}" in d.reason
    assert ("+0.0500" if task == "binary" else "+0.5000") in d.reason
    assert (d.candidate, d.production, d.production_version) == (candidate, production, "v0001")


@pytest.mark.parametrize(
    ("task", "metric", "candidate", "production"),
    # worse by 0.002, tolerance 0.005
    [("binary", "roc_auc", 0.798, 0.800), ("regression", "rmse", 2.002, 2.000)],
)
def test_slightly_worse_candidate_within_tolerance_is_promoted(task, metric, candidate, production):
    d = decide(task, {metric: candidate}, {metric: production}, "v0003", 0.005)
    assert d.promote is True
    assert "not worse beyond the tolerance, promote" in d.reason
    assert "-0.0020" in d.reason


@pytest.mark.parametrize(
    ("task", "metric", "candidate", "production", "word"),
    [
        ("binary", "roc_auc", 0.7812, 0.8034, "higher"),
        ("regression", "rmse", 2.1234, 2.0034, "lower"),
    ],
)
def test_worse_candidate_beyond_tolerance_is_held(task, metric, candidate, production, word):
    d = decide(task, {metric: candidate}, {metric: production}, "v0002", 0.005)
    assert d.promote is False
    assert "keep production" in d.reason
    assert f"{candidate:.4f}" in d.reason and f"{production:.4f}" in d.reason
    assert f"{word} is better" in d.reason
    assert "tolerance 0.005" in d.reason


@pytest.mark.parametrize(
    ("task", "metric", "candidate", "production"),
    # exactly representable in binary floating point: delta is exactly -0.125
    [("binary", "roc_auc", 0.625, 0.75), ("regression", "rmse", 2.125, 2.0)],
)
def test_exact_boundary_is_promoted(task, metric, candidate, production):
    d = decide(task, {metric: candidate}, {metric: production}, "v0001", 0.125)
    assert d.promote is True
    # a little further (beyond float rounding, which the gate forgives) is held
    nudged = candidate - 1e-9 if task == "binary" else candidate + 1e-9
    assert decide(task, {metric: nudged}, {metric: production}, "v0001", 0.125).promote is False


def test_zero_tolerance_promotes_an_equal_candidate_only():
    assert decide("binary", {"roc_auc": 0.8}, {"roc_auc": 0.8}, "v0001", 0.0).promote is True
    assert decide("binary", {"roc_auc": 0.7999}, {"roc_auc": 0.8}, "v0001", 0.0).promote is False


def test_boundary_with_decimal_values_is_promoted():
    d = decide("binary", {"roc_auc": 0.795}, {"roc_auc": 0.800}, "v0001", 0.005)
    assert d.promote is True, d.reason


def test_decision_table_has_both_rows():
    d = decide("binary", {"roc_auc": 0.81}, {"roc_auc": 0.79}, "v0004", 0.005)
    table = d.table()
    assert list(table.columns) == ["model", "roc_auc"]
    assert table["model"].tolist() == ["candidate (this build)", "production (v0004)"]
    assert table["roc_auc"].tolist() == [0.81, 0.79]
    first = decide("regression", {"rmse": 1.5}, None, None, 0.01).table()
    assert first["model"].tolist() == ["candidate (this build)", "production (none yet)"]
    assert first["rmse"].iloc[0] == 1.5 and pd.isna(first["rmse"].iloc[1])


def test_decision_to_dict_round_trips():
    d = decide("regression", {"rmse": 1.5}, {"rmse": 1.4}, "v0002", 0.2)
    assert GateDecision(**json.loads(json.dumps(d.to_dict()))) == d


# -- production metrics from a registered version -------------------------------------------------


def _rows(task: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    grade = rng.choice(["A", "B", "C"], n)
    signal = 2 * x + (grade == "C")
    y = (
        (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(float)
        if task == "binary"
        else signal + rng.normal(scale=0.3, size=n)
    )
    return pd.DataFrame({"x": x, "grade": grade, "y": y})


def _register(root: Path, task: str) -> tuple[Registry, lgb.Booster, FeatureTransform]:
    train = _rows(task, 400, 1)
    ft = FeatureTransform.fit(train, ["x"], ["grade"])
    params = {
        "objective": task,
        "num_leaves": 4,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "verbose": -1,
        "seed": 1,
    }
    booster = lgb.train(
        params,
        lgb.Dataset(ft.transform(train), train["y"], categorical_feature=ft.categorical_indices),
        num_boost_round=15,
    )
    schema = InputSchema([FieldSpec("x", "numeric"), FieldSpec("grade", "categorical", categories=["A", "B", "C"])])
    files = {
        "model.txt": booster.model_to_string().encode(),
        "feature_transform.json": json.dumps(ft.to_dict()).encode(),
        "input_schema.json": json.dumps(schema.to_dict()).encode(),
    }
    registry = Registry(root)
    registry.register(files, {"task_type": task, "dataset": "toy"})
    return registry, booster, ft


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_production_metrics_on_a_holdout_match_a_direct_computation(tmp_path, task):
    registry, booster, ft = _register(tmp_path / "registry", task)
    production = ScoringModel.from_folder(registry.get("v0001").path)
    assert production.version == "v0001" and production.task_type == task
    holdout = _rows(task, 300, 7)
    # the production model picks its own columns by name: column order and extra columns do not matter
    shuffled = holdout.assign(extra=1.0)[["extra", "y", "grade", "x"]]
    got = production_metrics_on(production, shuffled, "y", task)
    expected = task_metrics(task, holdout["y"].to_numpy(float), booster.predict(ft.transform(holdout)))
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, rel=1e-12)
    metric = GATE_METRIC[task][0]
    assert metric in got
    assert (got[metric] > 0.6) if task == "binary" else (got[metric] < 1.5)  # the tiny model learned something
    # and the gate accepts them as the production side
    d = decide(task, got, got, "v0001", 0.0)
    assert d.promote is True and d.production == got[metric]
