"""``nbops export airflow``: the generated DAG file, read as text and syntax (``ast``), never
importing Airflow (the DAG run under real Airflow: tests/e2e/test_airflow.py)."""

from __future__ import annotations

import ast
import itertools
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from nbops.config.spec import TaskSpec
from nbops.errors import NbopsError
from nbops.pipeline.airflow import MARKER, dag_width, export_airflow, stage_command
from nbops.pipeline.check import check_project
from tests.support import add_example_task, copy_project, nbops, output_of

ENV = "env.test.yaml"


# --------------------------------------------------------------------------------------------
# helpers: read a generated DAG file without Airflow


def dag_syntax(path: Path) -> dict[str, Any]:
    """The module-level constants of a generated DAG file and the keywords of its ``DAG(...)`` call."""
    tree = ast.parse(path.read_text(), filename=str(path))
    constants: dict[str, Any] = {}
    imports: set[str] = set()
    dag_kwargs: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node in tree.body
        ):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        elif isinstance(node, ast.ImportFrom):
            imports.add(node.module or "")
        elif isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "DAG":
            dag_kwargs = {k.arg: k.value for k in node.keywords if k.arg}

    def value(expr: ast.expr) -> Any:
        if isinstance(expr, ast.Name) and expr.id in constants:
            return constants[expr.id]
        try:
            return ast.literal_eval(expr)
        except ValueError:
            return ast.unparse(expr)

    return {"constants": constants, "imports": imports, "dag": {k: value(v) for k, v in dag_kwargs.items()}}


def edges(stages: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    return {(up, name) for name, stage in stages.items() for up in stage["upstream"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project copy for the fast tests (they only read it)."""
    return copy_project(tmp_path_factory.mktemp("airflow-export") / "project")


@pytest.fixture
def dags(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


# --------------------------------------------------------------------------------------------
# fast: the generated file


def test_generated_file_has_one_task_per_pipeline_task_and_the_same_edges(project: Path, dags: Path) -> None:
    result = export_airflow(project, dags, env_file=ENV)
    text = result.path.read_text()
    assert result.path == dags / "nbops_project.py" and text.startswith(MARKER)
    compile(text, str(result.path), "exec")
    syntax = dag_syntax(result.path)
    stages = syntax["constants"]["STAGES"]
    tasks = check_project(project, ENV).tasks
    assert list(stages) == [t.name for t in tasks] == result.tasks
    assert edges(stages) == {(up, t.name) for t in tasks for up in t.upstream}
    assert ("ingest", "features") in edges(stages) and ("package", "batch_score") in edges(stages)
    for task in tasks:
        assert stages[task.name]["notebook"] == str(task.source.relative_to(project.resolve()))
        command = stages[task.name]["bash_command"]
        assert command == f'cd "$NBOPS_PROJECT" && "$NBOPS_EXECUTABLE" build --env "$NBOPS_ENV_FILE" --task {task.name}'
    # Airflow's environment has no nbops: the file may import only Airflow and the standard library.
    assert syntax["imports"] == {"__future__", "datetime", "airflow.sdk", "airflow.providers.standard.operators.bash"}
    assert "import nbops" not in text and "from nbops" not in text


def test_dag_settings_params_and_retries(project: Path, dags: Path) -> None:
    result = export_airflow(project, dags, env_file=ENV, executable="/opt/proj/.venv/bin/nbops")
    syntax = dag_syntax(result.path)
    c, dag = syntax["constants"], syntax["dag"]
    assert dag["dag_id"] == "nbops_project"
    assert dag["schedule"] == check_project(project, ENV).settings.schedule == "0 6 * * *"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1 and dag["tags"] == ["nbops"]
    assert "retries': 2" in str(dag["default_args"]) and "timedelta(minutes=1)" in str(dag["default_args"])
    assert dag["doc_md"] == "__doc__"
    # project, env file and executable are DAG params an operator can change at trigger time
    assert (c["PROJECT"], c["ENV_FILE"], c["NBOPS"]) == (str(project.resolve()), ENV, "/opt/proj/.venv/bin/nbops")
    params = str(dag["params"])
    assert all(f"'{p}': Param(" in params for p in ("project", "env", "nbops"))
    text = result.path.read_text()
    assert "Generated by `nbops export airflow`" in text and "do not edit" in text.lower()
    assert '"NBOPS_PROJECT": "{{ params.project }}"' in text and '"NBOPS_EXECUTABLE": "{{ params.nbops }}"' in text
    assert "skip_on_exit_code=None" in text


def test_independent_stages_run_side_by_side_up_to_the_pipelines_width(project: Path, dags: Path) -> None:
    """After register, package and monitor do not depend on each other (nor batch_score and monitor):
    Airflow may run two stages at once, never more, and the file says why that is safe."""
    result = export_airflow(project, dags, env_file=ENV)
    dag = dag_syntax(result.path)["dag"]
    assert dag["max_active_tasks"] == result.width == 2
    assert dag["max_active_runs"] == 1  # runs of the DAG still one after another
    text = result.path.read_text()
    comment = text[text.index("max_active_runs=1,") : text.index("max_active_tasks=")]
    for reason in ("build lock shared", "its own generated env", "only its own products", "exclusive lock"):
        assert reason in comment, f"{reason!r} missing from the comment on max_active_tasks:\n{comment}"
    assert "One run at a time; within it," in text and "(at most 2 at once)" in text
    assert "at most 2 at once" in output_of(nbops(project, "export", "airflow", str(dags), "--env", ENV))


def test_a_task_of_your_own_beside_the_deployment_stages_widens_the_dag(tmp_path: Path, dags: Path) -> None:
    """The README's segment_review reads evaluate's products: it can run beside register or package,
    and beside monitor, so three stages may run at once."""
    own = copy_project(tmp_path / "own")
    add_example_task(own)
    result = export_airflow(own, dags, env_file=ENV)
    assert "segment_review" in result.tasks
    assert dag_syntax(result.path)["dag"]["max_active_tasks"] == result.width == 3


def spec(name: str, *upstream: str) -> TaskSpec:
    return TaskSpec(name=name, source=Path(f"{name}.ipynb"), product={}, params={}, upstream=list(upstream))


def brute_force_width(tasks: list[TaskSpec]) -> int:
    """The largest set of tasks none of which depends on another, by trying every subset."""
    by_name = {t.name: t for t in tasks}

    def depends(a: str, b: str) -> bool:  # a depends on b, directly or not
        return any(up == b or depends(up, b) for up in by_name[a].upstream)

    names = list(by_name)
    for size in range(len(names), 0, -1):
        for group in itertools.combinations(names, size):
            if not any(depends(a, b) for a in group for b in group if a != b):
                return size
    return 0


def test_dag_width_by_hand_and_against_every_subset() -> None:
    assert dag_width([spec("a"), spec("b", "a"), spec("c", "b")]) == 1  # a chain
    assert dag_width([spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c")]) == 2  # a diamond
    assert dag_width([spec("a"), *(spec(f"f{i}", "a") for i in range(5)), spec("z", "a")]) == 6  # a fan-out
    # c depends on a only through b: {a, c} is not independent; {c, d} is
    assert dag_width([spec("a"), spec("b", "a"), spec("c", "b"), spec("d", "a")]) == 2
    # a name outside the tasks (never in a checked project) is ignored, not a crash
    assert dag_width([spec("a", "elsewhere"), spec("b")]) == 2
    rng = random.Random(12)
    for _ in range(200):
        n = rng.randint(1, 8)
        tasks = [spec(f"t{i}", *(f"t{j}" for j in range(i) if rng.random() < 0.3)) for i in range(n)]
        assert dag_width(tasks) == brute_force_width(tasks), [(t.name, t.upstream) for t in tasks]


def test_default_executable_is_the_nbops_beside_this_python(project: Path, dags: Path) -> None:
    result = export_airflow(project, dags, env_file=ENV)
    assert result.executable == str(Path(os.path.abspath(sys.executable)).parent / "nbops")
    assert dag_syntax(result.path)["constants"]["NBOPS"] == result.executable


def test_schedule_override_and_manual_only(project: Path, dags: Path) -> None:
    result = export_airflow(project, dags, env_file=ENV, schedule="30  2 * * 1-5")
    assert result.schedule == "30 2 * * 1-5"
    assert dag_syntax(result.path)["dag"]["schedule"] == "30 2 * * 1-5"
    result = export_airflow(project, dags, env_file=ENV, schedule="none", dag_id="manual_only")
    assert dag_syntax(result.path)["dag"]["schedule"] is None


def test_schedule_comes_from_the_env_file(project: Path, dags: Path, tmp_path: Path) -> None:
    own = copy_project(tmp_path / "own")
    env = own / ENV
    env.write_text(env.read_text().replace('schedule: "0 6 * * *"', 'schedule: "15 4 * * 0"'))
    result = export_airflow(own, dags, env_file=ENV)
    assert dag_syntax(result.path)["dag"]["schedule"] == "15 4 * * 0"


def test_set_pairs_reach_every_stage_and_jinja_stays_literal(project: Path, dags: Path) -> None:
    result = export_airflow(project, dags, env_file=ENV, overrides={"rows": 2000}, set_pairs=["rows=2000"])
    stages = dag_syntax(result.path)["constants"]["STAGES"]
    assert all(s["bash_command"].endswith(f"--task {n} --set rows=2000") for n, s in stages.items())
    # Airflow renders bash_command with Jinja; a Ploomber placeholder in a value must survive it.
    command = stage_command("ingest", ["root={{here}}/out dir"])
    assert command.startswith("{% raw %}") and command.endswith("{% endraw %}")
    assert "--set 'root={{here}}/out dir'" in command


def test_paths_with_spaces_and_reexport_is_identical(tmp_path: Path) -> None:
    own = copy_project(tmp_path / "my project")
    out = tmp_path / "dag folder"
    out.mkdir()
    first = export_airflow(own, out, env_file=ENV, executable="/x y/nbops")
    assert first.dag_id == "nbops_my_project"
    text = first.path.read_text()
    assert dag_syntax(first.path)["constants"]["PROJECT"] == str(own.resolve())
    second = export_airflow(own, out, env_file=ENV, executable="/x y/nbops")
    assert second.path.read_text() == text  # deterministic: no timestamps, a re-export diff is empty
    assert [p.name for p in out.iterdir()] == [first.path.name]  # no temporary file left behind


def test_cli_prints_where_the_dag_went_and_how_to_use_it(project: Path, dags: Path) -> None:
    proc = nbops(
        project, "export", "airflow", str(dags), "--env", ENV, "--dag-id", "credit.risk-v1", "--schedule", "0 5 * * *"
    )
    out = output_of(proc)
    assert proc.returncode == 0, out
    path = dags / "credit.risk-v1.py"
    assert path.is_file() and str(path) in out
    assert f"AIRFLOW__CORE__DAGS_FOLDER={dags}" in out and "dags/" in out
    assert "airflow dags test credit.risk-v1" in out
    assert "--task <name>" in out and "'0 5 * * *'" in out
    assert dag_syntax(path)["dag"]["schedule"] == "0 5 * * *"


# --------------------------------------------------------------------------------------------
# fast: each error says what was expected, what was found and what to do


def assert_actionable(message: str, *needles: str) -> None:
    for part in ("expected:", "found:", "what to do:", *needles):
        assert part in message, f"{part!r} not in:\n{message}"


def test_error_out_dir_missing(project: Path, tmp_path: Path) -> None:
    with pytest.raises(NbopsError) as err:
        export_airflow(project, tmp_path / "nope", env_file=ENV)
    assert_actionable(str(err.value), "does not exist", "mkdir -p")


def test_error_out_dir_is_a_file(project: Path, tmp_path: Path) -> None:
    file = tmp_path / "dags.py"
    file.write_text("")
    with pytest.raises(NbopsError) as err:
        export_airflow(project, file, env_file=ENV)
    assert_actionable(str(err.value), "is not a folder")


def test_error_out_dir_unwritable(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permission bits: use a folder no one can write
            folder = Path("/proc")
        with pytest.raises(NbopsError) as err:
            export_airflow(project, folder, env_file=ENV)
    finally:
        (tmp_path / "readonly").chmod(0o755)
    assert_actionable(str(err.value), "cannot write into export folder")


@pytest.mark.parametrize("dag_id", ["my dag", "dag/../x", "dåg", "x" * 251, ""])
def test_error_invalid_dag_id(project: Path, dags: Path, dag_id: str) -> None:
    with pytest.raises(NbopsError) as err:
        export_airflow(project, dags, env_file=ENV, dag_id=dag_id)
    assert_actionable(str(err.value), "invalid Airflow DAG id", "letters, digits, '_', '.' or '-'", "--dag-id nbops_")
    assert list(dags.iterdir()) == []


@pytest.mark.parametrize("cron", ["0 6 * *", "0 6 * * * *", "@daily", "0 6 * * mon;rm"])
def test_error_cron_not_five_fields(project: Path, dags: Path, cron: str) -> None:
    with pytest.raises(NbopsError) as err:
        export_airflow(project, dags, env_file=ENV, schedule=cron)
    assert_actionable(str(err.value), "--schedule", "5 fields", repr(cron))
    assert list(dags.iterdir()) == []


def test_error_will_not_overwrite_a_file_it_did_not_write(project: Path, dags: Path) -> None:
    mine = dags / "nbops_project.py"
    mine.write_text("# someone's own DAG\n")
    with pytest.raises(NbopsError) as err:
        export_airflow(project, dags, env_file=ENV)
    assert_actionable(str(err.value), "was not generated by nbops", "--dag-id")
    assert mine.read_text() == "# someone's own DAG\n"


def test_cli_errors_exit_2_with_the_message(project: Path, dags: Path) -> None:
    proc = nbops(project, "export", "airflow", str(dags), "--env", ENV, "--schedule", "every day")
    assert proc.returncode == 2
    assert "error: --schedule: not a cron expression" in proc.stderr and "found: 'every day': 2 field(s)" in proc.stderr
    proc = nbops(project, "export", "airflow", str(dags / "missing"), "--env", ENV)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
