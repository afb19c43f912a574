"""Shared fixtures (the helpers they use are in tests/support).

Costs, for choosing one: ``project`` is a copy of the sources (milliseconds); ``tiny_model`` trains
and registers a small model once per session (a few seconds, no pipeline); ``ran_in_process`` calls
the eight task runners once per session on a small sample (seconds, no Ploomber); ``packaged_project`` runs
a whole pipeline build once per session (slow tier only); ``scoring_venv`` installs its wheel into a
fresh virtualenv (slow tier only); ``two_builds`` builds a project twice, the second time with another
learning rate (slow tier only); ``compiled_models`` trains a binary, a regression and a multiclass model,
registers each and builds its default and compiled wheels, the trees compiled once per session into one
cache (slow tier only).
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers each running LightGBM (OpenMP) on every core: threads that spin while they wait for
    # work steal the core the other worker's threads need. Passive threads sleep instead. Set before
    # anything loads libgomp; the builds and servers the tests start inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import TEST_ROOT, TinyModel, copy_project, nbops, output_of, tiny_registered_model
from tests.support.builds import QUICK, run_in_process

# Fixtures that build a whole pipeline: only slow tests may use them (`make test-fast` builds none).
BUILDS = ("packaged_project", "scoring_venv", "two_builds", "compiled_models")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a fast test that pulls a pipeline build, before anything runs."""
    unmarked = [
        item.nodeid
        for item in items
        if item.get_closest_marker("slow") is None and set(BUILDS) & set(getattr(item, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError(
            f"these tests use a fixture that builds the pipeline ({', '.join(BUILDS)}) but are not marked slow: "
            + ", ".join(unmarked)
            + "; mark them @pytest.mark.slow (or use the tiny_model or ran_in_process fixture)"
        )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary folder."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """One small registered production model (and its wheel) of the simulated data, built in a
    session folder without a pipeline build. Read-only for the tests that use it."""
    return tiny_registered_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def ran_in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project copy whose eight tasks ran in this process (their runners, in DAG order, no Ploomber)
    with env.test.yaml and :data:`QUICK`. Read-only: a test that changes it works on its own copy."""
    project = copy_project(tmp_path_factory.mktemp("in-process") / "project")
    checked, results = run_in_process(project, "env.test.yaml", QUICK)
    return {"project": project, "checked": checked, "results": results, "overrides": QUICK}


@pytest.fixture(scope="session")
def packaged_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy built once with env.test.yaml: registry, production model, wheel, scored batch,
    and an offline W&B run per stage.

    Read-only for the tests that use it; a test that changes it works on its own copy
    (``shutil.copytree(packaged_project, dest, symlinks=True)``).
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
    from tests.support.venvs import install_wheel

    manifest = json.loads((packaged_project / TEST_ROOT / "dist/package.json").read_text())
    python = install_wheel(Path(manifest["wheel"]), tmp_path_factory.mktemp("scoring-venv") / "venv")
    return {
        "python": python,
        "package": manifest["package"],
        "wheel": Path(manifest["wheel"]),
        "model_version": manifest["model_version"],
        "project": packaged_project,
    }


@pytest.fixture(scope="session")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project (with its dashboards and Makefile, so `make dashboard` serves it) built twice with
    env.test.yaml in one products root: as it is, then with ``--set learning_rate=0.1``, which reruns
    train and what follows. Read-only; the build ids come from the summary of each build."""
    from tests.support.voila import dashboard_copy

    project = dashboard_copy(tmp_path_factory.mktemp("two-builds") / "project")
    builds = []
    for extra in ([], ["--set", "learning_rate=0.1"]):
        proc = nbops(project, "build", "--env", "env.test.yaml", *extra)
        assert proc.returncode == 0, output_of(proc)[-5000:]
        log = json.loads((project / TEST_ROOT / "reports" / "builds.jsonl").read_text().splitlines()[-1])
        builds.append(log["build_id"])
    import yaml

    first = yaml.safe_load((project / "env.test.yaml").read_text())["learning_rate"]
    assert first != 0.1, "env.test.yaml's learning_rate is already 0.1: the second build would change nothing"
    return {"project": project, "builds": builds, "learning_rates": [first, 0.1]}


@pytest.fixture(scope="session")
def compiled_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per task type (binary, regression, multiclass): a registered production model trained as the pipeline
    trains, LightGBM's scores of its raw test split, and its default and compiled wheels. The compiled
    libraries are cached in one session folder (``cache``). Read-only."""
    from tests.support.compiled import KINDS, registered_kind_model, wheels_of

    base = tmp_path_factory.mktemp("compiled-models")
    cache = base / "cache"
    out: dict[str, Any] = {"cache": cache}
    for kind in KINDS:
        model = registered_kind_model(base / kind, kind)
        out[kind] = {"model": model, "wheels": wheels_of(model, cache)}
    return out
