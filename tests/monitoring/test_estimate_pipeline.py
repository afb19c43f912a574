"""The estimator in the pipeline (the runners of every task, in process, with env.test.yaml): the
register stage stores it in the version (checksummed, JSON), the monitor stage records the estimate
of every comparable month beside the realised figures once the labels arrive, and the monitoring
dashboard says what the estimated line is and that it cannot see concept drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import pytest

from nbops.dashboards.data import load_dashboard_data
from nbops.dashboards.widgets import monitoring_dashboard
from nbops.monitoring.estimate import load_estimator
from nbops.registry.store import Registry
from nbops.runtime.integrity import ESTIMATOR_FILE, MANIFEST


def production(ran_in_process: dict[str, Any]) -> Any:
    root = Path(ran_in_process["checked"].settings.root)
    version = Registry(json.loads((root / "models" / "registration.json").read_text())["registry"]).alias("production")
    assert version is not None
    return version


def test_the_register_stage_stores_the_estimator_calibrated_on_the_test_split(ran_in_process: dict[str, Any]) -> None:
    version = production(ran_in_process)
    assert ESTIMATOR_FILE in json.loads(version.file(MANIFEST).read_text())["files"]  # checksummed like the model
    estimator = load_estimator(version.path)
    assert estimator is not None
    root = Path(ran_in_process["checked"].settings.root)
    test_rows = len(pd.read_parquet(root / "data" / "processed" / "test_predictions.parquet"))
    assert estimator.reference_rows == test_rows
    assert estimator.reference["roc_auc"] == pytest.approx(version.metadata["metrics"]["roc_auc"], abs=1e-9)


def test_the_monitor_records_the_estimate_beside_the_realised_figures(ran_in_process: dict[str, Any]) -> None:
    root = Path(ran_in_process["checked"].settings.root)
    history = pd.read_parquet(root / "monitoring" / "history.parquet")
    comparable = history[history["labels"].isin(["arrived", "pending"])]
    assert len(comparable) and comparable["est__roc_auc"].notna().all()
    assert (comparable["est__roc_auc_low"] < comparable["est__roc_auc"]).all()
    assert (comparable["est__roc_auc"] < comparable["est__roc_auc_high"]).all()
    labelled = comparable[comparable["labels"] == "arrived"]
    assert len(labelled) and labelled["perf__roc_auc"].notna().all()
    assert np.isfinite(labelled["est__roc_auc"]).all()


def test_the_dashboard_explains_the_estimate_and_concept_drift(
    ran_in_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBOPS_PROJECT", str(ran_in_process["project"]))
    monkeypatch.setenv("NBOPS_ENV", "env.test.yaml")
    page = monitoring_dashboard(load_dashboard_data())
    html: list[str] = []

    def walk(widget: w.Widget) -> None:
        if isinstance(widget, w.HTML):
            html.append(widget.value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(page)
    text = "".join(html)
    assert "cannot see concept drift" in text and "realised performance catches that once the labels arrive" in text
    assert 'data-role="estimate"' in text and 'data-role="estimate-band"' in text
