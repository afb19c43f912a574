"""nbops.pipeline.build without Ploomber: why a build failed (the stage's own report, else the log),
the summary and the failure text a user reads last, which tasks ran, the data version that reruns
ingest, and the env file handed to Ploomber."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbops import progress as events
from nbops.errors import ConfigError, NbopsError
from nbops.pipeline.build import (
    GENERATED_ENV,
    TaskOutcome,
    build_failure,
    data_version,
    failure_text,
    gate_note,
    last_build_record,
    remove_debris,
    resolve_project,
    summary_text,
    task_outcomes,
    upstream_closure,
    write_generated_env,
)
from nbops.pipeline.check import check_project
from nbops.pipeline.retrain_state import save_state
from tests.support import nbops, output_of

TASKS = ["ingest", "features", "tune", "train", "evaluate", "register", "package", "batch_score", "monitor"]


def test_the_failure_of_a_stage_is_its_own_report_when_it_sent_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = tmp_path / "e.jsonl"
    monkeypatch.setenv(events.EVENTS_ENV, str(channel))
    events.set_task("ingest")
    events.report_failure(ConfigError("target: expected a column, found none"))
    failure = build_failure(channel, tmp_path / "missing.log")
    assert failure == {**failure, "task": "ingest", "error": "ConfigError", "nbops": True}
    assert failure["message"] == "target: expected a column, found none"


def test_without_a_report_the_last_real_exception_in_the_log_is_named(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(
        "Building task 'features'\nTraceback (most recent call last):\n  File x\nKeyError: 'month'\n"
        "ploomber.exceptions.TaskBuildError: Error building task 'features'\nNeed help? https://ploomber.io/community\n"
    )
    failure = build_failure(tmp_path / "no-events.jsonl", log)
    assert (failure["task"], failure["error"], failure["message"], failure["nbops"]) == (
        "features",
        "KeyError",
        "'month'",
        False,
    )


def test_gate_note_says_when_production_got_worse_within_the_tolerance() -> None:
    gate = {
        "promote": True,
        "metric": "roc_auc",
        "candidate": 0.7612,
        "production": 0.7650,
        "production_version": "v0001",
        "tolerance": 0.005,
    }
    note = gate_note(gate, {"version": "v0002", "aliases": {"production": "v0002"}})
    assert note is not None and "worse than v0001" in note and "-0.0038" in note and "rollback" in note
    better = {**gate, "candidate": 0.78}
    assert gate_note(better, {"version": "v0002", "aliases": {"production": "v0002"}}) is None
    kept = {**gate, "promote": False, "candidate": 0.70}
    assert "stays a candidate" in (gate_note(kept, {"version": "v0002", "aliases": {"production": "v0001"}}) or "")
    rmse = {
        "promote": True,
        "metric": "rmse",
        "candidate": 10.2,
        "production": 10.0,
        "production_version": "v0003",
        "tolerance": 0.5,
    }
    assert "(-0.2000)" in (gate_note(rmse, {"version": "v0004", "aliases": {"production": "v0004"}}) or "")


# --- the summary printed at the end of a build ---------------------------------------------------


def _outcomes(checked: Any, ran: dict[str, list[str]]) -> list[TaskOutcome]:
    """Each task's outcome: ran (with its reasons) when named in ``ran``, else skipped."""
    return [TaskOutcome(t.name, t.name in ran, t.product, ran.get(t.name, [])) for t in checked.tasks]


def test_the_summary_of_a_first_build_reads_the_products_it_names(ran_in_process: dict[str, Any]) -> None:
    """On the products of a real run (every runner, in process): each line's numbers are the files'."""
    checked, project = ran_in_process["checked"], ran_in_process["project"]
    root = Path(checked.settings.root)
    text = summary_text(_outcomes(checked, {name: ["never built"] for name in TASKS}), checked)
    lines = text.splitlines()
    assert lines[1] == lines[-1] == "=" * 72
    assert f"Ran 9 of 9 tasks: {', '.join(TASKS)}" in lines
    assert f"  never built before: {', '.join(TASKS)}" in lines
    metrics = json.loads((root / "reports/metrics.json").read_text())["metrics"]
    head = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ks"))
    assert f"Model (binary, test split): {head}" in lines
    ingest = json.loads((root / "data/interim/ingest_summary.json").read_text())
    assert (
        f"Data: 2,000 rows read, {ingest['rows_valid']:,} valid, {ingest['rows_quarantined']:,} quarantined; "
        f"fingerprint {ingest['fingerprint'][:12]}"
    ) in lines
    assert "Registry: this build's model is v0001; production is v0001 (build/test/registry/credit_risk)" in lines
    assert "Wheel: build/test/dist/credit_risk_model-1-py3-none-any.whl (model v0001); `make serve` serves it" in lines
    assert lines[-3].startswith("Reports: build/test/reports/ ") and "build/test/reports/04_evaluate.html" in lines[-2]
    assert str(project) not in text  # paths as the user types them: relative to the project


def test_a_partial_rebuild_says_why_each_task_ran_and_which_were_skipped(ran_in_process: dict[str, Any]) -> None:
    checked = ran_in_process["checked"]
    why = "parameter 'learning_rate' changed: 0.05 -> 0.1"
    ran = {"train": [why], "evaluate": ["input from 'train' changed"]}
    lines = summary_text(_outcomes(checked, ran), checked).splitlines()
    skipped = ", ".join(name for name in TASKS if name not in ran)
    assert f"Ran 2 of 9 tasks: train, evaluate (skipped, up to date: {skipped})" in lines
    assert f"  train: {why}" in lines and "  evaluate: input from 'train' changed" in lines
    assert not any("never built before" in line for line in lines)
    assert "  (`nbops why TASK` explains any task)" in lines


@pytest.mark.slow
def test_a_partial_build_on_an_empty_root_never_calls_later_tasks_up_to_date(project: Path) -> None:
    """`--until ingest` on an empty root once printed every later task as "skipped, up to date"."""
    proc = nbops(project, "build", "--env", "env.test.yaml", "--until", "ingest", "--set", "tracking=disabled")
    assert proc.returncode == 0, output_of(proc)[-3000:]
    later = ", ".join(TASKS[1:])
    assert "Ran 1 of 9 tasks: ingest\n" in proc.stdout and "skipped, up to date" not in proc.stdout
    assert f"  not part of this build: {later} (never built: {later})" in proc.stdout


def test_nothing_ran_is_up_to_date_only_when_every_task_was_built(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    first = summary_text(_outcomes(checked, {}), checked)
    assert f"No task ran; not built yet: {', '.join(TASKS)}" in first
    for task in checked.tasks:  # every executed notebook there: built before, nothing to do now
        Path(task.product["nb"]).parent.mkdir(parents=True, exist_ok=True)
        Path(task.product["nb"]).write_text("{}")
    again = summary_text(_outcomes(checked, {}), checked)
    assert "Nothing changed: all 9 tasks are up to date and were skipped." in again
    assert "Model (" not in again and "Registry:" not in again  # no products to read: no such lines


def test_a_task_ran_when_its_executed_notebook_is_newer_than_the_build(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    started = time.time()
    for task in checked.tasks:
        nb = Path(task.product["nb"])
        nb.parent.mkdir(parents=True, exist_ok=True)
        nb.write_text("{}")
        if task.name in ("ingest", "features"):  # written by an earlier build
            os.utime(nb, (started - 3600, started - 3600))
    outcomes = task_outcomes(checked, started, {"ingest": ["never built"], "train": ["the data file changed"]})
    assert [o.name for o in outcomes if o.ran] == TASKS[2:]
    assert {o.name: o.reasons for o in outcomes if o.reasons} == {"train": ["the data file changed"]}
    assert all(o.products == t.product for o, t in zip(outcomes, checked.tasks, strict=True))


# --- the failure printed last --------------------------------------------------------------------


def _record(root: Path, failure: dict[str, Any] | None) -> None:
    (root / "reports").mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"build_id": "b1", "returncode": 0, "log": str(root / ".nbops/logs/build-b1.log")}),
        json.dumps({"build_id": "b2", "returncode": 1, "failure": failure, "log": str(root / ".nbops/logs/b2.log")}),
        '{"build_id": "b3", "ret',  # a line cut short by a killed build: not the last record
    ]
    (root / "reports" / "builds.jsonl").write_text("\n".join(lines) + "\n")


def test_an_nbops_error_is_the_last_thing_printed_with_the_task_and_the_log(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    root = Path(checked.settings.root)
    message = "the target has a single class\n  found: every labelled row is 1"
    _record(
        root, {"task": "ingest", "error": "DataError", "message": message, "nbops": True, "log": str(root / "x.log")}
    )
    assert last_build_record(root)["build_id"] == "b2"
    lines = failure_text(checked).splitlines()
    assert lines[2] == (
        "The build failed in task 'ingest' (notebooks/01_ingest.ipynb): the products of the tasks that "
        "succeeded are kept, and once it is fixed the next build resumes from 'ingest'."
    )
    assert lines[3] == "Full log (Ploomber's output and the traceback): build/test/x.log"
    assert lines[-2:] == ["error: the target has a single class", "  found: every labelled row is 1"]


def test_a_foreign_exception_says_it_is_not_one_of_nbops_checks(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    root = Path(checked.settings.root)
    failure = {"task": "features", "error": "KeyError", "message": "'month'", "nbops": False, "log": None}
    _record(root, failure)
    lines = failure_text(checked).splitlines()
    assert "Full log (Ploomber's output and the traceback): build/test/.nbops/logs/b2.log" in lines
    assert lines[-2] == "error: KeyError: 'month'"
    assert lines[-1] == (
        "  this is not one of nbops' own checks: the traceback in build/test/.nbops/logs/b2.log shows where it was "
        "raised"
    )


def test_a_failure_before_any_task_ran(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    assert last_build_record(Path(checked.settings.root)) is None  # never built
    text = failure_text(checked, {"failure": {"error": "RenderError", "message": ""}})
    assert "The build failed before any task ran." in text and text.splitlines()[-2] == "error: RenderError"


# --- what the build hands to Ploomber ------------------------------------------------------------


def test_the_generated_env_holds_the_checked_values_of_the_placeholders_pipeline_yaml_uses(project: Path) -> None:
    checked = check_project(project, "env.test.yaml", {"learning_rate": 0.2})
    path = write_generated_env(project, checked, "20261201-101010-abcd")
    assert path == project / GENERATED_ENV.format(build_id="20261201-101010-abcd")
    assert path.name == "env.nbops-build-20261201-101010-abcd.yaml"  # one per build, beside pipeline.yaml
    text = path.read_text()
    assert text.startswith("# Generated by `nbops build`") and "Do not edit." in text.splitlines()[0]
    values = yaml.safe_load(text)
    assert values["learning_rate"] == 0.2 and values["root"] == checked.env["root"]
    assert values == {k: checked.env[k] for k in values}  # exactly the checked values
    assert "schedule" not in values  # pipeline.yaml has no {{schedule}}: Ploomber would warn about it
    used = {"root", "here", "learning_rate", "num_boost_round", "drift_schedule", "data_version"}
    assert used - {"here"} <= set(values)


def test_the_data_version_changes_with_the_data_file(project: Path) -> None:
    assert data_version(project, "env.test.yaml", {}) == ""  # the simulator: nothing to watch
    assert data_version(project, "env.test.yaml", {"data": "absent.csv"}) == "missing"
    table = project / "mine.csv"
    content = "a,b\n1,2\n"
    table.write_text(content)
    os.utime(table, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    first = data_version(project, "env.test.yaml", {"data": "mine.csv"})
    assert first == f"size{len(content)}-mtime1700000000000000000"
    assert data_version(project, "env.test.yaml", {"data": str(table)}) == first  # absolute: the same file
    table.write_text("a,b\n1,2\n3,4\n")
    assert data_version(project, "env.test.yaml", {"data": "mine.csv"}) != first
    assert not first[0].isdigit()  # never arithmetic to Ploomber


def test_resolve_project_derives_the_data_version_and_the_retrain_state(project: Path) -> None:
    (project / "mine.csv").write_text("a,target\n1,0\n2,1\n")
    checked = resolve_project(project, "env.test.yaml", {"data": "mine.csv", "target": "target"})
    assert checked.env["data_version"] == data_version(project, "env.test.yaml", {"data": "mine.csv"})
    assert checked.settings.labelled_through in (None, "none")
    save_state(project / "build" / "test", {"labelled_through": "2025-03", "acted_on": []})
    assert resolve_project(project, "env.test.yaml").settings.labelled_through == "2025-03"
    # an override wins over the retrain state
    assert resolve_project(project, "env.test.yaml", {"labelled_through": "2025-01"}).settings.labelled_through == (
        "2025-01"
    )
    (project / "build" / "test" / ".nbops" / "retrain.json").write_text("[1, 2")
    with pytest.raises(NbopsError):  # a damaged state says so, never reads as "nothing labelled"
        resolve_project(project, "env.test.yaml")


def test_a_task_and_everything_it_depends_on(project: Path) -> None:
    checked = check_project(project, "env.test.yaml")
    assert upstream_closure(checked, "ingest") == {"ingest"}
    assert upstream_closure(checked, "train") == {"ingest", "features", "tune", "train"}
    assert upstream_closure(checked, "package") == {
        "ingest",
        "features",
        "tune",
        "train",
        "evaluate",
        "register",
        "package",
    }


def test_what_a_killed_command_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    """`kill -9` during register left versions/.v0005.<random>/, during package a dist/*.tmp."""
    project, root = tmp_path, tmp_path / "build/test"
    debris = [
        project / "env.nbops-build-20261201-101010-abcd.yaml",
        root / "data/processed/.train.parquet.k3j2.tmp",
        root / "dist/.credit_risk_model-5-py3-none-any.whl.x9.tmp",
        root / "registry/credit_risk/versions/.v0005.q1w2e3/model.txt",
    ]
    kept = [
        project / "env.yaml",
        root / "data/processed/train.parquet",
        root / "data/processed/notes.tmp",  # a user's file: not nbops' pattern
        root / "registry/credit_risk/versions/v0004/model.txt",
    ]
    for path in debris + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = remove_debris(project, root)
    assert sorted(map(str, removed)) == sorted(str(p if p.suffix != ".txt" else p.parent) for p in debris)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in debris)
