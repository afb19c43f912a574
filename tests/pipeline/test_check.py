"""`nbops check`: parameters are typed and checked before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbops.errors import ConfigError
from nbops.pipeline.check import check_project
from tests.support import free_port, nbops, nbops_in_process, output_of


def test_the_repository_pipeline_passes(project: Path) -> None:
    for env_file in ("env.yaml", "env.test.yaml"):
        checked = check_project(project, env_file)
        assert [t.name for t in checked.tasks] == [
            "ingest",
            "features",
            "tune",
            "train",
            "evaluate",
            "register",
            "package",
            "batch_score",
            "monitor",
        ]


def test_misspelt_parameter_in_pipeline_yaml_names_task_and_suggests(project: Path) -> None:
    spec = project / "pipeline.yaml"
    spec.write_text(spec.read_text().replace('learning_rate: "{{learning_rate}}"', 'learning_rat: "{{learning_rate}}"'))
    with pytest.raises(ConfigError) as err:
        check_project(project)
    message = str(err.value)
    assert "task 'train'" in message and "'learning_rat'" in message and "Did you mean 'learning_rate'" in message


def test_unknown_env_key_is_an_error(project: Path) -> None:
    env = project / "env.yaml"
    env.write_text(env.read_text() + "num_leafs: 63\n")
    with pytest.raises(ConfigError, match=r"unknown key 'num_leafs'.*Did you mean 'num_leaves'"):
        check_project(project)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("rows", "many", "an integer"),
        ("learning_rate", "-1", "> 0"),
        ("executor", "dask", "one of 'papermill', 'ploomber-engine'"),
        ("id_columns", "7", "a list of strings"),
    ],
)
def test_wrong_type_names_the_key_and_what_was_expected(project: Path, key: str, value: str, expected: str) -> None:
    proc = nbops_in_process(project, "check", "--set", f"{key}={value}")
    assert proc.returncode == 2
    assert f"'{key}' expected" in proc.stderr and expected in proc.stderr and value in proc.stderr


def test_notebook_parameter_unknown_to_the_stage_model_is_an_error(project: Path) -> None:
    nb_path = project / "notebooks" / "03_train.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"].append("\nmax_bin = 255\n")
    nb_path.write_text(json.dumps(nb))
    with pytest.raises(ConfigError, match="'max_bin' is not a field of TrainParams"):
        check_project(project)


def test_placeholder_missing_from_env_is_named(project: Path) -> None:
    env = project / "env.yaml"
    env.write_text("\n".join(line for line in env.read_text().splitlines() if not line.startswith("shap_sample:")))
    with pytest.raises(ConfigError, match=r"'\{\{shap_sample\}\}' is not defined"):
        check_project(project)


def test_check_imports_neither_ploomber_nor_jupyter(project: Path) -> None:
    """The check must answer before any kernel could start: it loads no orchestrator or kernel code."""
    code = (
        "import sys; from pathlib import Path; from nbops.pipeline.check import check_project; "
        f"check_project(Path({str(project)!r}), 'env.yaml'); "
        "heavy = [m for m in ('ploomber', 'papermill', 'jupyter_client', 'ipykernel', 'lightgbm', 'wandb') if m in "
        "sys.modules]; "
        "print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_build_with_bad_parameter_fails_before_ploomber_runs(project: Path) -> None:
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "num_boost_round=0")
    assert proc.returncode == 2
    assert "'num_boost_round' expected an integer (≥ 1)" in output_of(proc)
    assert not (project / "build").exists() and not list(project.glob("env.nbops-build*.yaml"))


def test_an_unreachable_dask_scheduler_fails_the_check_before_anything_runs(project: Path) -> None:
    port = free_port()  # nothing listens there
    proc = nbops(
        project,
        "build",
        "--env",
        "env.test.yaml",
        "--set",
        "engine=dask",
        "--set",
        f"dask_scheduler=tcp://127.0.0.1:{port}",
        timeout=60,
    )
    assert proc.returncode == 2, output_of(proc)
    assert f"cannot use the Dask scheduler at tcp://127.0.0.1:{port}" in proc.stderr
    assert "connection refused" in proc.stderr and "dask_scheduler: local" in proc.stderr
    assert not (project / "build").exists()  # no stage started
