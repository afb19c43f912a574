"""`nbops models` against forged names, damaged versions and a read-only registry (issue 12's
reproductions): a clear message, the other versions still listed, nothing written outside."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nbops.registry.store import Registry
from tests.cli.test_models import _aliases, _populated_copy
from tests.support import nbops_in_process


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _populated_copy(tmp_path / "project")


def test_a_version_name_that_is_a_path_is_refused(project: Path, tmp_path: Path) -> None:
    forged = tmp_path / "elsewhere/forged"
    forged.mkdir(parents=True)
    (forged / "metadata.json").write_text(json.dumps({"version": "forged", "metrics": {}}))
    for action in ("show", "promote"):
        proc = nbops_in_process(project, "models", action, "../../../../elsewhere/forged", "--reason", "x")
        assert proc.returncode != 0
        assert "'../../../../elsewhere/forged' is not a model version: expected a name such as v0003" in proc.stderr
    assert "forged" not in (project / "registry/credit_risk/aliases.json").read_text()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda v: (v / "metadata.json").unlink(), "metadata.json is missing"),
        (lambda v: (v / "metadata.json").write_text('{"version": "v00'), "metadata.json is not valid JSON"),
    ],
)
def test_a_damaged_version_is_reported_and_the_others_still_listed(project: Path, damage, why: str) -> None:
    version = project / "registry/credit_risk/versions/v0002"
    os.chmod(version / "metadata.json", 0o644)
    damage(version)
    listed = nbops_in_process(project, "models", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("v0")]
    assert rows == ["v0001", "v0003"]
    assert f"v0002  DAMAGED: v0002 is damaged: {why}" in listed.stderr
    for args in (("models", "promote", "v0002", "--reason", "x"), ("package", "v0002"), ("models", "show", "v0002")):
        proc = nbops_in_process(project, *args)
        assert proc.returncode != 0 and f"v0002 is damaged: {why}" in proc.stderr, args
    assert _aliases(project)["production"] == "v0001"
    # a new registration never takes the damaged version's number
    assert max(int(v.version[1:]) for v in Registry(project / "registry/credit_risk").versions()) == 3


@pytest.mark.parametrize("read_only_root", [False, True], ids=["registry", "products-root"])
def test_a_read_only_registry_says_so(read_only_root: bool) -> None:
    """As a user who may read the registry but not write it (root writes through permissions, so a
    root test run drops to nobody for the command)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="nbops-readonly-"))  # readable by another user, unlike tmp_path
    try:
        project = _populated_copy(shared / "project")
        for path in [shared, *shared.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        registry = project / "registry/credit_risk"
        (registry / ".lock").unlink(missing_ok=True)
        (project / ".nbops").mkdir(exist_ok=True)
        os.chmod(project / ".nbops", 0o777)
        os.chmod(registry, 0o555)
        if read_only_root:  # nor the root the build lock lives under
            shutil.rmtree(project / ".nbops")
            os.chmod(project, 0o555)
        command = [
            sys.executable,
            "-m",
            "nbops",
            "--project",
            str(project),
            "models",
            "promote",
            "v0003",
            "--reason",
            "x",
        ]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "HOME": str(shared)}
        env.pop("NBOPS_PROJECT", None)
        proc = subprocess.run(command, capture_output=True, text=True, cwd=shared, env=env, timeout=120)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        if read_only_root:
            assert f"cannot write {project}: Permission denied" in last
        else:
            assert f"cannot write the registry {registry}: Permission denied" in last
        assert _aliases(project)["production"] == "v0001"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
