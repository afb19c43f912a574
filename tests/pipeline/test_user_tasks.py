"""A notebook task of your own (the README's segment_review example): typed by its annotated
parameters cell in `nbops check`, and given the stage context built-in stages get."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import nbops
from nbops.errors import ConfigError
from nbops.pipeline.check import check_project
from nbops.pipeline.context import INTERACTIVE_ROOT
from tests.support import EXAMPLE_TASK, add_example_task, nbops_in_process, output_of
from tests.support import nbops as nbops_process


def test_the_readme_task_passes_the_check_with_its_typed_values(project: Path) -> None:
    add_example_task(project)
    checked = check_project(project, "env.test.yaml")
    task = next(t for t in checked.tasks if t.name == EXAMPLE_TASK)
    assert task.params == {"threshold": 0.3} and task.upstream == ["ingest", "features", "evaluate"]


@pytest.mark.parametrize(
    ("replace", "messages"),
    [
        (
            {"threshold": 'threshold: "abc"'},
            ["task 'segment_review' params: 'threshold' expected a number (> 0, < 1), found 'abc' (str)"],
        ),
        (
            {"threshold": "treshold: 0.3"},
            [
                "task 'segment_review' params: unknown key 'treshold'. Did you mean 'threshold'?",
                "(parameters are declared in the parameters cell of segment_review.ipynb)",
            ],
        ),
        ({"threshold": "threshold: 1.5"}, ["'threshold' expected a number (> 0, < 1), found 1.5"]),
        ({"threshold": 'min_ratio: "{{psi_threshold}}"'}, []),  # an env value through a placeholder is fine
        (
            {"threshold": 'min_rows: "{{shap_sample}}x"'},
            ["'min_rows' expected an integer (≥ 1), found '500x'"],
        ),  # env.test.yaml's shap_sample
    ],
)
def test_a_bad_value_fails_the_check_naming_the_key(
    project: Path, replace: dict[str, str], messages: list[str]
) -> None:
    add_example_task(project, **replace)
    if not messages:
        check_project(project, "env.test.yaml")
        return
    with pytest.raises(ConfigError) as err:
        check_project(project, "env.test.yaml")
    for message in messages:
        assert message in str(err.value)


def test_nbops_check_refuses_a_bad_value_before_any_kernel_and_says_it_last(project: Path) -> None:
    add_example_task(project, threshold='threshold: "abc"')
    started = time.perf_counter()
    proc = nbops_process(project, "check", "--env", "env.test.yaml")
    elapsed = time.perf_counter() - started  # reported, never asserted: the machine is shared
    assert proc.returncode == 2, output_of(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert "'threshold' expected a number (> 0, < 1), found 'abc'" in last, proc.stderr
    print(f"nbops check refused the task in {elapsed:.2f} s (process start included)")


def test_an_unusable_parameters_cell_is_named_by_the_check(project: Path) -> None:
    add_example_task(project)
    nb = project / "notebooks/examples/segment_review.ipynb"
    nb.write_text(
        nb.read_text().replace("threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5", "threshold: Prob = 0.5")
    )
    proc = nbops_in_process(project, "check", "--env", "env.test.yaml")
    assert proc.returncode == 2
    assert "task 'segment_review': segment_review.ipynb line " in proc.stderr
    assert "the type of parameter 'threshold' cannot be read (Prob" in proc.stderr


def test_the_stage_context_types_a_user_task_run_on_its_own(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_example_task(project)
    monkeypatch.setenv("NBOPS_PROJECT", str(project))
    for var in ("NBOPS_BUILD_ID", "NBOPS_RUN_IDENTITIES", "NBOPS_TRACKING", "PLOOMBER_ENV_FILENAME", "NBOPS_ENV"):
        monkeypatch.delenv(var, raising=False)
    # the parameters cell ran: its defaults are in the namespace, upstream/product are None
    namespace = {"upstream": None, "product": None, "segment_columns": [], "threshold": 0.5, "min_rows": 100}
    stage = nbops.stage(EXAMPLE_TASK, namespace)
    assert stage.interactive and stage.params.threshold == 0.5 and stage.params.min_ratio == 0.8
    assert stage.out("summary") == project / INTERACTIVE_ROOT / "reports/segment_review.json"
    assert stage.upstream["evaluate"]["predictions"] == (
        project / INTERACTIVE_ROOT / "data/processed/test_predictions.parquet"
    )
    assert stage.run is not None and not stage.run.enabled  # W&B off in an interactive run unless asked
    with pytest.raises(ConfigError, match="'min_rows' expected an integer"):
        nbops.stage(EXAMPLE_TASK, {**namespace, "min_rows": "many"})


def test_a_stage_name_missing_from_pipeline_yaml_says_what_to_add(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBOPS_PROJECT", str(project))
    with pytest.raises(ConfigError, match="pipeline.yaml has no task named 'segment_review'.*add a task"):
        nbops.stage(EXAMPLE_TASK, {"upstream": None, "product": None})
