"""Shared fixtures: a throwaway copy of the project, and running the nbops command in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pipeline.yaml", "env.yaml", "env.test.yaml", "notebooks", "schemas", ".jupyter")


def copy_project(dest: Path) -> Path:
    """Copy what a build needs (the DAG, the env files, the notebooks, the schemas) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary folder."""
    return copy_project(tmp_path / "project")


def nbops(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``nbops --project PROJECT ARGS`` as a user would, capturing its output."""
    full_env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", **(env or {})}
    full_env.pop("NBOPS_PROJECT", None)
    return subprocess.run(
        [sys.executable, "-m", "nbops", "--project", str(project), *args],
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def files_containing(folder: Path, needles: Sequence[str]) -> list[Path]:
    """Files under ``folder`` whose bytes contain any of ``needles``."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(path)
    return hits


@pytest.fixture(scope="session")
def packaged_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy built once with env.test.yaml: registry, production model, wheel, scored batch.

    Read-only for the tests that use it; a test that changes the registry makes its own copy.
    """
    project = copy_project(tmp_path_factory.mktemp("packaged") / "project")
    proc = nbops(project, "build", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)[-5000:]
    return project


@pytest.fixture(scope="session")
def scoring_venv(packaged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A fresh virtualenv with only the built wheel and its declared dependencies ([serve] included).

    Installed with uv from the package index, constrained to the lock's versions.
    """
    import json

    manifest = json.loads((packaged_project / "build/test/dist/package.json").read_text())
    venv = tmp_path_factory.mktemp("scoring-venv") / "venv"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "venv", "--python", sys.executable, "--seed", str(venv)], check=True, capture_output=True, text=True
    )
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--python",
            str(python),
            "-c",
            str(REPO / "requirements.lock"),
            f"{manifest['wheel']}[serve]",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {
        "python": python,
        "package": manifest["package"],
        "wheel": Path(manifest["wheel"]),
        "model_version": manifest["model_version"],
        "project": packaged_project,
    }


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server started by a test, killing it if it does not stop within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def train_tiny_booster(df, numeric: list[str], categorical: list[str], target: str, rounds: int, seed: int = 0):
    """A tiny real LightGBM binary model and its fitted transform (for registry tests)."""
    import lightgbm as lgb

    from nbops.runtime.transform import FeatureTransform

    transform = FeatureTransform.fit(df, numeric, categorical)
    params = {
        "objective": "binary",
        "num_leaves": 4,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "verbose": -1,
        "seed": seed,
    }
    booster = lgb.train(
        params,
        lgb.Dataset(transform.transform(df), df[target], categorical_feature=transform.categorical_indices),
        num_boost_round=rounds,
    )
    return booster, transform
