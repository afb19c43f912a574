"""`nbops models list|show|promote|rollback` and `nbops package` on a project copy whose registry
({{root}}/registry/credit_risk, root = the project folder) holds tiny real models.

The commands run through the CLI's own entry function in this process (the parser and command code
a user runs, without a new interpreter importing LightGBM for each); `list` also runs as a process,
as a user types it. A command that changes the registry works on its own project copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.registry.store import Registry
from nbops.runtime.model import MANIFEST
from nbops.runtime.schema import FieldSpec, InputSchema
from tests.support import copy_project, nbops, nbops_in_process, train_tiny_booster

FINGERPRINTS = ["f1a2b3c4d5e6f7a8", "0badc0ffee12abcd", "9e8d7c6b5a4f3e2d"]
COMMITS = ["1111aaaa2222bbbb", "3333cccc4444dddd", "5555eeee6666ffff"]


def _files(rounds: int) -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    n = 200
    df = pd.DataFrame({"x": rng.normal(size=n), "grade": rng.choice(["A", "B"], n)})
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-2 * df["x"]))).astype(float)
    booster, ft = train_tiny_booster(df, ["x"], ["grade"], "y", rounds)
    schema = InputSchema([FieldSpec("x", "numeric"), FieldSpec("grade", "categorical", categories=["A", "B"])])
    return {
        "model.txt": booster.model_to_string().encode(),
        "feature_transform.json": json.dumps(ft.to_dict()).encode(),
        "input_schema.json": json.dumps(schema.to_dict()).encode(),
        "card.md": f"# Model card: credit_risk_model, {rounds} rounds\n".encode(),
    }


def _populated_copy(dest: Path) -> Path:
    """A project copy with v0001 (production), v0002 (candidate) and v0003 registered."""
    project = copy_project(dest)
    registry = Registry(project / "registry" / "credit_risk")
    for i in range(3):
        meta = {
            "package": "credit_risk_model",
            "dataset": "credit_risk",
            "target": "default",
            "task_type": "binary",
            "metrics": {"roc_auc": 0.7 + i / 100 + 0.00123},
            "gate": {"metric": "roc_auc", "promote": True, "reason": "test"},
            "data": {"fingerprint": FINGERPRINTS[i]},
            "git_commit": COMMITS[i],
        }
        version, created = registry.register(_files(i + 2), meta)
        assert created and version.version == f"v{i + 1:04d}"
    registry.promote("v0001", "first model")
    registry.set_candidate("v0002")
    return project


def _aliases(project: Path) -> dict:
    return json.loads((project / "registry" / "credit_risk" / "aliases.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("models-cli")
    shared = _populated_copy(base / "shared")  # only read
    moving = _populated_copy(base / "moving")  # promote, then rollback
    tampered = _populated_copy(base / "tampered")
    model_txt = tampered / "registry" / "credit_risk" / "versions" / "v0001" / "model.txt"
    os.chmod(model_txt, 0o644)
    data = bytearray(model_txt.read_bytes())
    data[-2] ^= 0x01
    model_txt.write_bytes(bytes(data))
    dist = base / "dist"
    out: dict = {"shared": shared, "moving": moving, "tampered": tampered, "dist": dist}
    out["aliases_before"] = _aliases(moving)
    out["promote"] = nbops_in_process(moving, "models", "promote", "v0002", "--reason", "better on the spring cohort")
    out["aliases_after_promote"] = _aliases(moving)
    out["history_after_promote"] = Registry(moving / "registry" / "credit_risk").history()
    out["rollback"] = nbops_in_process(moving, "models", "rollback", "--reason", "complaints from branch staff")
    out["aliases_after_rollback"] = _aliases(moving)
    out["history_after_rollback"] = Registry(moving / "registry" / "credit_risk").history()
    out["history"] = nbops_in_process(moving, "models", "history")
    out["history_v2"] = nbops_in_process(moving, "models", "history", "v0002", "--json")
    out["promote_without_reason"] = nbops_in_process(moving, "models", "promote", "v0003")
    out["list"] = nbops(shared, "models", "list")  # the one real process: the entry point as typed
    out["show"] = nbops_in_process(shared, "models", "show", "v0001")
    out["show_unknown"] = nbops_in_process(shared, "models", "show", "v9")
    out["package"] = nbops_in_process(shared, "package", "v0001", "--dist", str(dist))
    out["show_tampered"] = nbops_in_process(tampered, "models", "show", "v0001")
    return out


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_models_list_shows_every_version_and_the_aliases(runs):
    out = _ok(runs["list"])
    assert f"registry {runs['shared'] / 'registry' / 'credit_risk'}" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("version"))
    assert header.split() == ["version", "aliases", "created", "roc_auc", "data", "git"]
    rows = {line.split()[0]: line for line in lines if line.startswith("v0")}
    assert sorted(rows) == ["v0001", "v0002", "v0003"]
    assert rows["v0001"].split()[1] == "production"
    assert rows["v0002"].split()[1] == "candidate"
    assert "production" not in rows["v0003"] and "candidate" not in rows["v0003"]
    for i, version in enumerate(["v0001", "v0002", "v0003"]):
        assert f"{0.7 + i / 100 + 0.00123:.4f}" in rows[version]
        assert FINGERPRINTS[i][:12] in rows[version] and FINGERPRINTS[i][:13] not in rows[version]
        assert COMMITS[i][:8] in rows[version] and COMMITS[i][:9] not in rows[version]


def test_models_show_prints_metadata_and_verifies_files(runs):
    out = _ok(runs["show"])
    text, _, tail = out.partition("\nfiles verified against their checksums")
    meta = json.loads(text)
    assert meta["version"] == "v0001"
    assert meta["data"]["fingerprint"] == FINGERPRINTS[0]
    assert meta["git_commit"] == COMMITS[0]
    assert tail, out  # the verification line is there
    assert str(runs["shared"] / "registry" / "credit_risk" / "versions" / "v0001" / "card.html") in tail


def test_models_show_unknown_version_exits_2_naming_the_registered_ones(runs):
    proc = runs["show_unknown"]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no model version 'v9'" in proc.stderr
    assert "registered: v0001, v0002, v0003" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_models_promote_then_rollback(runs):
    assert runs["aliases_before"]["production"] == "v0001"
    assert "production: v0001 -> v0002" in _ok(runs["promote"])
    after = runs["aliases_after_promote"]
    assert after["production"] == "v0002" and after["candidate"] == "v0002"
    last = runs["history_after_promote"][-1]
    assert (last["event"], last["version"], last["previous"]) == ("promote", "v0002", "v0001")
    assert last["reason"] == "better on the spring cohort" and "@" in last["by"]
    assert "production rolled back: v0002 -> v0001" in _ok(runs["rollback"])
    back = runs["aliases_after_rollback"]
    assert back["production"] == "v0001"
    last = runs["history_after_rollback"][-1]
    assert (last["event"], last["version"], last["reason"]) == ("rollback", "v0001", "complaints from branch staff")
    assert len(runs["history_after_rollback"]) == len(runs["history_after_promote"]) + 1


def test_models_history_says_who_did_what_when_and_why(runs):
    out = _ok(runs["history"])
    header = next(line for line in out.splitlines() if line.startswith("at"))
    assert header.split() == ["at", "event", "version", "previous", "by", "reason"]
    events = [line.split()[1] for line in out.splitlines()[2:] if line.startswith("20")]
    assert events == ["register", "register", "register", "promote", "candidate", "promote", "rollback"]
    assert out.rstrip().endswith("complaints from branch staff")
    v2 = [json.loads(line) for line in _ok(runs["history_v2"]).splitlines()]
    assert {e["event"] for e in v2} == {"register", "candidate", "promote", "rollback"}  # v0002 in or out


def test_a_production_change_without_a_reason_is_refused(runs):
    proc = runs["promote_without_reason"]
    assert proc.returncode != 0 and "needs --reason" in proc.stderr.strip().splitlines()[-1]
    assert _aliases(runs["moving"])["production"] == "v0001"  # unchanged


def test_models_show_on_a_tampered_version_exits_1(runs):
    proc = runs["show_tampered"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refusing to load the model" in proc.stderr
    assert "model.txt: checksum" in proc.stderr
    assert "feature_transform.json" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "files verified" not in proc.stdout


def test_package_builds_a_wheel_of_the_version(runs):
    out = _ok(runs["package"])
    wheel = runs["dist"] / "credit_risk_model-1-py3-none-any.whl"
    assert wheel.is_file()
    assert f"built {wheel} (model v0001)" in out
    version_dir = runs["shared"] / "registry" / "credit_risk" / "versions" / "v0001"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "credit_risk_model/__init__.py" in names
        assert "credit_risk_model/_runtime/model.py" in names
        assert "credit_risk_model-1.dist-info/METADATA" in names
        for path in version_dir.iterdir():
            assert zf.read(f"credit_risk_model/artifacts/{path.name}") == path.read_bytes(), path.name
        manifest = json.loads(zf.read(f"credit_risk_model/artifacts/{MANIFEST}"))
        assert manifest["version"] == "v0001"
        assert 'MODEL_VERSION = "v0001"' in zf.read("credit_risk_model/__init__.py").decode()
