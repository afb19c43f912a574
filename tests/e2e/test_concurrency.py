"""Two real builds of one project at once (the issue's reproduction): the second waits for the
first, saying who holds the root; afterwards the registry, aliases, lineage and products agree and
the next build is a true no-op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbops.config import paths
from nbops.locks import holders
from tests.support import copy_project, nbops, output_of

pytestmark = pytest.mark.slow
ROOT = Path("build/test")


def start_build(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false"}
    env.pop("NBOPS_PROJECT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "nbops", "--project", str(project), "build", "--env", "env.test.yaml", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_builds_at_once_leave_one_consistent_state(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    lock = project / ROOT / paths.BUILD_LOCK
    first = start_build(project, "--force", "--set", "learning_rate=0.1", "--set", "tracking=disabled")
    deadline = time.monotonic() + 60
    while not holders(lock) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holders(lock), "the first build never took the root's lock"
    second = start_build(project, "--force", "--set", "learning_rate=0.07", "--set", "tracking=disabled")
    out_first = first.communicate(timeout=600)
    out_second = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, out_first[1][-3000:] + out_second[1][-3000:]
    # the second said whom it waited for, in the words of the first's command line
    assert "waiting: `nbops --project" in out_second[1] and "learning_rate=0.1" in out_second[1]
    assert f"pid {first.pid}," in out_second[1]
    # each build reports its own model, trained with its own value
    assert "this build's model is v0001" in out_first[0] and "this build's model is v0002" in out_second[0]
    registry = project / ROOT / "registry/credit_risk"
    trained = {
        v: json.loads((registry / "versions" / v / "metadata.json").read_text())["params"]["learning_rate"]
        for v in ("v0001", "v0002")
    }
    assert trained == {"v0001": 0.1, "v0002": 0.07}
    registration = json.loads((project / ROOT / "models/registration.json").read_text())
    assert registration["version"] == "v0002"
    assert not list(project.glob("env.nbops-build*.yaml")), "a generated env file was left behind"
    # the lineage records what ran last (0.07): a build with it does nothing, one with 0.1 retrains
    again = nbops(
        project, "build", "--env", "env.test.yaml", "--set", "learning_rate=0.07", "--set", "tracking=disabled"
    )
    assert "Nothing changed" in output_of(again), output_of(again)[-2000:]
    why = nbops(
        project, "why", "train", "--env", "env.test.yaml", "--set", "learning_rate=0.1", "--set", "tracking=disabled"
    )
    assert "parameter 'learning_rate' changed: 0.07 -> 0.1" in output_of(why), output_of(why)


def test_no_wait_refuses_while_a_build_runs(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    build = start_build(project, "--set", "tracking=disabled")
    lock = project / ROOT / paths.BUILD_LOCK
    deadline = time.monotonic() + 60
    while not holders(lock) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        refused = nbops(project, "build", "--env", "env.test.yaml", "--no-wait", "--set", "tracking=disabled")
        promote = nbops(
            project, "models", "promote", "v0001", "--env", "env.test.yaml", "--no-wait", "--reason", "test"
        )
    finally:
        build.communicate(timeout=600)
    assert refused.returncode != 0 and promote.returncode != 0
    for proc in (refused, promote):
        last = proc.stderr.strip().splitlines()[-1]
        assert "is in use: `nbops --project" in last and "leave out --no-wait to wait for it" in last, proc.stderr
