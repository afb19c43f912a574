"""The pipeline's eight runners called in one process in DAG order, with the parameters and paths
a build gives the notebooks (tests/support/builds.py): the library end to end, without Ploomber,
notebooks or kernels. What each runner returns is what its notebook shows; its products are what
the next task reads."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.pipeline.check import check_project
from nbops.registry.store import Registry
from nbops.runtime.model import ScoringModel
from tests.support.builds import runner, stage_of

ONLY_PLOOMBER_WRITES = {"nb", "html"}  # the executed notebook and its report


def products(run: dict[str, Any], task: str) -> dict[str, Path]:
    spec = next(t for t in run["checked"].tasks if t.name == task)
    return {k: Path(v) for k, v in spec.product.items()}


def test_every_product_a_runner_owns_is_written_under_the_pipeline_root(ran_in_process: dict[str, Any]) -> None:
    root = Path(ran_in_process["checked"].settings.root)
    assert root == ran_in_process["project"] / "build" / "test"
    missing = [
        f"{task.name}.{key}: {path}"
        for task in ran_in_process["checked"].tasks
        for key, path in task.product.items()
        if key not in ONLY_PLOOMBER_WRITES and not Path(path).exists()
    ]
    assert missing == []
    for task in ran_in_process["checked"].tasks:
        assert all(Path(p).is_relative_to(root) for p in task.product.values()), task.name
    # The registry is the one a build writes: <root>/registry, never the project folder's.
    assert [v.version for v in Registry(root / "registry" / "credit_risk").versions()] == ["v0001"]
    assert not (ran_in_process["project"] / "registry").exists()


def test_ingest_and_features_account_for_every_row(ran_in_process: dict[str, Any]) -> None:
    ingest, features = ran_in_process["results"]["ingest"], ran_in_process["results"]["features"]
    summary = ingest.summary()
    assert summary["rows_read"] == ran_in_process["overrides"]["rows"]
    assert summary["rows_valid"] + summary["rows_quarantined"] == summary["rows_read"]
    sizes = features.split.sizes()
    assert sum(sizes.values()) == summary["rows_valid"] and min(sizes.values()) > 0
    written = {name: len(pd.read_parquet(products(ran_in_process, "features")[name])) for name in sizes}
    assert written == sizes
    # time-ordered: every training row is before every test row
    train, test = features.split.train, features.split.test
    assert train[ingest.schema.time_column].max() <= test[ingest.schema.time_column].min()


def test_train_saves_the_booster_it_returns_cut_at_its_best_iteration(ran_in_process: dict[str, Any]) -> None:
    result = ran_in_process["results"]["train"]
    model = products(ran_in_process, "train")["model"]
    saved = lgb.Booster(model_file=str(model))
    assert 1 <= result.best_iteration <= ran_in_process["overrides"]["num_boost_round"]
    assert saved.current_iteration() == result.best_iteration == result.booster.current_iteration()
    summary = json.loads(products(ran_in_process, "train")["summary"].read_text())
    assert summary["summary"]["best_iteration"] == result.best_iteration
    assert products(ran_in_process, "train")["learning_curve"].read_bytes().startswith(b"\x89PNG")


def test_evaluate_shows_the_metrics_it_writes_and_the_first_model_passes_the_gate(
    ran_in_process: dict[str, Any],
) -> None:
    evaluation, gate = ran_in_process["results"]["evaluate"]
    written = json.loads(products(ran_in_process, "evaluate")["metrics"].read_text())
    assert written["metrics"] == pytest.approx(evaluation.metrics)
    assert evaluation.metrics["roc_auc"] > 0.6  # the simulator's signal, learned from 1,400 rows
    assert gate.promote and gate.production_version is None  # nothing in production yet
    assert json.loads(products(ran_in_process, "evaluate")["gate"].read_text())["promote"] is True


def test_the_registered_model_scores_the_test_split_as_evaluate_did(ran_in_process: dict[str, Any]) -> None:
    """Training/serving parity through the registry: the version's files (no notebook state) give
    the predictions evaluate measured."""
    registration = ran_in_process["results"]["register"]
    assert registration.created and registration.promoted and registration.version.version == "v0001"
    model = ScoringModel.from_folder(registration.version.path)
    test = pd.read_parquet(products(ran_in_process, "features")["test"])
    measured = pd.read_parquet(products(ran_in_process, "evaluate")["predictions"])["prediction"].to_numpy()
    np.testing.assert_allclose(model.predict(test), measured, rtol=0, atol=1e-12)


def test_the_wheel_scores_the_batch_with_the_production_version(ran_in_process: dict[str, Any]) -> None:
    package, scored = ran_in_process["results"]["package"], ran_in_process["results"]["batch_score"]
    assert Path(package["wheel"]).is_file() and package["model_version"] == "v0001"
    predictions = pd.read_parquet(products(ran_in_process, "batch_score")["predictions"])
    assert scored["rows"] == len(predictions) == ran_in_process["overrides"]["batch_rows"]
    assert (predictions["model_version"] == "v0001").all()
    assert predictions["prediction"].between(0, 1).all()


def test_monitor_records_each_month_and_labels_arrive_later(ran_in_process: dict[str, Any]) -> None:
    run = ran_in_process["results"]["monitor"]
    months = ran_in_process["overrides"]["production_months"]
    delay = ran_in_process["checked"].settings.label_delay
    history = pd.read_parquet(products(ran_in_process, "monitor")["history"])
    assert len(history) == len(run.history) == months
    labelled = history["perf__roc_auc"].notna()
    assert int(labelled.sum()) == months - delay  # only the months whose labels have arrived
    assert list(history.loc[labelled, "batch_id"]) == sorted(history["batch_id"])[: months - delay]
    assert len(run.truth) == months and set(run.plots) == {"drift_heatmap", "performance"}


def test_training_again_gives_the_same_model_file(ran_in_process: dict[str, Any], tmp_path: Path) -> None:
    """Deterministic for a seed, without Ploomber: the same stage into another file, byte for byte."""
    stage = stage_of(ran_in_process["checked"], "train")
    again = {**stage.product, "model": tmp_path / "model.txt", "summary": tmp_path / "summary.json"}
    again["learning_curve"] = tmp_path / "curve.png"
    runner("train")(dataclasses.replace(stage, product=again))
    assert (tmp_path / "model.txt").read_bytes() == stage.product["model"].read_bytes()


def test_registering_the_same_model_again_creates_no_version(ran_in_process: dict[str, Any], tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ran_in_process["project"], project, symlinks=True)
    checked = check_project(project, "env.test.yaml", ran_in_process["overrides"])
    registration = runner("register")(stage_of(checked, "register"))
    assert (registration.version.version, registration.created, registration.promoted) == ("v0001", False, False)
    registry = Registry(Path(checked.settings.root) / "registry" / "credit_risk")
    assert [v.version for v in registry.versions()] == ["v0001"]
    assert registry.history()[-1]["reason"] == "re-registered (identical model)"
    # the report's card is the version's, with what happened to the version since
    card = stage_of(checked, "register").product["card"] / "card.md"
    text = card.read_text()
    assert text.startswith(registry.get("v0001").file("card.md").read_text())
    history = text.split("## History\n", 1)[1]
    assert [line.split(" | ")[1] for line in history.splitlines()[2:]] == [
        "register",
        "candidate",
        "promote",
        "candidate",
    ]
    assert "re-registered (identical model)" in history
