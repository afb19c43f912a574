"""nbops.pipeline.build without Ploomber: why a build failed (the stage's own report, else the log),
the summary and the failure text a user reads last, which tasks ran, the data version that reruns
ingest, and the env file handed to Ploomber."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops import progress as events
from nbops.errors import ConfigError
from nbops.pipeline.build import build_failure, gate_note


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
