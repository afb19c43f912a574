"""`nbops estimate` on the batch-scoring output: the scores the wheel wrote (``prediction``, with
``model_version``) are estimated as they are, without loading the model: the same estimate as scoring
the inputs again, a clear error for a file another version scored, and no LightGBM in the process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nbops.data.simulate import simulate_batch
from nbops.registry.store import Registry
from nbops.runtime.batch import score_file
from nbops.runtime.model import ScoringModel
from tests.support import copy_project, nbops_in_process, output_of
from tests.support.models import tiny_registered_model


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("estimate-scored") / "project")
    tiny_registered_model(project, rows=6_000, rounds=30, wheel=False, estimator=True)
    batch, _ = simulate_batch(2, rows=5_000, seed=5, drift="gradual")
    batch.drop(columns=["default"]).to_parquet(project / "month.parquet", index=False)
    version = Registry(project / "registry" / "credit_risk").alias("production")
    assert version is not None
    score_file(ScoringModel.from_folder(version.path), project / "month.parquet", project / "scored.parquet")
    # The scores beside the inputs they came from (a scoring job that keeps its inputs).
    scored = pd.read_parquet(project / "scored.parquet", columns=["prediction", "model_version"])
    pd.concat([pd.read_parquet(project / "month.parquet"), scored], axis=1).to_parquet(
        project / "scored_with_inputs.parquet", index=False
    )
    return project


def estimate_json(project: Path, table: str) -> dict:
    proc = nbops_in_process(project, "estimate", str(project / table), "--json")
    assert proc.returncode == 0, output_of(proc)
    return json.loads(proc.stdout)


def test_a_scored_file_with_its_inputs_gives_the_estimate_of_its_inputs(project: Path) -> None:
    scored, raw = estimate_json(project, "scored_with_inputs.parquet"), estimate_json(project, "month.parquet")
    assert scored["rows"] == raw["rows"] == 5_000 and scored["version"] == raw["version"] == "v0001"
    for name, m in raw["metrics"].items():
        assert scored["metrics"][name] == pytest.approx(m, rel=1e-9), name


def test_the_batch_scoring_output_is_estimated_from_its_scores(project: Path) -> None:
    """The wheel's output has the scores, not the inputs: the estimate reads the scores (no model is
    loaded), without the widening for inputs the reference lacks, so it is near the inputs' one."""
    scores, raw = estimate_json(project, "scored.parquet"), estimate_json(project, "month.parquet")
    assert set(pd.read_parquet(project / "scored.parquet").columns) >= {"prediction", "model_version"}
    assert scores["scores"] == "the table's 'prediction' column" and "scores" not in raw
    assert scores["rows"] == raw["rows"] == 5_000 and scores["version"] == "v0001"
    assert set(scores["metrics"]) == set(raw["metrics"])
    assert scores["metrics"]["roc_auc"]["value"] == pytest.approx(raw["metrics"]["roc_auc"]["value"], abs=0.02)


def test_a_file_scored_by_another_version_says_what_to_do(project: Path, tmp_path: Path) -> None:
    other = pd.read_parquet(project / "scored.parquet").assign(model_version="v0009")
    other.to_parquet(tmp_path / "other.parquet", index=False)
    proc = nbops_in_process(project, "estimate", str(tmp_path / "other.parquet"))
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "scored by v0009, not v0001" in last and "--version v0009" in last


@pytest.mark.slow  # a new interpreter importing pandas: about a second
def test_estimating_a_scored_file_never_imports_lightgbm(project: Path) -> None:
    probe = (
        "import sys\nfrom nbops.cli import main\ncode = main(sys.argv[1:])\n"
        "print('lightgbm' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)\nsys.exit(code)"
    )
    argv = ["--project", str(project), "estimate", "scored.parquet", "--json"]
    proc = subprocess.run([sys.executable, "-c", probe, *argv], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["version"] == "v0001"
    assert proc.stderr.strip().splitlines()[-1] == "False False"
