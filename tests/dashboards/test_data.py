"""nbops.dashboards.data: what the dashboards read, found through pipeline.yaml and the env file
(NBOPS_ENV), before any build and after a real one (the runners of every task, in process)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from nbops.dashboards.data import DashboardData, load_dashboard_data
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.monitoring.history import read_alerts, read_history


@pytest.fixture
def built(ran_in_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> DashboardData:
    """The dashboards' data of the in-process build, read as `make dashboard` reads it."""
    monkeypatch.setenv("NBOPS_PROJECT", str(ran_in_process["project"]))
    monkeypatch.setenv("NBOPS_ENV", "env.test.yaml")
    return load_dashboard_data()


def test_before_any_build_every_part_is_empty_and_says_never(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_PROJECT", str(project))
    data = load_dashboard_data("env.test.yaml")
    assert data.project == project.resolve()
    assert data.history.empty and data.alerts == [] and data.versions == []
    assert data.registry is None and data.production is None and data.profile is None and data.schema is None
    assert data.last_run is None and data.last_run_text == "never"
    assert data.class_labels() == ("1", "0")
    assert data.batch_path("2025-01") is None


def test_after_a_build_it_reads_that_builds_products(built: DashboardData, ran_in_process: dict[str, Any]) -> None:
    root = Path(ran_in_process["checked"].settings.root)
    history_file = root / "monitoring" / "history.parquet"
    pd.testing.assert_frame_equal(built.history, read_history(history_file))
    assert built.alerts == read_alerts(root / "monitoring" / "alerts.jsonl")
    assert built.registry is not None and built.registry.root == root / "registry" / "credit_risk"
    assert [v.version for v in built.versions] == ["v0001"]
    assert built.production is not None and built.production.version == "v0001"
    assert built.profile is not None and set(built.profile.features) == set(built.production.metadata["features"])
    assert built.schema is not None and built.schema.dataset == "credit_risk"
    assert built.last_run == history_file.stat().st_mtime
    assert built.last_run_text == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(history_file.stat().st_mtime))


def test_alert_rules_are_the_env_files(built: DashboardData, ran_in_process: dict[str, Any]) -> None:
    env = yaml.safe_load((ran_in_process["project"] / "env.test.yaml").read_text())
    rules = built.rules
    assert (rules.drift.psi, rules.drift.min_drifted_features) == (env["psi_threshold"], env["min_drifted_features"])
    assert (rules.max_auc_drop, rules.max_calibration_error) == (env["max_auc_drop"], env["max_calibration_error"])


def test_a_monitored_month_is_found_in_the_batches_folder(built: DashboardData) -> None:
    month = str(built.history["batch_id"].iloc[0])
    path = built.batch_path(month)
    assert path is not None and path.name == f"{month}.parquet" and path.exists()
    assert built.batch_path("1999-12") is None


def _labels_of(data: DashboardData, schema: TableSchema) -> tuple[str, str]:
    return dataclasses.replace(data, production=None, schema=schema).class_labels()


def test_the_class_labels_are_the_datas_own_words(built: DashboardData) -> None:
    assert built.class_labels() == ("1", "0")  # the simulator's 0/1 target: no names to use
    feature = ColumnSpec("tenure", "numeric", "feature")
    yes_no = ColumnSpec("churned", "categorical", "target", categories=["no", "yes"])
    churn = TableSchema("churn", "churned", "binary", [feature, yes_no], positive_class="yes")
    assert _labels_of(built, churn) == ("yes", "no")
    three = dataclasses.replace(yes_no, categories=["no", "yes", "maybe"])
    assert _labels_of(built, dataclasses.replace(churn, columns=[feature, three])) == ("yes", "not yes")
