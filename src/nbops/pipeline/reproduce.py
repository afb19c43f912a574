"""``nbops reproduce vNNNN``: rebuild a registered version from what it recorded, and compare.

A version records the git commit it was built from, the hash of ``requirements.lock``, the env
values of its build and (content-addressed in the registry) the raw training data. Reproducing:

1. refuse clearly what cannot be reproduced: no commit recorded, a commit with uncommitted changes,
   a data snapshot not kept, or an installed environment whose lock differs from the recorded one;
2. check the commit out into a temporary git worktree and put the kept data in it;
3. run ``nbops build --until train`` there with the recorded values (the worktree's own ``src/``
   first on the path when the project carries the library, as nbops' own repository does);
4. compare, in the order a reader would look: the data fingerprint, the training parameters, the
   model file's bytes. The first difference is the answer; none is "byte-identical".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nbops.errors import NbopsError
from nbops.registry.publish import lock_sha256
from nbops.registry.store import ModelVersion, Registry

REPRODUCE_ENV = "env.reproduce.yaml"
REPRODUCE_ROOT = "build/reproduce"


@dataclass
class Reproduction:
    """What reproducing a version found."""

    version: str
    identical: bool
    differences: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    workdir: Path | None = None

    def text(self) -> str:
        head = (
            f"{self.version}: byte-identical (model file sha256 matches)"
            if self.identical
            else f"{self.version}: NOT reproduced; first difference: {self.differences[0]}"
        )
        lines = [head, *(f"  checked: {c}" for c in self.checked)]
        lines += [f"  also differs: {d}" for d in self.differences[1:]]
        if self.workdir is not None:
            lines.append(f"  the rebuild is kept in {self.workdir}")
        return "\n".join(lines)


class CannotReproduce(NbopsError):
    """The version did not record what a rebuild needs, or this environment is not the recorded one."""


def reproduce(
    project: Path,
    registry: Registry,
    version: str,
    *,
    keep: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> Reproduction:
    """Rebuild ``version`` from its commit, lock, values and data, and compare it with the registered one."""
    mv = registry.get(version)
    meta = mv.metadata
    commit, env, snapshot = _requirements(project, registry, mv)
    workdir = Path(tempfile.mkdtemp(prefix=f"nbops-reproduce-{mv.version}-"))
    checkout = workdir / "checkout"
    # the project may be a folder inside its repository: the same folder of the checkout
    top = Path(_git(project, "rev-parse", "--show-toplevel"))
    tree = checkout / project.resolve().relative_to(top.resolve())
    try:
        report(f"checking out {commit[:12]} into {checkout}")
        _git(project, "worktree", "add", "--detach", str(checkout), commit)
        data_name = f"{meta['dataset']}{snapshot.suffix}"
        data_path = workdir / "data" / data_name
        data_path.parent.mkdir(parents=True)
        shutil.copyfile(snapshot, data_path)
        values = {
            **env,
            "root": "{{here}}/" + REPRODUCE_ROOT,
            "data": str(data_path),
            "tracking": "disabled",
            "schema_file": env.get("schema_file", "auto"),
        }
        if env.get("data") == "simulate" and env.get("schema_file", "auto") == "auto":
            # the simulator's table was read from the simulator: its schema file is the dataset's
            values["schema_file"] = f"schemas/{meta['dataset']}.schema.yaml"
            _simulator_schema_into(tree / values["schema_file"])
        (tree / REPRODUCE_ENV).write_text(yaml.safe_dump(values, sort_keys=False))
        report(f"rebuilding {mv.version} (nbops build --until train) with the recorded values")
        proc = _build(tree)
        if proc.returncode != 0:
            raise CannotReproduce(
                f"the rebuild of {mv.version} failed (exit {proc.returncode}); its output ends:\n"
                + (proc.stdout + proc.stderr)[-3000:]
            )
        result = _compare(mv, tree / REPRODUCE_ROOT)
        if keep:
            result.workdir = workdir
        return result
    finally:
        if not keep:
            _git(project, "worktree", "remove", "--force", str(checkout), check=False)
            shutil.rmtree(workdir, ignore_errors=True)


def _requirements(project: Path, registry: Registry, mv: ModelVersion) -> tuple[str, dict[str, Any], Path]:
    meta = mv.metadata
    commit = meta.get("git_commit")
    if not commit:
        raise CannotReproduce(
            f"{mv.version} recorded no git commit (the project was not a git repository when it was built); "
            "commit the project (pipeline.yaml, env.yaml, notebooks, schemas, your feature code) so later "
            "versions can be reproduced"
        )
    if meta.get("git_dirty"):
        raise CannotReproduce(
            f"{mv.version} was built from uncommitted changes on top of {commit[:12]}; its code is not in any "
            "commit, so it cannot be rebuilt from one"
        )
    env = meta.get("build_env")
    snapshot_name = meta.get("data", {}).get("snapshot")
    if not env or not snapshot_name:
        raise CannotReproduce(
            f"{mv.version} was registered before nbops recorded its build values and kept its data; "
            "versions registered from now on can be reproduced"
        )
    snapshot = registry.root / snapshot_name
    if not snapshot.exists():
        raise CannotReproduce(
            f"{mv.version}'s training data ({snapshot_name}) is no longer kept (keep_data_snapshots in env.yaml "
            "removes the snapshots of older versions); raise it to keep more"
        )
    recorded, installed = meta.get("lock_sha256"), lock_sha256(project)
    if recorded != installed:
        raise CannotReproduce(
            f"this environment is not {mv.version}'s: requirements.lock sha256 is {str(installed)[:12]} here, "
            f"{str(recorded)[:12]} when it was built; install the lock of that commit "
            f"(`git show {commit[:12]}:requirements.lock > /tmp/lock && uv pip sync /tmp/lock`) and run again"
        )
    return commit, dict(env), snapshot


def _build(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBOPS_", "PLOOMBER_ENV"))}
    env["PLOOMBER_STATS_ENABLED"] = "false"
    if (tree / "src" / "nbops").is_dir():  # the project carries the library: that commit's code runs
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree / "src"), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "nbops", "--project", str(tree), "build", "--env", REPRODUCE_ENV, "--until", "train"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )


def _compare(mv: ModelVersion, root: Path) -> Reproduction:
    meta = mv.metadata
    found = Reproduction(mv.version, identical=False)
    summary = json.loads((root / "data/interim/ingest_summary.json").read_text())
    if summary["fingerprint"] != meta["data"]["fingerprint"]:
        found.differences.append(
            f"data: the validated table's fingerprint is {summary['fingerprint'][:12]}, "
            f"{meta['data']['fingerprint'][:12]} was recorded"
        )
    else:
        found.checked.append(f"data fingerprint {summary['fingerprint'][:12]}")
    train = json.loads((root / "models/train_summary.json").read_text())
    params = train.get("booster_params", {})
    changed = sorted(k for k in set(params) | set(meta["params"]) if params.get(k) != meta["params"].get(k))
    if changed:
        found.differences.append(
            "parameters: " + ", ".join(f"{k} {meta['params'].get(k)!r} -> {params.get(k)!r}" for k in changed)
        )
    else:
        found.checked.append(f"{len(params)} training parameters")
    model = (root / "models/model.txt").read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    if digest != meta["model_sha256"]:
        found.differences.append(f"model bytes: {_first_line_difference(mv.file('model.txt').read_bytes(), model)}")
    else:
        found.checked.append(f"model file sha256 {digest[:12]}")
    found.identical = not found.differences
    return found


def _first_line_difference(registered: bytes, rebuilt: bytes) -> str:
    old, new = registered.decode(errors="replace").splitlines(), rebuilt.decode(errors="replace").splitlines()
    for number, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a != b:
            return f"line {number} differs: registered {a[:80]!r}, rebuilt {b[:80]!r}"
    return f"the registered file has {len(old)} lines, the rebuilt {len(new)}"


def _simulator_schema_into(path: Path) -> None:
    if path.exists():
        return
    from nbops.data.ingest import simulator_schema

    path.parent.mkdir(parents=True, exist_ok=True)
    simulator_schema().save(path)


def _git(project: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise CannotReproduce(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()
