"""nbops.pipeline.context: where a stage reads and writes under a build, in JupyterLab (injected, no build id)
and on its own; and that W&B is off in interactive runs unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbops
from nbops.config.spec import load_env, load_tasks
from nbops.errors import ConfigError
from tests.support import copy_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("NBOPS_PROJECT", str(project))
    for var in ("NBOPS_BUILD_ID", "NBOPS_RUN_IDENTITIES", "NBOPS_TRACKING", "PLOOMBER_ENV_FILENAME"):
        monkeypatch.delenv(var, raising=False)
    return project


def injected(project: Path, task: str, env_file: str = "env.yaml") -> dict[str, object]:
    """What Ploomber's extension injects into a notebook: the task's params, product and upstream."""
    tasks = {t.name: t for t in load_tasks(project, load_env(project, env_file))}
    spec = tasks[task]
    return {
        **spec.params,
        "product": dict(spec.product),
        "upstream": {u: dict(tasks[u].product) for u in spec.upstream},
    }


def test_injected_outside_a_build_reads_the_pipeline_and_writes_under_the_interactive_root(project: Path) -> None:
    namespace = injected(project, "register")
    assert namespace["tracking"] == "offline"  # what env.yaml says, and what the extension injects
    stage = nbops.stage("register", namespace)
    interactive = project / "build/interactive"
    assert stage.interactive and stage.identity is None
    for key, path in namespace["product"].items():  # type: ignore[union-attr]
        # env.yaml's root is the project: each product keeps its path below it, under build/interactive
        assert stage.product[key] == interactive / Path(path).relative_to(project), key
    assert stage.upstream == {t: {k: Path(v) for k, v in p.items()} for t, p in namespace["upstream"].items()}  # type: ignore[union-attr]
    assert stage.registry == interactive / "registry"  # register writes the interactive registry
    assert stage.production_registry == project / "registry"  # the pipeline's, never written here
    assert stage.params.tracking == "disabled"


def test_evaluate_in_the_lab_reads_the_pipeline_registry_for_its_gate(project: Path) -> None:
    namespace = injected(project, "evaluate")
    stage = nbops.stage("evaluate", namespace)
    assert stage.production_registry == project / "registry"  # the gate compares with the pipeline's production
    assert stage.product["gate"] == project / "build/interactive/reports/promotion_gate.json"


def test_the_pipeline_root_comes_from_the_env_file_ploomber_read(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLOOMBER_ENV_FILENAME", "env.test.yaml")
    namespace = injected(project, "train", "env.test.yaml")
    stage = nbops.stage("train", namespace)
    assert stage.product["model"] == project / "build/interactive/models/model.txt"
    assert stage.upstream["features"]["train"] == project / "build/test/data/processed/train.parquet"


def test_a_product_outside_the_pipeline_root_is_not_written_in_place(project: Path, tmp_path: Path) -> None:
    namespace = injected(project, "train")
    elsewhere = tmp_path / "elsewhere" / "model.txt"
    namespace["product"] = {**namespace["product"], "model": str(elsewhere)}  # type: ignore[dict-item]
    stage = nbops.stage("train", namespace)
    assert stage.product["model"] == project / "build/interactive/outside-root" / elsewhere.relative_to("/")
    assert all(p.is_relative_to(project / "build/interactive") for p in stage.product.values())


def test_under_nbops_build_the_same_injection_is_used_as_it_is(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = injected(project, "register")
    assert nbops.stage("register", namespace).interactive  # the lab: no build id
    monkeypatch.setenv("NBOPS_BUILD_ID", "build-1")
    monkeypatch.setenv("NBOPS_TRACKING", "disabled")  # ignored by builds: env.yaml's tracking decides
    stage = nbops.stage("register", namespace)
    assert not stage.interactive
    assert stage.product == {k: Path(v) for k, v in namespace["product"].items()}  # type: ignore[union-attr]
    assert stage.registry == stage.production_registry == project / "registry"
    assert stage.params.tracking == "offline"


@pytest.mark.parametrize("asked", [None, "offline", "online", "disabled"])
def test_an_interactive_run_logs_to_wandb_only_when_asked(
    project: Path, monkeypatch: pytest.MonkeyPatch, asked: str | None
) -> None:
    if asked is not None:
        monkeypatch.setenv("NBOPS_TRACKING", asked)
    expected = asked or "disabled"
    # injected from env.yaml (tracking: offline) or the notebook's default (offline): neither is asking
    assert nbops.stage("evaluate", injected(project, "evaluate")).params.tracking == expected
    assert (
        nbops.stage("evaluate", {"product": None, "upstream": None, "tracking": "offline"}).params.tracking == expected
    )


def test_a_wrong_tracking_request_names_the_variable_and_the_choices(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBOPS_TRACKING", "yes")
    with pytest.raises(ConfigError) as err:
        nbops.stage("train", injected(project, "train"))
    assert "NBOPS_TRACKING='yes'" in str(err.value) and "offline, online, disabled" in str(err.value)


def test_a_notebook_on_its_own_still_writes_under_the_interactive_root_with_wandb_off(project: Path) -> None:
    stage = nbops.stage("train", {"product": None, "upstream": None, "tracking": "offline"})
    interactive = project / "build/interactive"
    assert stage.interactive
    assert stage.product["model"] == interactive / "models/model.txt"
    assert stage.upstream["features"]["train"] == interactive / "data/processed/train.parquet"
    assert stage.params.tracking == "disabled"


def test_a_missing_pipeline_product_in_the_lab_says_to_build_it(project: Path) -> None:
    stage = nbops.stage("train", injected(project, "train"))
    with pytest.raises(ConfigError) as err:
        stage.inp("features", "train")
    assert str(project / "data/processed/train.parquet") in str(err.value) and "`make run`" in str(err.value)
    assert "reads the pipeline's" in str(err.value)
