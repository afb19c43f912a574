"""nbops.experiments.diff and .table: only what differs, metric deltas marked by the metric's
direction, code and data changes named from the identities' components; runs sorted best first."""

from __future__ import annotations

import pytest

from nbops.errors import NbopsError
from nbops.experiments.diff import diff_html, diff_runs, diff_selections, diff_text
from nbops.experiments.index import RunRecord, Selection, run_selection
from nbops.experiments.table import runs_rows, sort_runs

COMPONENTS = {
    "code": "c0de",
    "params": {},
    "products": "p",
    "upstream": {"ingest": "1ngest0000000000"},
    "nbops": "0.1.0",
    "library": "11b",
    "lock": "10ck",
    "options": "0p7",
}


def train(identity: str, lr: float, **kw: object) -> RunRecord:
    values: dict[str, object] = {
        "identity": identity,
        "task": "train",
        "params": {"learning_rate": lr, "num_leaves": 31, "seed": 42},
        "metrics": {"best_iteration": 65.0, "valid_auc": 0.81, "valid_binary_logloss": 0.23, "train_rows": 3323.0},
        "components": dict(COMPONENTS),
        "library_files": {"modeling/train.py": "aaa", "pipeline/runners/train.py": "bbb"},
        "cells": ["c1", "c2", "c3", "c4"],
        "source": "03_train.ipynb",
        "data_fingerprint": "d690dc0a6e487741",
        "lock_hash": "10ck",
        "git_commit": "abc123",
        "git_dirty": False,
        "finished_at": 1_800_000_000.0,
    }
    values.update(kw)
    return RunRecord(**values)  # type: ignore[arg-type]


def evaluate(identity: str, train_id: str, roc: float, log_loss: float, seg_roc: float, at: float) -> RunRecord:
    return RunRecord(
        identity=identity,
        task="evaluate",
        params={"shap_sample": 500},
        metrics={"roc_auc": roc, "log_loss": log_loss, "rows": 967.0},
        segments=[
            {"segment": "region", "level": "west", "rows": 200, "roc_auc": seg_roc, "log_loss": 0.3},
            {"segment": "region", "level": "<b>east</b>", "rows": 180, "roc_auc": 0.7, "log_loss": 0.3},
        ],
        outputs={"gate_metric": "roc_auc"},
        components={**COMPONENTS, "upstream": {"ingest": "1ngest0000000000", "train": train_id}},
        finished_at=at,
    )


def test_a_changed_parameter_is_the_only_parameter_shown_and_metrics_are_marked_by_direction() -> None:
    a = train("7a11000000000000", 0.05)
    b = train(
        "7a22000000000000",
        0.1,
        metrics={"best_iteration": 25.0, "valid_auc": 0.82, "valid_binary_logloss": 0.24, "train_rows": 3323.0},
    )
    d = diff_runs(a, b)
    assert [(c.name, c.old, c.new) for c in d.params] == [("learning_rate", 0.05, 0.1)]
    assert d.code == d.data == d.inputs == d.environment == []
    verdicts = {m.name: (m.delta, m.verdict) for m in d.metrics}
    # auc up is better, log loss up is worse, an iteration count has no direction; unchanged rows are left out
    assert verdicts == {
        "best_iteration": (-40.0, ""),
        "valid_auc": (pytest.approx(0.01), "better"),
        "valid_binary_logloss": (pytest.approx(0.01), "worse"),
    }
    text = diff_text(diff_selections(run_selection(a), run_selection(b)))
    assert "learning_rate: 0.05 -> 0.1" in text
    assert "num_leaves" not in text and "seed" not in text and "train_rows" not in text
    assert "valid_auc             0.8100 -> 0.8200  (+0.0100, better)" in text
    assert "best_iteration        65 -> 25  (-40)" in text


def test_code_changes_name_the_cell_the_library_file_and_the_feature_module() -> None:
    a = train("7a11000000000000", 0.05)
    b = train(
        "7a33000000000000",
        0.05,
        components={**COMPONENTS, "code": "c0de2", "library": "11b2", "project_code": {"features.py": "f2"}},
        cells=["c1", "c2-edited", "c3", "c4"],
        library_files={"modeling/train.py": "aaa2", "pipeline/runners/train.py": "bbb"},
    )
    d = diff_runs(a, b)
    assert d.params == []
    assert d.code == [
        "notebook code changed (03_train.ipynb: code cell 2 of 4)",
        "library code changed: src/nbops/modeling/train.py",
        "feature code changed: features.py",
    ]


def test_data_and_environment_changes_are_named() -> None:
    a = train("7a11000000000000", 0.05, params={"learning_rate": 0.05, "data_version": "size1-mtime1"})
    b = train(
        "7a44000000000000",
        0.05,
        params={"learning_rate": 0.05, "data_version": "size2-mtime2"},
        data_fingerprint="ffff000000000000",
        lock_hash="10ck2",
        git_commit="def456",
        git_dirty=True,
        components={**COMPONENTS, "upstream": {"ingest": "1ngest1111111111"}},
    )
    d = diff_runs(a, b)
    assert d.params == []  # a data version is data, not a modelling parameter
    assert d.data == [
        "data fingerprint d690dc0a6e48 -> ffff00000000",
        "parameter 'data_version': size1-mtime1 -> size2-mtime2",
    ]
    assert d.environment == ["requirements.lock 10ck -> 10ck2", "git commit abc123 -> def456 (uncommitted changes)"]
    assert d.inputs == ["input from 'ingest' changed: run 1ngest000000 -> 1ngest111111"]


def test_two_evaluate_runs_bring_in_the_training_runs_that_made_their_models() -> None:
    ta, tb = train("7a11000000000000", 0.05), train("7a22000000000000", 0.1, finished_at=1_800_000_100.0)
    ea = evaluate("e7a1000000000000", ta.identity, 0.765, 0.302, 0.80, 1_800_000_001.0)
    eb = evaluate("e7a2000000000000", tb.identity, 0.754, 0.301, 0.78, 1_800_000_101.0)
    d = diff_selections(run_selection(ea), run_selection(eb), [ta, ea, tb, eb])
    assert [t.task for t in d.changed] == ["train", "evaluate"]
    followed = d.changed[0]
    assert followed.via == "evaluate" and [c.name for c in followed.params] == ["learning_rate"]
    ev = d.changed[1]
    assert {m.name: m.verdict for m in ev.metrics} == {"roc_auc": "worse", "log_loss": "better"}
    assert ev.segment_metric == "roc_auc"
    [west] = ev.segments  # the other level did not change
    assert (west.segment, west.level, [(m.name, m.verdict) for m in west.metrics]) == (
        "region",
        "west",
        [("roc_auc", "worse")],
    )
    text = diff_text(d)
    assert "by segment (roc_auc, A -> B)" in text and "region = west" in text and "east" not in text
    as_json = d.to_dict()
    assert [t["task"] for t in as_json["tasks"]] == ["train", "evaluate"]


def test_the_html_diff_escapes_every_string_from_the_runs() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    a = train("7a11000000000000", 0.05, params={"learning_rate": 0.05, "segment_columns": ["region"]})
    b = train("7a22000000000000", 0.1, params={"learning_rate": 0.1, "segment_columns": [hostile]})
    ea = evaluate("e7a1000000000000", a.identity, 0.765, 0.302, 0.80, 1.0)
    eb = evaluate("e7a2000000000000", b.identity, 0.754, 0.301, 0.78, 2.0)
    eb = RunRecord(**{**eb.__dict__, "segments": [{**eb.segments[0], "level": hostile}]})
    ea = RunRecord(**{**ea.__dict__, "segments": [{**ea.segments[0], "level": hostile}]})
    html = diff_html(diff_selections(run_selection(ea), run_selection(eb), [a, ea, b, eb]))
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>east</b>" not in html
    assert "class='nbops-worse'" in html and "data-task='train'" in html


def test_two_identical_selections_say_nothing_differs() -> None:
    a = train("7a11000000000000", 0.05)
    d = diff_selections(run_selection(a), run_selection(a))
    assert d.changed == [] and "Nothing differs" in diff_text(d)


def test_builds_are_compared_task_by_task_and_say_what_only_one_side_ran() -> None:
    ta, tb = train("7a11000000000000", 0.05), train("7a22000000000000", 0.1)
    ingest = RunRecord(identity="1ngest0000000000", task="ingest")
    a = Selection("b1", "build", "build b1", {"ingest": ingest, "train": ta})
    b = Selection("b2", "build", "build b2", {"train": tb})
    d = diff_selections(a, b)
    assert [t.task for t in d.changed] == ["train"] and d.only_a == ["ingest"] and d.only_b == []
    assert "Only in A: ingest" in diff_text(d)


def test_runs_sort_best_first_by_the_metric_direction() -> None:
    runs = [
        evaluate("e1" + "0" * 14, "t", 0.70, 0.35, 0.7, 1.0),
        evaluate("e2" + "0" * 14, "t", 0.80, 0.30, 0.7, 2.0),
        evaluate("e3" + "0" * 14, "t", 0.75, 0.25, 0.7, 3.0),
        train("7a11000000000000", 0.05, finished_at=4.0),
    ]
    assert [r.identity[:2] for r in sort_runs(runs)] == ["7a", "e3", "e2", "e1"]  # newest first
    assert [r.identity[:2] for r in sort_runs(runs, sort="roc_auc")] == ["e2", "e3", "e1", "7a"]
    assert [r.identity[:2] for r in sort_runs(runs, sort="log_loss", limit=2)] == ["e3", "e2"]
    with pytest.raises(NbopsError, match="--sort f1: no run has that metric; expected one of roc_auc"):
        sort_runs(runs, sort="f1")
    with pytest.raises(NbopsError, match="--task tune: no run of that task"):
        sort_runs(runs, task="tune")


def test_the_runs_of_one_task_show_the_parameters_that_differ_as_columns() -> None:
    runs = [train("7a11000000000000", 0.05), train("7a22000000000000", 0.1)]
    columns, rows = runs_rows(runs, task="train")
    assert "learning_rate" in columns and "num_leaves" not in columns and "seed" not in columns
    assert columns.index("learning_rate") < columns.index("valid_auc")
    assert [r["learning_rate"] for r in rows] == [0.05, 0.1]
