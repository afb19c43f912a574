"""``nbops export airflow`` run under real Apache Airflow 3.3.

Airflow is installed into its own virtualenv (cached under build/, as an operator's Airflow would
be: without nbops); the exported DAG runs with ``airflow dags test`` on a copy of the project, every
stage's products are checked, then one stage is rerun through Airflow to show a retry is harmless.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbops.config.paths import registry_dir
from nbops.pipeline.check import check_project
from tests.support import REPO, copy_project, nbops, output_of

pytestmark = pytest.mark.slow
ENV = "env.test.yaml"

# The newest Airflow 3.3 on PyPI. Airflow's constraint files live on GitHub, which CI may not
# reach, so the resolution is pinned instead by date: versions as PyPI had them on that day.
# Upgrading: change both (RESOLVED_AT after the release); the venv folder name changes with it.
AIRFLOW_VERSION = "3.3.2"
RESOLVED_AT = "2026-11-26T00:00:00Z"
AIRFLOW_VENV = REPO / "build" / f"airflow-venv-{AIRFLOW_VERSION}"
INSTALLED_MARKER = AIRFLOW_VENV / ".nbops-installed"
REPO_NBOPS = REPO / ".venv" / "bin" / "nbops"
SETS = ("--set", "tracking=disabled")


def airflow_venv() -> Path:
    """Apache Airflow in its own virtualenv under build/, installed once; a lock serialises installs.

    Concurrent pytest runs (and a fresh CI clone) all call this: the first installs while the others
    wait on the lock, then find the marker file written after a complete install.
    """
    AIRFLOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(AIRFLOW_VENV.parent / f"{AIRFLOW_VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if INSTALLED_MARKER.exists():
            return AIRFLOW_VENV
        shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)  # a half-finished install from a killed run
        uv = REPO / ".venv" / "bin" / "uv"
        python = AIRFLOW_VENV / "bin" / "python"
        for cmd in (
            [str(uv), "venv", "--quiet", "--python", sys.executable, str(AIRFLOW_VENV)],
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                "--exclude-newer",
                RESOLVED_AT,
                f"apache-airflow=={AIRFLOW_VERSION}",
            ],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, (
                f"installing Airflow failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        INSTALLED_MARKER.write_text(AIRFLOW_VERSION + "\n")
        return AIRFLOW_VENV


def airflow_env(home: Path, dags_folder: Path) -> dict[str, str]:
    """Airflow's environment: its own home and DAG folder; nothing of this repo's Python on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "NBOPS_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        PLOOMBER_STATS_ENABLED="false",
    )
    return env


def airflow(venv: Path, env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "airflow"), *args],
        env=env,
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def task_states(home: Path, dag_id: str) -> dict[str, list[tuple[str, str, int]]]:
    """Per run id: (task_id, state, try_number) of every task instance, from Airflow's own database."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "select run_id, task_id, state, try_number from task_instance where dag_id = ? order by start_date",
            (dag_id,),
        ).fetchall()
    states: dict[str, list[tuple[str, str, int]]] = {}
    for run_id, task_id, state, tries in rows:
        states.setdefault(run_id, []).append((task_id, state, tries))
    return states


def snapshot(project: Path) -> dict[str, Any]:
    """What a rerun must not change: registry versions and aliases, monitoring rows, model, wheel."""
    import hashlib

    import pandas as pd

    checked = check_project(project, ENV)
    tasks = {t.name: t for t in checked.tasks}
    registry = registry_dir(checked.settings.root)  # the registry register writes: <root>/registry
    monitor = tasks["monitor"].product
    history = pd.read_parquet(monitor["history"])
    return {
        "versions": sorted(str(p.relative_to(registry)) for p in registry.glob("*/versions/*")),
        "aliases": {str(p.relative_to(registry)): p.read_text() for p in registry.rglob("*alias*") if p.is_file()},
        "history_rows": len(history),
        "history_batches": sorted(history["batch_id"].astype(str)),
        "alerts": Path(monitor["alerts"]).read_text(),
        "model": hashlib.sha256(Path(tasks["train"].product["model"]).read_bytes()).hexdigest(),
        "wheels": sorted(p.name for p in Path(tasks["package"].product["manifest"]).parent.glob("*.whl")),
        "monitor_nb_mtime": Path(monitor["nb"]).stat().st_mtime_ns,
    }


# Run by Airflow's own Python: the DAG file imports there although nbops is not installed, and
# Airflow builds from it the pipeline's graph, schedule, params and retries.
IMPORT_CHECK = """\
import importlib.util, json, runpy, sys
assert importlib.util.find_spec("nbops") is None, "nbops must not be importable in Airflow's venv"
dag = runpy.run_path(sys.argv[1])["dag"]
print(json.dumps({
    "schedule": str(dag.schedule), "params": dict(dag.params), "retries": sorted({t.retries for t in dag.tasks}),
    "edges": sorted([u, t.task_id] for t in dag.tasks for u in t.upstream_task_ids),
}))
"""


@pytest.fixture(scope="module")
def airflow_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Export the DAG from a project copy and run it once with `airflow dags test`."""
    t0 = time.perf_counter()
    venv = airflow_venv()
    t_install = time.perf_counter() - t0
    base = tmp_path_factory.mktemp("airflow")
    project = copy_project(base / "project")
    home, dags_folder = base / "airflow-home", base / "dags"
    home.mkdir()
    dags_folder.mkdir()
    env = airflow_env(home, dags_folder)
    # The database migration (~10 s) runs while nbops exports the DAG and Airflow's Python imports it.
    migrate = subprocess.Popen(
        [str(venv / "bin" / "airflow"), "db", "migrate"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The copy has no .venv of its own: the exported default is the nbops beside this Python,
    # which is the repository's .venv/bin/nbops. W&B is off (test_pipeline covers it; it costs about
    # 5 s per stage), which also shows an export's --set reaching every stage run by Airflow.
    proc = nbops(project, "export", "airflow", str(dags_folder), "--env", ENV, "--dag-id", "nbops_airflow_e2e", *SETS)
    assert proc.returncode == 0, output_of(proc)
    dag_file = dags_folder / "nbops_airflow_e2e.py"
    imported = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", IMPORT_CHECK, str(dag_file)],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    migrate_out, _ = migrate.communicate(timeout=600)
    assert migrate.returncode == 0, migrate_out[-5000:]
    import_out, import_err = imported.communicate(timeout=300)
    t1 = time.perf_counter()
    run = airflow(venv, env, "dags", "test", "nbops_airflow_e2e", timeout=900)
    t_run = time.perf_counter() - t1
    print(
        f"\nAirflow venv {t_install:.1f} s, db migrate + export + import check {t1 - t0 - t_install:.1f} s, "
        f"dags test {t_run:.1f} s"
    )
    return {
        "venv": venv,
        "env": env,
        "home": home,
        "project": project,
        "dag_id": "nbops_airflow_e2e",
        "dag_file": dag_file,
        "dags_test": run,
        "import_check": (imported.returncode, import_out, import_err),
    }


def test_dag_imports_in_airflow_without_nbops(airflow_run: dict[str, Any]) -> None:
    """Airflow's own Python parses the file (nbops is not installed there) into the pipeline's graph."""
    code, out, err = airflow_run["import_check"]
    assert code == 0, err[-5000:]
    parsed = json.loads(out.strip().splitlines()[-1])
    tasks = check_project(airflow_run["project"], ENV).tasks
    assert sorted(map(tuple, parsed["edges"])) == sorted((up, t.name) for t in tasks for up in t.upstream)
    assert parsed["schedule"] == "0 6 * * *" and parsed["retries"] == [2]
    assert parsed["params"] == {"project": str(airflow_run["project"].resolve()), "env": ENV, "nbops": str(REPO_NBOPS)}


def test_airflow_runs_every_stage_once_and_all_succeed(airflow_run: dict[str, Any]) -> None:
    run = airflow_run["dags_test"]
    assert run.returncode == 0, output_of(run)[-8000:]
    runs = task_states(airflow_run["home"], airflow_run["dag_id"])
    assert len(runs) == 1, runs
    (states,) = runs.values()
    names = [t.name for t in check_project(airflow_run["project"], ENV).tasks]
    assert sorted(s[0] for s in states) == sorted(names)
    assert all(state == "success" and tries == 1 for _, state, tries in states), states
    # each Airflow task built exactly its own stage
    log = output_of(run)
    for name in names:
        assert f"--task {name} --set tracking=disabled" in log


def test_airflow_run_wrote_every_product(airflow_run: dict[str, Any]) -> None:
    project = airflow_run["project"]
    for task in check_project(project, ENV).tasks:
        for key, path in task.product.items():
            assert Path(path).exists(), f"{task.name}.{key} missing after the Airflow run: {path}"
        assert "<html" in Path(task.product["html"]).read_text()[:2000].lower()
    snap = snapshot(project)
    assert len(snap["versions"]) == 1 and snap["wheels"] and snap["aliases"], snap
    assert snap["history_rows"] > 0


def test_rerunning_a_stage_through_airflow_is_idempotent(airflow_run: dict[str, Any], tmp_path: Path) -> None:
    """A retry of a finished stage (same run) succeeds and changes nothing.

    The rerun goes through a wrapper given as the `nbops` param at run time: that shows the params
    are read when the task runs, and records the exact command the Airflow task ran.
    """
    project, env = airflow_run["project"], airflow_run["env"]
    before = snapshot(project)
    (run_id,) = task_states(airflow_run["home"], airflow_run["dag_id"])
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "nbops-wrapper"
    wrapper.write_text(f'#!/bin/bash\necho "$PWD|$*" >> {calls}\nexec {REPO_NBOPS} "$@"\n')
    wrapper.chmod(0o755)
    params = json.dumps({"nbops": str(wrapper)})
    proc = airflow(
        airflow_run["venv"], env, "tasks", "test", airflow_run["dag_id"], "monitor", run_id, "--task-params", params
    )
    out = output_of(proc)
    # `airflow tasks test` exits 0 even when the task fails: read the task's own outcome.
    assert proc.returncode == 0 and "Command exited with return code 0" in out and "new_state=success" in out, out[
        -8000:
    ]
    assert calls.read_text().splitlines() == [
        f"{project.resolve()}|build --env {ENV} --task monitor --set tracking=disabled"
    ]
    after = snapshot(project)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
