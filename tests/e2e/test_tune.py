"""The tune task in a build: its best parameters train the model that is registered; nothing
changed runs no trial; more trials resume the same study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import copy_project, nbops, output_of

pytestmark = pytest.mark.slow
SETS = ("--env", "env.test.yaml", "--set", "tracking=disabled")
ROOT = Path("build/test")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("tune") / "project")
    proc = nbops(project, "build", *SETS, "--set", "tune_trials=8")
    assert proc.returncode == 0, output_of(proc)[-4000:]
    return project


def test_the_best_parameters_train_the_registered_model(tuned: Path) -> None:
    best = json.loads((tuned / ROOT / "models/tuned_params.json").read_text())
    assert best["tuned"] and best["trials"] == 8 and best["ran_now"] == 8
    assert best["best_value"] <= best["default_value"]
    booster = json.loads((tuned / ROOT / "models/train_summary.json").read_text())["booster_params"]
    assert {k: booster[k] for k in best["best"]} == best["best"]
    version = json.loads((tuned / ROOT / "registry/credit_risk/versions/v0001/metadata.json").read_text())
    assert {k: version["params"][k] for k in best["best"]} == best["best"]
    page = (tuned / ROOT / "reports/02b_tune.html").read_text()
    assert "Optimisation history" not in page or "8 trials" in page  # figures are images; the note says it
    assert "<strong>8 trials</strong>" in page
    # every trial is a run in the index, under the tune task's own run
    listed = nbops(tuned, "runs", "--task", "tune", "--json", "--env", "env.test.yaml")
    assert listed.returncode == 0, output_of(listed)
    runs = (
        [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        if not listed.stdout.lstrip().startswith("[")
        else json.loads(listed.stdout)
    )
    trials = [r for r in runs if r.get("trial") is not None]
    assert sorted(r["trial"] for r in trials) == list(range(8))
    assert {r["outputs"]["state"] for r in trials} <= {"complete", "pruned"}


def test_nothing_changed_runs_no_trial_and_more_trials_resume(tuned: Path) -> None:
    again = nbops(tuned, "build", *SETS, "--set", "tune_trials=8")
    assert "Nothing changed" in output_of(again), output_of(again)[-2000:]
    more = nbops(tuned, "build", *SETS, "--set", "tune_trials=10")
    assert more.returncode == 0, output_of(more)[-3000:]
    assert "tune: parameter 'tune_trials' changed: 8 -> 10" in more.stdout
    best = json.loads((tuned / ROOT / "models/tuned_params.json").read_text())
    assert (best["trials"], best["ran_now"]) == (10, 2)
