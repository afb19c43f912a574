"""nbval on the stage notebooks: each runs on its own with its default parameters, in a real kernel,
and its checked output (cells tagged ``nbval-check-output``) matches the committed one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import add_example_task, copy_project

pytestmark = pytest.mark.slow
NBVAL_ENV = "env.test.yaml"


def test_notebooks_pass_nbval_in_a_copy_of_the_project(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    # The worked example (notebooks/examples/, not in the default DAG) runs as a user runs it: its
    # task added to pipeline.yaml as the README shows; nbval collects it after the stages it reads.
    add_example_task(project)
    # On their own the notebooks take their values from the env file: the small sample's here.
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "WANDB_MODE": "offline", "NBOPS_ENV": NBVAL_ENV}
    env.pop("NBOPS_PROJECT", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--rootdir",
            str(project),
            "-q",
            "notebooks",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " failed" not in proc.stdout.splitlines()[-1]
    # Each notebook ran on its own, writing under build/interactive (never the pipeline's products).
    assert (project / "build/interactive/models/model.txt").exists()
    assert not (project / "models").exists()
    assert (project / "build/interactive/reports/segment_review.json").exists()
