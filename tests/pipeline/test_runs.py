"""nbops.pipeline.runs: a build's task runs recorded from their real products (the runners called in
this process, tests/support/builds.py), a failed task with its error, a tuning trial recorded by its
task, and identity components that name a code change."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from nbops.experiments.diff import diff_runs
from nbops.experiments.index import RunRecord, read_runs, trial_identity
from nbops.pipeline import lineage
from nbops.pipeline.check import CheckedProject, check_project
from nbops.pipeline.runs import measure, record_build_runs, record_stage_run, runs_root
from tests.support.builds import QUICK, stage_of

BUILD = "20261201-120000-0a1b2c3d"


def elsewhere(checked: CheckedProject, root: Path) -> CheckedProject:
    """The same tasks and products, with the index under ``root`` (the fixture stays read-only)."""
    return dataclasses.replace(checked, settings=checked.settings.model_copy(update={"root": str(root)}))


def product(checked: CheckedProject, task: str, key: str) -> Path:
    return Path(next(t for t in checked.tasks if t.name == task).product[key])


def events(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return path


def test_every_task_that_ran_is_recorded_from_its_products(ran_in_process: dict[str, Any], tmp_path: Path) -> None:
    checked: CheckedProject = ran_in_process["checked"]
    ids = lineage.identities(checked.tasks)
    stream = events(
        tmp_path / "events.jsonl",
        {"event": "start", "at": 100.0, "task": "train"},
        {
            "event": "tracked",
            "at": 100.5,
            "task": "train",
            "wandb_run_id": "w4nd8run",
            "identity": ids["train"]["identity"],
        },
        {"event": "tracked", "at": 100.6, "task": "train", "wandb_run_id": "other", "identity": "someone-else"},
    )
    here = elsewhere(checked, tmp_path / "root")
    recorded = record_build_runs(here, {t.name: True for t in checked.tasks}, ids, BUILD, stream)
    back = {r.task: r for r in read_runs(runs_root(here))}
    assert [r.task for r in recorded] == [t.name for t in checked.tasks] == list(back)
    for task, r in back.items():
        assert (r.identity, r.build_id, r.status) == (ids[task]["identity"], BUILD, "ok")
        assert r.components == json.loads(json.dumps(ids[task]["components"])) and r.source.endswith(".ipynb")
        assert r.params == json.loads(json.dumps(next(t for t in checked.tasks if t.name == task).params))
    ingest = json.loads(product(checked, "ingest", "summary").read_text())
    assert {r.data_fingerprint for r in back.values()} == {ingest["fingerprint"]}
    assert back["ingest"].metrics["rows_valid"] == ingest["rows_valid"]

    train = back["train"]
    summary = json.loads(product(checked, "train", "summary").read_text())
    assert train.wandb_run_id == "w4nd8run" and train.started_at == 100.0
    assert train.duration_s is None  # no executed notebook (Ploomber did not run here): no end time to count to
    assert train.metrics["best_iteration"] == summary["summary"]["best_iteration"]
    assert train.curves is not None and train.curves["best_iteration"] == summary["summary"]["best_iteration"]
    assert len(train.curves["valid"]) == len(train.curves["train"]) == summary["summary"]["trees_trained"]
    assert train.curves["metric"] == "binary_logloss"

    evaluate = back["evaluate"]
    metrics = json.loads(product(checked, "evaluate", "metrics").read_text())
    assert list(evaluate.metrics)[: len(metrics["headline"])] == metrics["headline"]  # headline first
    assert evaluate.metrics == pytest.approx(metrics["metrics"])
    segments = pd.read_parquet(product(checked, "evaluate", "segments"))
    assert len(evaluate.segments) == len(segments) and evaluate.segments[0]["segment"] == segments["segment"][0]
    gate = json.loads(product(checked, "evaluate", "gate").read_text())
    assert evaluate.outputs["gate_metric"] == gate["metric"]

    registration = json.loads(product(checked, "register", "registration").read_text())
    assert back["register"].version == registration["version"]
    assert back["package"].outputs["model_version"] == registration["version"]
    assert back["monitor"].metrics["batches"] == QUICK["production_months"]


def test_a_failed_task_is_recorded_with_its_error_and_the_skipped_ones_not_at_all(
    ran_in_process: dict[str, Any], tmp_path: Path
) -> None:
    checked: CheckedProject = ran_in_process["checked"]
    ids = lineage.identities(checked.tasks)
    stream = events(
        tmp_path / "events.jsonl",
        {"event": "start", "at": 10.0, "task": "evaluate"},
        {"event": "failed", "at": 12.5, "task": "evaluate", "error": "DataError", "message": "the test split is empty"},
    )
    here = elsewhere(checked, tmp_path / "root")
    ran = {t.name: t.name in ("ingest", "features", "train") for t in checked.tasks}
    record_build_runs(here, ran, ids, BUILD, stream, failure={"task": "evaluate", "error": "DataError",
                                                                 "message": "the test split is empty"})  # fmt: skip
    back = {r.task: r for r in read_runs(runs_root(here))}
    assert list(back) == ["ingest", "features", "train", "evaluate"]
    failed = back["evaluate"]
    assert (failed.status, failed.error, failed.duration_s) == ("failed", "DataError: the test split is empty", 2.5)
    assert failed.metrics == {} and failed.identity == ids["evaluate"]["identity"]


def test_a_tuning_trial_is_recorded_by_its_task_as_a_run_of_its_own(
    ran_in_process: dict[str, Any], tmp_path: Path
) -> None:
    checked: CheckedProject = ran_in_process["checked"]
    stage = dataclasses.replace(stage_of(checked, "train"), identity="7a11000000000000", root=tmp_path / "root")
    run = record_stage_run(
        stage,
        trial=3,
        params={"learning_rate": 0.2, "num_leaves": 15},
        metrics={"valid_binary_logloss": 0.25},
        curves={"metric": "binary_logloss", "valid": [0.3, 0.25]},
        wandb_run_id="tr1al",
        duration_s=1.5,
    )
    [back] = read_runs(tmp_path / "root")
    assert back == run
    assert (back.parent, back.trial, back.label, back.wandb_run_id) == ("7a11000000000000", 3, "train #3", "tr1al")
    assert back.identity == trial_identity("7a11000000000000", 3, {"learning_rate": 0.2, "num_leaves": 15})
    ingest = json.loads(product(checked, "ingest", "summary").read_text())
    assert back.data_fingerprint == ingest["fingerprint"] and back.lock_hash == lineage.lock_digest(stage.project)


def test_measure_reads_what_a_task_of_your_own_summarises(tmp_path: Path) -> None:
    from nbops.config.spec import TaskSpec

    summary = tmp_path / "review.json"
    summary.write_text(json.dumps({"flagged_share": 0.12, "levels": {"west": {"ratio": 0.9}}, "note": "text"}))
    spec = TaskSpec("segment_review", tmp_path / "nb.ipynb", {"summary": str(summary)}, {})
    assert measure(spec)["metrics"] == {"flagged_share": 0.12, "levels.west.ratio": 0.9}


def test_an_edited_notebook_cell_is_named_in_the_diff_of_two_real_identities(project: Path) -> None:
    """The components lineage computes for the train task, before and after a cell is edited."""

    def record(ident: lineage.TaskIdentity, source: Path) -> RunRecord:
        cells = [hashlib.sha256(c.encode()).hexdigest()[:12] for c in lineage.code_cells(source)]
        return RunRecord(
            ident["identity"],
            "train",
            components=dict(ident["components"]),
            cells=cells,
            library_files=ident["library_files"],
            source=source.name,
            params={"learning_rate": 0.05},
        )

    source = project / "notebooks" / "03_train.ipynb"
    before = record(lineage.identities(check_project(project, "env.test.yaml").tasks)["train"], source)
    nb = json.loads(source.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    code[-1]["source"] = "".join(code[-1]["source"]) + "\n# a reviewer's note\n"
    source.write_text(json.dumps(nb))
    after = record(lineage.identities(check_project(project, "env.test.yaml").tasks)["train"], source)
    assert before.identity != after.identity
    d = diff_runs(before, after)
    assert d.code == [f"notebook code changed (03_train.ipynb: code cell {len(code)} of {len(code)})"]
    assert d.params == [] and d.data == [] and d.environment == []
