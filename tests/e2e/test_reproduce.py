"""`nbops reproduce`: build, change the data and the parameters, build again, then rebuild the first
version from what it recorded, byte for byte (the issue's test), and refuse what cannot be rebuilt."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.support import copy_project, nbops, output_of

pytestmark = pytest.mark.slow
SETS = ("--env", "env.test.yaml", "--set", "data=table.csv", "--set", "tracking=disabled")


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("reproduce") / "project")
    assert nbops(project, "simulate", "--rows", "3000", "--seed", "7", "--out", "table.csv").returncode == 0
    (project / ".gitignore").write_text("build/\nwandb/\ntable.csv\n.nbops/\n")  # data is not committed
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    first = nbops(project, "build", *SETS)
    assert first.returncode == 0, output_of(first)[-3000:]
    # the data file changes and a parameter changes: the second version differs in both
    table = pd.read_csv(project / "table.csv")
    table.iloc[: len(table) - 400].to_csv(project / "table.csv", index=False)
    second = nbops(project, "build", *SETS, "--set", "learning_rate=0.1")
    assert second.returncode == 0, output_of(second)[-3000:]
    assert "this build's model is v0002" in second.stdout
    return project


def test_the_first_version_is_rebuilt_byte_for_byte(two_versions: Path) -> None:
    proc = nbops(two_versions, "reproduce", "v0001", *SETS)
    assert proc.returncode == 0, output_of(proc)[-3000:]
    assert proc.stdout.startswith("v0001: byte-identical (model file sha256 matches)")
    assert "checked: data fingerprint" in proc.stdout and "training parameters" in proc.stdout
    assert git(two_versions, "worktree", "list").count("\n") == 0, "the temporary worktree was left"


def test_the_data_is_kept_once_per_content(two_versions: Path) -> None:
    registry = two_versions / "build/test/registry/table"
    kept = sorted(p.name for p in (registry / "data").iterdir())
    snapshots = [
        json.loads((registry / "versions" / v / "metadata.json").read_text())["data"]["snapshot"]
        for v in ("v0001", "v0002")
    ]
    assert len(set(snapshots)) == 2 and sorted(Path(s).name for s in snapshots) == kept


def test_a_changed_environment_is_refused_with_what_to_do(two_versions: Path) -> None:
    lock = two_versions / "requirements.lock"
    lock.write_text("numpy==1.0\n")
    try:
        proc = nbops(two_versions, "reproduce", "v0001", *SETS)
    finally:
        lock.unlink()
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "this environment is not v0001's: requirements.lock sha256" in last and "uv pip sync" in last


def test_a_difference_is_reported_first_where_a_reader_looks(two_versions: Path, tmp_path: Path) -> None:
    """The kept data tampered with (a row dropped): the rebuild differs, and the data is named first."""
    import os
    import shutil

    project = tmp_path / "project"
    shutil.copytree(two_versions, project, symlinks=True)
    registry = project / "build/test/registry/table"
    snapshot = registry / json.loads((registry / "versions/v0001/metadata.json").read_text())["data"]["snapshot"]
    os.chmod(snapshot, 0o644)
    pd.read_parquet(snapshot).iloc[1:].to_parquet(snapshot)
    proc = nbops(project, "reproduce", "v0001", *SETS)
    assert proc.returncode == 1, output_of(proc)[-3000:]
    assert proc.stdout.startswith("v0001: NOT reproduced; first difference: data: the validated table's fingerprint")
    assert "also differs: model bytes: line " in proc.stdout
