"""The registry keeps each version's training data once per content, prunes by keep_data_snapshots,
and `nbops reproduce` refuses clearly what it cannot rebuild."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nbops.pipeline.reproduce import CannotReproduce, reproduce
from nbops.registry.store import Registry
from tests.registry.test_store import _meta, _model_files


def snapshot(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / f"{text}.parquet"
    path.write_bytes(text.encode())
    return path, hashlib.sha256(text.encode()).hexdigest()


def register_with_data(reg: Registry, tmp_path: Path, i: int, data: str, **meta: object) -> str:
    path, sha = snapshot(tmp_path, data)
    name = reg.keep_data(path, sha)
    version, _ = reg.register(_model_files(i + 1), {**_meta(i), "data": {"snapshot": name}, **meta})
    return version.version


def test_one_file_per_content_read_only_and_pruned_by_age_but_never_production(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry/toy")
    versions = [register_with_data(reg, tmp_path, i, data) for i, data in enumerate(["a", "a", "b", "c"])]
    blobs = sorted(p.name for p in (reg.root / "data").iterdir())
    assert len(blobs) == 3 and all((reg.root / "data" / b).stat().st_mode & 0o222 == 0 for b in blobs)
    reg.promote(versions[0])
    removed = reg.prune_data(1)  # keep the newest version's and production's
    kept = {v.metadata["data"]["snapshot"] for v in reg.versions() if v.version in (versions[0], versions[3])}
    assert sorted(removed) == sorted({f"data/{b}" for b in blobs} - kept)
    assert {f"data/{p.name}" for p in (reg.root / "data").iterdir()} == kept
    assert [e["event"] for e in reg.history()].count("data-pruned") == len(removed)
    assert reg.prune_data(0) == []  # 0 keeps everything


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"git_commit": None}, "recorded no git commit"),
        ({"git_commit": "abc123", "git_dirty": True}, "built from uncommitted changes on top of abc123"),
        ({"git_commit": "abc123", "git_dirty": False}, "registered before nbops recorded its build values"),
        (
            {"git_commit": "abc123", "git_dirty": False, "build_env": {"seed": 1}, "lock_sha256": "f00"},
            "this environment is not v0001's: requirements.lock sha256 is None here, f00",
        ),
    ],
)
def test_what_cannot_be_rebuilt_is_refused_before_anything_runs(tmp_path: Path, meta: dict, message: str) -> None:
    reg = Registry(tmp_path / "registry/toy")
    if "build_env" in meta:
        register_with_data(reg, tmp_path, 0, "a", **meta)
    else:
        reg.register(_model_files(1), {**_meta(0), **meta})
    with pytest.raises(CannotReproduce, match=message.replace("(", "\\(")):
        reproduce(tmp_path, reg, "v0001")
    assert not list(tmp_path.glob("checkout*"))


def test_a_pruned_snapshot_says_which_setting_removed_it(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry/toy")
    register_with_data(reg, tmp_path, 0, "a", git_commit="abc", git_dirty=False, build_env={"seed": 1})
    register_with_data(reg, tmp_path, 1, "b")
    reg.prune_data(1)
    with pytest.raises(CannotReproduce, match="is no longer kept \\(keep_data_snapshots in env.yaml"):
        reproduce(tmp_path, reg, "v0001")
