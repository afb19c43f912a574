"""Continuous training end to end: build, retrain (labelled months join, the gate decides), retrain
again (not needed), build (a no-op)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbops.pipeline.retrain import (
    load_state,
)
from tests.support import copy_project, nbops, output_of

pytestmark = pytest.mark.slow


def test_retrain_end_to_end(tmp_path: Path) -> None:
    """Build; retrain (labelled months join, ingest onward reruns, the gate decides); retrain again
    (not needed, nothing runs); build (a no-op: it reads labelled_through from the retrain state)."""
    project = copy_project(tmp_path / "project")
    root = project / "build" / "test"
    env = (
        "--env",
        "env.test.yaml",
        "--set",
        "tracking=disabled",
    )  # W&B is tested elsewhere; this saves seconds per stage
    proc = nbops(project, "build", *env)
    assert proc.returncode == 0, output_of(proc)[-5000:]

    proc = nbops(project, "retrain", "--if-needed", *env)
    out = output_of(proc)
    assert proc.returncode == 0, out[-5000:]
    assert "retrain needed: yes" in out
    assert "labels arrived for 2025-01..2025-04 (4 months)" in out  # env.test.yaml: 6 months, labels 2 months late
    assert "Reran 9 of 9 tasks: ingest, features, tune, train" in out
    assert "promotion gate: candidate roc_auc" in out
    summary = json.loads((root / "data/interim/ingest_summary.json").read_text())
    assert summary["labelled_months"] == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert summary["rows_read"] == 5000 + 4 * 1000
    registration = json.loads((root / "models/registration.json").read_text())
    assert registration["version"] == "v0002"
    gate = json.loads((root / "reports/promotion_gate.json").read_text())
    assert gate["production_version"] == "v0001"
    assert registration["promoted"] == gate["promote"]
    assert registration["aliases"]["production"] == ("v0002" if gate["promote"] else "v0001")
    state = load_state(root)
    assert state["labelled_through"] == "2025-04" and state["status"] == "ok"

    proc = nbops(project, "retrain", "--if-needed", *env)
    out = output_of(proc)
    assert proc.returncode == 0, out[-5000:]
    assert "retrain needed: no" in out and "no new labelled months since 2025-04" in out and "Not retraining." in out
    builds = (root / "reports/builds.jsonl").read_text().splitlines()

    proc = nbops(project, "build", *env)
    assert proc.returncode == 0, output_of(proc)[-5000:]
    assert "Nothing changed" in proc.stdout, proc.stdout[-3000:]
    # neither the second retrain nor the rebuild started a Ploomber build
    assert (root / "reports/builds.jsonl").read_text().splitlines() == builds
