"""The registry store: numbered immutable versions, checksums, atomic writes, the lock, aliases and rollback."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.registry.store import ModelVersion, Registry, RegistryError
from nbops.runtime.model import MANIFEST, IntegrityError, ScoringModel
from nbops.runtime.schema import FieldSpec, InputSchema
from tests.support import train_tiny_booster

# -- small real inputs ---------------------------------------------------------------------------


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    grade = rng.choice(["A", "B", "C"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x + (grade == "C"))))).astype(float)
    return pd.DataFrame({"x": x, "grade": grade, "y": y})


def _model_files(rounds: int, seed: int = 0) -> dict[str, bytes]:
    """A tiny real LightGBM model (text), its transform and input schema, as registry files."""
    df = _frame(seed=seed)
    booster, ft = train_tiny_booster(df, ["x"], ["grade"], "y", rounds, seed)
    schema = InputSchema([FieldSpec("x", "numeric"), FieldSpec("grade", "categorical", categories=["A", "B", "C"])])
    return {
        "model.txt": booster.model_to_string().encode(),
        "feature_transform.json": json.dumps(ft.to_dict()).encode(),
        "input_schema.json": json.dumps(schema.to_dict()).encode(),
        "metrics.json": json.dumps({"metrics": {"roc_auc": 0.7 + rounds / 100}}).encode(),
    }


@pytest.fixture(scope="module")
def models() -> list[dict[str, bytes]]:
    """Six distinct tiny models (1..6 boosting rounds)."""
    out = [_model_files(rounds) for rounds in range(1, 7)]
    assert len({m["model.txt"] for m in out}) == len(out)
    return out


def _meta(i: int = 0) -> dict:
    return {
        "dataset": "toy",
        "task_type": "binary",
        "metrics": {"roc_auc": 0.7 + i / 100},
        "note": f"model {i}",
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry" / "toy")


def _with_versions(reg: Registry, models: list[dict[str, bytes]], n: int) -> list[ModelVersion]:
    return [reg.register(models[i], _meta(i))[0] for i in range(n)]


def _listing(reg: Registry) -> list[str]:
    return sorted(os.listdir(reg.versions_dir)) if reg.versions_dir.exists() else []


# -- versions ------------------------------------------------------------------------------------


def test_empty_registry_has_no_versions_and_no_aliases(reg):
    assert reg.versions() == []
    assert reg.aliases() == {} and reg.history() == []
    assert reg.alias("production") is None


def test_versions_are_numbered_in_order(reg, models):
    made = [reg.register(models[i], _meta(i)) for i in range(3)]
    assert [(v.version, created) for v, created in made] == [
        ("v0001", True),
        ("v0002", True),
        ("v0003", True),
    ]
    assert [v.version for v in reg.versions()] == ["v0001", "v0002", "v0003"]
    assert [v.number for v in reg.versions()] == [1, 2, 3]
    assert [v.metadata["note"] for v in reg.versions()] == ["model 0", "model 1", "model 2"]
    # a fresh Registry object on the same folder sees the same versions
    assert [v.version for v in Registry(reg.root).versions()] == ["v0001", "v0002", "v0003"]


def test_identical_model_returns_existing_version(reg, models):
    first, created = reg.register(models[0], _meta(0))
    reg.register(models[1], _meta(1))
    # same model file, even with different other files and metadata: the existing version
    again, created_again = reg.register({**models[0], "metrics.json": b"{}"}, {**_meta(9), "note": "retrained"})
    assert created is True and created_again is False
    assert again.version == first.version == "v0001"
    assert again.metadata["note"] == "model 0"  # the stored version was not touched
    assert [v.version for v in reg.versions()] == ["v0001", "v0002"]
    assert reg.register(models[2], _meta(2))[0].version == "v0003"


def test_version_folder_holds_every_file_and_a_matching_manifest(reg, models):
    files = models[0]
    version, _ = reg.register(files, _meta(0))
    folder = reg.versions_dir / "v0001"
    assert version.path == folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([*files, "metadata.json", MANIFEST])
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["version"] == "v0001"
    assert sorted(manifest["files"]) == sorted([*files, "metadata.json"])
    for name, digest in manifest["files"].items():
        assert _sha((folder / name).read_bytes()) == digest, name
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == "v0001"
    assert meta["model_sha256"] == _sha(files["model.txt"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at"])
    assert {k: meta[k] for k in _meta(0)} == _meta(0)
    assert version.metadata == meta


def test_version_files_are_read_only(reg, models):
    version, _ = reg.register(models[0], _meta(0))
    paths = list(version.path.iterdir())
    assert len(paths) == len(models[0]) + 2
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, f"{path.name} is writable ({oct(mode)})"


def test_derived_files_see_the_final_metadata_and_are_checksummed(reg, models):
    seen: list[dict] = []

    def card(meta: dict) -> dict[str, bytes]:
        seen.append(dict(meta))
        return {"card.md": f"# card {meta['version']} created {meta['created_at']}\n".encode()}

    reg.register(models[0], _meta(0))
    version, created = reg.register(models[1], _meta(1), derived=card)
    assert created and version.version == "v0002"
    assert len(seen) == 1
    assert seen[0]["version"] == "v0002"
    assert seen[0]["created_at"] == version.metadata["created_at"]
    assert seen[0]["model_sha256"] == _sha(models[1]["model.txt"])
    card_bytes = version.file("card.md").read_bytes()
    assert card_bytes == f"# card v0002 created {version.metadata['created_at']}\n".encode()
    manifest = json.loads(version.file(MANIFEST).read_text())
    assert manifest["files"]["card.md"] == _sha(card_bytes)
    reg.verify("v0002")


def test_derived_is_not_called_for_an_identical_model(reg, models):
    calls = []
    reg.register(models[0], _meta(0), derived=lambda m: calls.append(m) or {"card.md": b"x"})
    reg.register(models[0], _meta(0), derived=lambda m: calls.append(m) or {"card.md": b"y"})
    assert len(calls) == 1
    assert reg.get("v0001").file("card.md").read_bytes() == b"x"


# -- atomicity -----------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_failed_write_midway_leaves_no_version(reg, models, monkeypatch):
    reg.register(models[0], _meta(0))
    before = reg.versions()
    original = pathlib.Path.write_bytes
    calls = {"n": 0}

    def flaky(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Boom("disk full")
        return original(self, data)

    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_bytes", flaky)
        with pytest.raises(Boom):
            reg.register(models[1], _meta(1))
    assert calls["n"] == 2  # the failure really happened midway, after one file was written
    assert _listing(reg) == ["v0001"]  # no v0002, no hidden temp folder
    assert reg.versions() == before
    version, created = reg.register(models[1], _meta(1))
    assert (version.version, created) == ("v0002", True)
    reg.verify("v0002")


def test_failed_rename_leaves_no_version(reg, models, monkeypatch):
    reg.register(models[0], _meta(0))
    before = reg.versions()

    def refuse(src, dst, *a, **kw):
        raise Boom(f"rename {src} -> {dst}")

    with monkeypatch.context() as m:
        m.setattr(os, "rename", refuse)
        with pytest.raises(Boom):
            reg.register(models[1], _meta(1))
    assert _listing(reg) == ["v0001"]
    assert reg.versions() == before
    version, created = reg.register(models[1], _meta(1))
    assert (version.version, created) == ("v0002", True)
    assert [v.version for v in reg.versions()] == ["v0001", "v0002"]


def test_leftover_temp_folder_of_a_crashed_process_is_ignored(reg, models):
    _with_versions(reg, models, 2)
    crashed = reg.versions_dir / ".v0003.k2j4x9"
    crashed.mkdir()
    (crashed / "model.txt").write_bytes(models[5]["model.txt"])
    (crashed / "metadata.json").write_text(
        json.dumps({"version": "v0003", "model_sha256": _sha(models[5]["model.txt"])})
    )
    assert [v.version for v in reg.versions()] == ["v0001", "v0002"]
    version, created = reg.register(models[2], _meta(2))
    assert (version.version, created) == ("v0003", True)
    # the crashed half-version is not mistaken for an identical model either
    version, created = reg.register(models[5], _meta(5))
    assert (version.version, created) == ("v0004", True)
    assert [v.version for v in reg.versions()] == ["v0001", "v0002", "v0003", "v0004"]


# -- get -----------------------------------------------------------------------------------------


def test_get_accepts_number_and_name(reg, models):
    _with_versions(reg, models, 3)
    for spelling in ("3", "v0003", "0003"):
        got = reg.get(spelling)
        assert got.version == "v0003"
        assert got.path == reg.versions_dir / "v0003"
        assert got.metadata["note"] == "model 2"


def test_get_unknown_version_lists_registered_versions(reg, models):
    with pytest.raises(RegistryError, match="none yet"):
        reg.get("v0001")
    _with_versions(reg, models, 2)
    with pytest.raises(RegistryError) as err:
        reg.get("v9")
    assert "'v9'" in str(err.value)
    assert "v0001, v0002" in str(err.value)
    with pytest.raises(RegistryError, match="v0001, v0002"):
        reg.get("7")


# -- verify --------------------------------------------------------------------------------------


def test_verify_passes_on_an_untouched_version(reg, models):
    version, _ = reg.register(models[0], _meta(0))
    reg.verify("v0001")
    assert ScoringModel.from_folder(version.path).version == "v0001"


def test_verify_names_a_changed_file(reg, models):
    version, _ = reg.register(models[0], _meta(0))
    reg.register(models[1], _meta(1))
    model_txt = version.file("model.txt")
    os.chmod(model_txt, 0o644)
    data = bytearray(model_txt.read_bytes())
    i = data.index(b"tree")
    data[i] = ord("T")
    model_txt.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        reg.verify("v0001")
    msg = str(err.value)
    assert "model.txt: checksum" in msg
    assert "metadata.json" not in msg and "feature_transform.json" not in msg
    assert str(version.path) in msg
    reg.verify("v0002")  # the other version is unaffected
    with pytest.raises(IntegrityError, match="model.txt"):
        ScoringModel.from_folder(version.path)


def test_verify_names_a_missing_file(reg, models):
    version, _ = reg.register(models[0], _meta(0))
    version.file("input_schema.json").unlink()
    with pytest.raises(IntegrityError, match="input_schema.json: missing"):
        reg.verify("1")


# -- concurrency ---------------------------------------------------------------------------------


def _register_many(root: str, batch: list[dict[str, bytes]], barrier, queue) -> None:
    barrier.wait(timeout=30)
    registry = Registry(root)
    try:
        queue.put([registry.register(files, {"dataset": "toy"})[0].version for files in batch])
    except Exception as exc:  # reported to the parent, which fails the test with it
        queue.put([f"error: {exc!r}"])


def test_concurrent_registration_from_two_processes_gets_distinct_versions(reg, models):
    ctx = multiprocessing.get_context("fork")  # children reuse the imported modules: no re-import cost
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    batches = [models[0::2], models[1::2]]
    procs = [ctx.Process(target=_register_many, args=(str(reg.root), batch, barrier, queue)) for batch in batches]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    got = [v for r in results for v in r]
    assert sorted(got) == [f"v{i:04d}" for i in range(1, 7)]
    assert [v.version for v in reg.versions()] == [f"v{i:04d}" for i in range(1, 7)]
    assert sorted(v.metadata["model_sha256"] for v in reg.versions()) == sorted(_sha(m["model.txt"]) for m in models)
    assert all(not name.startswith(".") for name in _listing(reg))
    for v in reg.versions():
        reg.verify(v.version)


# -- aliases and rollback ------------------------------------------------------------------------


def test_set_candidate_and_promote_record_history_with_reasons(reg, models):
    _with_versions(reg, models, 2)
    reg.set_candidate("v0001", "registered by the test")
    assert reg.promote("v0001", "first model") is None
    reg.set_candidate("v0002")
    assert reg.promote("v0002", "better auc") == "v0001"
    data = json.loads((reg.root / "aliases.json").read_text())
    assert data["candidate"] == "v0002" and data["production"] == "v0002"
    assert set(data) == {"candidate", "production"}  # the pointers; the events are in history.jsonl
    events = [e for e in reg.history() if e["event"] != "register"]
    assert [e["event"] for e in events] == ["candidate", "promote", "candidate", "promote"]
    history = [{k: e[k] for k in ("alias", "version", "previous", "reason")} for e in events]
    assert history == [
        {
            "alias": "candidate",
            "version": "v0001",
            "previous": None,
            "reason": "registered by the test",
        },
        {"alias": "production", "version": "v0001", "previous": None, "reason": "first model"},
        {"alias": "candidate", "version": "v0002", "previous": "v0001", "reason": "registered"},
        {"alias": "production", "version": "v0002", "previous": "v0001", "reason": "better auc"},
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["at"]) for e in events)
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+", e["by"]) for e in events)  # who: user@host
    assert reg.alias("production").version == "v0002"
    assert Registry(reg.root).aliases() == data


def test_promote_unknown_version_raises_and_changes_nothing(reg, models):
    _with_versions(reg, models, 1)
    reg.promote("v0001")
    before = reg.aliases()
    with pytest.raises(RegistryError, match="v0005"):
        reg.promote("v0005")
    assert reg.aliases() == before


def test_unknown_alias_raises(reg, models):
    _with_versions(reg, models, 1)
    with pytest.raises(RegistryError, match="unknown alias 'staging'.*candidate, production"):
        reg._set("staging", "v0001", "by hand", "promote")
    assert reg.aliases() == {} and {e["event"] for e in reg.history()} == {"register"}


def test_rollback_walks_back_the_promotion_history(reg, models):
    _with_versions(reg, models, 3)
    for v in ("v0001", "v0002", "v0003"):
        reg.promote(v)
    assert reg.rollback() == ("v0003", "v0002")
    assert reg.aliases()["production"] == "v0002"
    assert reg.rollback() == ("v0002", "v0001")
    assert reg.aliases()["production"] == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()
    assert reg.aliases()["production"] == "v0001"
    reasons = [e["reason"] for e in reg.history() if e.get("alias") == "production"]
    assert reasons[-2:] == ["rollback from v0003", "rollback from v0002"]


def test_promote_after_rollback_then_rollback_returns_to_the_version_before(reg, models):
    _with_versions(reg, models, 4)
    for v in ("v0001", "v0002", "v0003"):
        reg.promote(v)
    assert reg.rollback() == ("v0003", "v0002")
    assert reg.promote("v0004") == "v0002"
    assert reg.rollback() == ("v0004", "v0002")
    assert reg.rollback() == ("v0002", "v0001")


def test_rollback_leaves_the_candidate_alone(reg, models):
    _with_versions(reg, models, 2)
    reg.promote("v0001")
    reg.promote("v0002")
    reg.set_candidate("v0002")
    reg.rollback()
    assert reg.aliases()["candidate"] == "v0002"
    assert reg.aliases()["production"] == "v0001"


def test_rollback_without_production_raises(reg, models):
    with pytest.raises(RegistryError, match="no production model"):
        reg.rollback()
    _with_versions(reg, models, 1)
    reg.set_candidate("v0001")
    with pytest.raises(RegistryError, match="no production model"):
        reg.rollback()
    assert "production" not in reg.aliases()


def test_rollback_with_a_single_promotion_raises(reg, models):
    _with_versions(reg, models, 1)
    reg.promote("v0001")
    with pytest.raises(RegistryError, match="nothing to roll back to: v0001"):
        reg.rollback()


def test_promote_by_number_records_the_canonical_version_name(reg, models):
    _with_versions(reg, models, 2)
    reg.promote("v0001")
    reg.promote("2")
    assert reg.aliases()["production"] == "v0002"
    assert reg.alias("production").version == "v0002"
    reg.promote("v0002")  # the same version again: not a new step of the history
    assert reg.rollback() == ("v0002", "v0001")
