"""`nbops estimate BATCH [--version V] [--json]` on a project copy whose registry holds a tiny real
model with its performance estimator: the estimate of a simulated month (labels kept in the table,
so the realised figures are printed beside it), as text, as JSON, as a process; and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbops.data.simulate import simulate_batch
from tests.support import copy_project, nbops, nbops_in_process, output_of
from tests.support.models import tiny_registered_model


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("estimate") / "project")
    tiny_registered_model(project, rows=6_000, rounds=30, wheel=False, estimator=True)
    batch, _ = simulate_batch(2, rows=5_000, seed=5, drift="gradual")
    batch.to_parquet(project / "month.parquet", index=False)
    shocked, _ = simulate_batch(2, rows=5_000, seed=5, drift="shock")
    shocked.to_parquet(project / "shocked.parquet", index=False)
    return project


def test_estimate_as_json_beside_the_realised_figures(project: Path) -> None:
    proc = nbops_in_process(project, "estimate", str(project / "month.parquet"), "--json")
    assert proc.returncode == 0, output_of(proc)
    out = json.loads(proc.stdout)
    assert out["version"] == "v0001" and out["rows"] == 5_000
    auc = out["metrics"]["roc_auc"]
    assert auc["low"] < auc["value"] < auc["high"]
    assert set(out["metrics"]) == {"roc_auc", "precision", "recall", "specificity", "accuracy", "f1"}
    realised = out["realised"]["roc_auc"]
    assert abs(auc["value"] - realised) < 0.05, (auc, realised)
    assert out["test_roc_auc"] == pytest.approx(out["reference"]["roc_auc"])


@pytest.mark.slow  # a new interpreter importing LightGBM: ~2 s
def test_estimate_as_a_user_types_it(project: Path) -> None:
    proc = nbops(project, "estimate", "month.parquet", "--version", "v0001")
    assert proc.returncode == 0, output_of(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "month.parquet: 5,000 rows, estimated with v0001 (CBPE; threshold 0.5)"
    auc = next(line for line in lines if line.strip().startswith("roc_auc"))
    assert " band " in auc and "(test " in auc and " realised " in auc
    assert "not concept drift" in lines[-1]


def test_a_drifted_month_says_why_its_band_is_wider(project: Path) -> None:
    """Under the simulator's shock, utilisation and debt-to-income go past anything the model was
    fitted on: the band is wider, and the command says so and why."""
    proc = nbops_in_process(project, "estimate", str(project / "shocked.parquet"))
    assert proc.returncode == 0, output_of(proc)
    widened = [line for line in proc.stdout.splitlines() if line.strip().startswith("band widened:")]
    assert len(widened) == 1, proc.stdout
    assert "of rows are beyond the model's range (" in widened[0] and "credit_utilization" in widened[0]
    assert "which the test split cannot vouch for: ROC AUC" in widened[0]
    clean = nbops_in_process(project, "estimate", str(project / "month.parquet"), "--json")
    shock = json.loads(nbops_in_process(project, "estimate", str(project / "shocked.parquet"), "--json").stdout)
    assert shock["gaps"][0]["kind"] == "beyond the model's range" and shock["gaps"][0]["rows"] > 0.05
    assert "credit_utilization" in shock["gaps"][0]["features"]
    assert json.loads(clean.stdout)["gaps"] == [] or all(
        g["kind"] != "values the model cannot read" for g in json.loads(clean.stdout)["gaps"]
    )


def test_a_version_without_an_estimator_says_what_to_do(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    tiny_registered_model(project, rows=2_000, rounds=5, wheel=False)
    batch, _ = simulate_batch(1, rows=300, seed=1)
    batch.to_parquet(project / "month.parquet", index=False)
    proc = nbops_in_process(project, "estimate", "month.parquet", cwd=project)
    assert proc.returncode == 2
    assert "has no performance_estimator.json: it was registered before nbops stored an estimator" in proc.stderr
    assert "register it again" in proc.stderr.splitlines()[-1]
    missing = nbops_in_process(project, "estimate", "nowhere.csv", cwd=project)
    assert missing.returncode == 2 and "nowhere.csv: file not found" in missing.stderr
