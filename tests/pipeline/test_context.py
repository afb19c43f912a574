"""nbops.pipeline.context: where a stage reads and writes under a build, in JupyterLab (injected, no build id)
and on its own; and that W&B is off in interactive runs unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbops
from nbops.config.spec import load_env, load_tasks
from nbops.errors import ConfigError
from nbops.pipeline.context import (
    Stage,
    env_file_in_use,
    interactive_path,
    pipeline_root,
    run_identities,
    run_identity,
)
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


# --- the Stage and the path rules, directly -------------------------------------------------------


def _stage(project: Path, **changes: object) -> Stage:
    from nbops.config.params import TrainParams

    fields = {
        "name": "train",
        "params": TrainParams(),
        "product": {"model": project / "out" / "deep" / "model.txt"},
        "upstream": {"features": {"train": project / "in" / "train.parquet"}},
        "project": project,
        "interactive": False,
    }
    return Stage(**{**fields, **changes})  # type: ignore[arg-type]


def test_out_creates_the_folder_and_names_the_products_it_has(project: Path) -> None:
    stage = _stage(project)
    assert stage.out("model") == project / "out" / "deep" / "model.txt" and (project / "out" / "deep").is_dir()
    with pytest.raises(ConfigError, match="stage 'train' has no product 'curve' \\(it has model\\)"):
        stage.out("curve")


def test_inp_names_the_missing_product_the_task_that_makes_it_and_what_to_run(project: Path) -> None:
    stage = _stage(project)
    with pytest.raises(ConfigError, match="no upstream product ingest.valid"):
        stage.inp("ingest", "valid")
    with pytest.raises(ConfigError) as err:
        stage.inp("features", "train")
    assert "made by stage 'features', which has not run yet" in str(err.value)
    assert "run the 'features' notebook first (or `make run`)" in str(err.value)
    (project / "in").mkdir()
    (project / "in" / "train.parquet").write_text("x")
    assert stage.inp("features", "train") == project / "in" / "train.parquet"


def test_the_registry_is_under_the_root_and_production_under_the_pipelines(project: Path) -> None:
    assert _stage(project).registry == project / "registry"  # no root: the project's
    lab = _stage(project, root=project / "build/interactive", pipeline_root=project / "build/test")
    assert lab.registry == project / "build/interactive/registry"
    assert lab.production_registry == project / "build/test/registry"


def test_interactive_paths_never_land_on_a_pipeline_path(tmp_path: Path) -> None:
    pipeline, lab = tmp_path / "build/test", tmp_path / "build/interactive"
    assert interactive_path(pipeline / "models/model.txt", pipeline, lab) == lab / "models/model.txt"
    assert interactive_path(lab / "models/model.txt", pipeline, lab) == lab / "models/model.txt"  # already there
    assert interactive_path(Path("/srv/shared/x.parquet"), pipeline, lab) == lab / "outside-root/srv/shared/x.parquet"
    assert interactive_path(Path("build/test/a.json"), pipeline, lab, project=tmp_path) == lab / "a.json"


def test_the_env_file_in_use_is_ploombers_then_nbops_env_then_env_yaml(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBOPS_ENV", raising=False)
    assert env_file_in_use() == "env.yaml" and pipeline_root(project) == project.resolve()  # env.yaml: root is here
    monkeypatch.setenv("NBOPS_ENV", "env.test.yaml")
    assert env_file_in_use() == "env.test.yaml" and pipeline_root(project) == (project / "build/test").resolve()
    monkeypatch.setenv("PLOOMBER_ENV_FILENAME", "env.yaml")
    assert env_file_in_use() == "env.yaml"


def test_run_identities_come_from_the_build_and_a_broken_value_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NBOPS_RUN_IDENTITIES", '{"train": "abc123"}')
    assert run_identity("train") == "abc123" and run_identity("ingest") is None
    monkeypatch.setenv("NBOPS_RUN_IDENTITIES", "{not json")
    assert run_identities() == {} and "ignoring NBOPS_RUN_IDENTITIES: not a JSON object" in caplog.text
