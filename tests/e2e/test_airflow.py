"""``nbops export airflow`` run under real Apache Airflow 3.3.

Airflow is installed into its own virtualenv (cached under build/, as an operator's Airflow would
be: without nbops); the exported DAG runs with ``airflow dags test`` on a copy of the project, every
stage's products are checked, then one stage is rerun through Airflow to show a retry is harmless.
On the same built project, two single-task runs of independent stages run at once, and then Airflow's
scheduler (LocalExecutor, as `airflow standalone` runs it) runs a triggered DAG run whose independent
stages overlap in time, by Airflow's own records; each time the project is left consistent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from nbops.config import paths
from nbops.config.paths import registry_dir
from nbops.experiments.index import read_runs
from nbops.pipeline import lineage
from nbops.pipeline.build import resolve_project
from nbops.pipeline.check import check_project
from tests.support import REPO, copy_project, free_port, nbops, output_of

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


# --------------------------------------------------------------------------------------------
# independent stages at once: package and monitor, then batch_score and monitor, depend on earlier
# stages but not on each other

# The executed reports of the stages after register: removing them makes exactly those stages run
# again (their records say "a product was removed"), while everything upstream stays up to date.
AFTER_REGISTER = {"package": "06_package", "batch_score": "07_batch_score", "monitor": "08_monitor"}


def project_records(project: Path) -> dict[str, Any]:
    """The lineage and the build log, as the next command would read them."""
    root = Path(check_project(project, ENV).settings.root)
    log = [json.loads(line) for line in (root / paths.BUILD_LOG).read_text().splitlines() if line.strip()]
    return {"lineage": lineage.load_state(root), "log": log}


def assert_consistent(project: Path, before: dict[str, Any], ran: set[str]) -> None:
    """What independent single-task runs at once must leave: the lineage holds every task's current
    identity and, for each task that ran, its own new run; the build log one record per run, each
    claiming only its own task; every product and its Ploomber metadata intact and stamped by the run
    that made it; no generated env file left; and the next build is a true no-op."""
    checked = resolve_project(project, ENV, {"tracking": "disabled"})  # the values each build ran with (SETS)
    ids = lineage.identities(checked.tasks)
    after = project_records(project)
    state, new_records = after["lineage"], after["log"][len(before["log"]) :]
    assert sorted(state) == sorted(ids), state.keys()
    for task in checked.tasks:
        record = state[task.name]
        assert record["identity"] == ids[task.name]["identity"], (task.name, record["identity"])
        last_run = record["last_run"]["build_id"]
        if task.name in ran:
            assert last_run != before["lineage"][task.name]["last_run"]["build_id"], f"{task.name} did not run"
            mine = [r for r in new_records if r["only"] == task.name and r["tasks"][task.name]]
            assert [r["build_id"] for r in mine] == [last_run], (task.name, new_records)
        else:
            assert record == before["lineage"][task.name], f"{task.name}'s record changed but it did not run"
        for key, product in task.product.items():
            assert Path(product).exists(), f"{task.name}.{key} missing: {product}"
            meta = Path(product).parent / f".{Path(product).name}.metadata"
            data = json.loads(meta.read_text())  # Ploomber's own record, whole
            assert data["stored_source_code"] and data["timestamp"], (meta, sorted(data))
            assert (data["nbops_run_identity"], data["nbops_build_id"]) == (record["identity"], last_run), meta
        notebook = json.loads(Path(task.product["nb"]).read_text())
        assert notebook["cells"] and "<html" in Path(task.product["html"]).read_text()[:2000].lower()
    # a single-task run claims only its own task, even when another stage finished while it ran
    for record in new_records:
        assert record["returncode"] == 0, record
        assert [name for name, did in record["tasks"].items() if did] in ([], [record["only"]]), record
    assert sorted(r["only"] for r in new_records if r["tasks"][r["only"]]) == sorted(ran)
    assert not list(project.glob("env.nbops-build*.yaml")), "a generated env file was left behind"
    # the pipeline's picture, drawn by the run that finished last, shows every stage up to date
    page = (Path(checked.settings.root) / "reports" / "pipeline.html").read_text()
    for task in checked.tasks:
        row = re.search(rf'<tr data-task="{task.name}">.*?</tr>', page, re.S)
        assert row and '">up to date</span>' in row.group(0), (task.name, row and row.group(0))
    snap = snapshot(project)
    assert len(snap["versions"]) == 1 and snap["wheels"] and snap["history_rows"] > 0, snap
    again = nbops(project, "build", "--env", ENV, *SETS)
    assert again.returncode == 0 and "Nothing changed: all 9 tasks are up to date" in again.stdout, output_of(again)


def remove_reports(project: Path, tasks: set[str]) -> None:
    reports = Path(check_project(project, ENV).settings.root) / "reports"
    for task in tasks:
        (reports / f"{AFTER_REGISTER[task]}.ipynb").unlink()


def test_two_single_task_runs_of_independent_stages_at_once(airflow_run: dict[str, Any]) -> None:
    """What two Airflow workers do: `nbops build --task batch_score` and `--task monitor` started
    together, both running their notebooks at the same time."""
    project = airflow_run["project"]
    before = project_records(project)
    root = Path(check_project(project, ENV).settings.root)
    indexed = len(read_runs(root))
    remove_reports(project, {"batch_score", "monitor"})
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false"}
    env.pop("NBOPS_PROJECT", None)
    procs = {
        task: subprocess.Popen(
            [str(REPO_NBOPS), "build", "--env", ENV, "--task", task, *SETS],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in ("batch_score", "monitor")
    }
    outputs = {task: proc.communicate(timeout=600) for task, proc in procs.items()}
    for task, (out, err) in outputs.items():
        assert procs[task].returncode == 0, f"{task}:\n{out[-3000:]}\n{err[-3000:]}"
        assert f"Ran 1 of 9 tasks: {task}" in out, out[-3000:]
    assert_consistent(project, before, {"batch_score", "monitor"})
    # Both finished side by side, and each recorded its run: two whole lines more in the runs index.
    new = read_runs(root)[indexed:]
    assert sorted((r.task, r.status) for r in new) == [("batch_score", "ok"), ("monitor", "ok")], new
    assert len({r.build_id for r in new}) == 2


# Airflow's scheduler and API server (the task workers report to its execution API) on 127.0.0.1,
# with the LocalExecutor on the SQLite database the fixture migrated: what `airflow standalone`
# runs, without its triggerer and DAG processor (the DAG is written to the database with
# `airflow dags reserialize`). `airflow dags test` would run the stages one after another.
PARALLEL_DAG = "nbops_airflow_parallel"


def scheduler_env(env: dict[str, str], port: int) -> dict[str, str]:
    return {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # one secret for every component: the scheduler signs the workers' tokens, the API server checks them
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
    }


@contextlib.contextmanager
def airflow_services(venv: Path, env: dict[str, str], logs: Path) -> Iterator[None]:
    """The API server and the scheduler for the block, each in its own process group, stopped after."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in (("api-server", ["--port", env["AIRFLOW__API__PORT"]]), ("scheduler", [])):
            with (logs / f"{name}.log").open("wb") as out:
                started[name] = subprocess.Popen(
                    [str(venv / "bin" / "airflow"), name, *args],
                    env=env,
                    cwd=env["AIRFLOW_HOME"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield
    finally:
        for proc in started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):  # what its group still holds (workers, server children)
                os.killpg(proc.pid, signal.SIGKILL)


def wait_for_api(env: dict[str, str], logs: Path, timeout: float = 180) -> None:
    import httpx

    url = f"{env['AIRFLOW__API__BASE_URL']}/api/v2/monitor/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"Airflow's API server did not answer {url}:\n{(logs / 'api-server.log').read_text()[-5000:]}")


def wait_for_run(home: Path, dag_id: str, run_id: str, logs: Path, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        with sqlite3.connect(home / "airflow.db") as db:
            row = db.execute("select state from dag_run where dag_id = ? and run_id = ?", (dag_id, run_id)).fetchone()
        state = row[0] if row else None
        if state in ("success", "failed"):
            return str(state)
        time.sleep(1)
    raise AssertionError(
        f"the DAG run {run_id} did not finish in {timeout:.0f} s (state {state}):\n"
        f"{(logs / 'scheduler.log').read_text()[-5000:]}"
    )


def task_times(home: Path, dag_id: str, run_id: str) -> dict[str, tuple[str, int, datetime, datetime]]:
    """Per task of one run: state, try number, start and end, from Airflow's task_instance table."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "select task_id, state, try_number, start_date, end_date from task_instance "
            "where dag_id = ? and run_id = ? order by start_date",
            (dag_id, run_id),
        ).fetchall()
    return {
        t: (state, tries, datetime.fromisoformat(start), datetime.fromisoformat(end))
        for t, state, tries, start, end in rows
    }


def test_airflow_scheduler_runs_independent_stages_at_the_same_time(airflow_run: dict[str, Any]) -> None:
    """A triggered run of the exported DAG under Airflow's scheduler: after register, package and
    monitor are ready together and run side by side, then batch_score beside monitor; Airflow's own
    start and end dates show the overlap, its edges are kept, and the project is consistent."""
    venv, home, project = airflow_run["venv"], airflow_run["home"], airflow_run["project"]
    dags_folder = airflow_run["dag_file"].parent
    logs = home / "parallel-logs"
    logs.mkdir()
    env = scheduler_env(airflow_run["env"], free_port())
    exported = nbops(
        project,
        "export",
        "airflow",
        str(dags_folder),
        "--env",
        ENV,
        "--dag-id",
        PARALLEL_DAG,
        "--schedule",
        "none",
        *SETS,
    )
    assert exported.returncode == 0 and "at most 2 at once" in exported.stdout, output_of(exported)
    with sqlite3.connect(home / "airflow.db") as db:  # the scheduled e2e DAG must not start a run of its own
        assert db.execute("select is_paused from dag where dag_id = ?", (airflow_run["dag_id"],)).fetchone() == (1,)
    before = project_records(project)
    remove_reports(project, set(AFTER_REGISTER))
    with airflow_services(venv, env, logs):
        serialized = airflow(venv, env, "dags", "reserialize")
        assert serialized.returncode == 0, output_of(serialized)[-5000:]
        wait_for_api(env, logs)
        t0 = time.perf_counter()
        triggered = airflow(venv, env, "dags", "trigger", PARALLEL_DAG, "--output", "json")
        assert triggered.returncode == 0, output_of(triggered)[-5000:]
        (run,) = json.loads(triggered.stdout.strip().splitlines()[-1])
        state = wait_for_run(home, PARALLEL_DAG, run["dag_run_id"], logs)
        seconds = time.perf_counter() - t0
    times = task_times(home, PARALLEL_DAG, run["dag_run_id"])
    print(f"\nDAG run under the scheduler: {state} in {seconds:.1f} s")
    for task, (task_state, tries, start, end) in times.items():
        print(f"  {task:12s} {task_state:8s} try {tries}  {start:%H:%M:%S.%f} -> {end:%H:%M:%S.%f}")
    assert state == "success", (times, (logs / "scheduler.log").read_text()[-5000:])
    names = [t.name for t in check_project(project, ENV).tasks]
    assert sorted(times) == sorted(names) and all(s == "success" and n == 1 for s, n, _, _ in times.values()), times
    # Airflow kept every edge: a stage started only after each of its upstream stages ended
    for task in check_project(project, ENV).tasks:
        for up in task.upstream:
            assert times[up][3] <= times[task.name][2], (up, task.name, times[up], times[task.name])

    def overlap(a: str, b: str) -> float:
        return (min(times[a][3], times[b][3]) - max(times[a][2], times[b][2])).total_seconds()

    overlaps = {pair: overlap(*pair) for pair in (("package", "monitor"), ("batch_score", "monitor"))}
    print(f"  overlaps (s): {overlaps}")
    assert any(seconds > 0 for seconds in overlaps.values()), (
        f"no two independent stages ran at the same time under the scheduler: {overlaps}; {times}"
    )
    assert_consistent(project, before, set(AFTER_REGISTER))
