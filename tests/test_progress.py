"""The stage-to-build channel: progress events inside a build, tqdm outside; failures found."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from nbops import progress as events
from nbops.cli.build import BuildProgress
from nbops.errors import ConfigError, closest_names, missing_column_found, shown
from nbops.pipeline.build import build_failure, gate_note


def test_progress_inside_a_build_writes_throttled_events_and_nothing_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    channel = tmp_path / "events.jsonl"
    monkeypatch.setenv(events.EVENTS_ENV, str(channel))
    events.set_task("train")
    for _ in events.progress(range(1000), desc="boosting", unit="tree"):
        pass
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # nothing lands in the executed notebook
    got, offset = events.read_events(channel)
    assert offset == channel.stat().st_size
    assert got[0] == {**got[0], "event": "start", "task": "train"}
    bars = [e for e in got if e["event"] == "progress"]
    assert bars[-1]["n"] == 1000 and bars[-1]["total"] == 1000 and bars[-1]["desc"] == "boosting"
    assert len(bars) < 50  # throttled, not one event per tree
    assert all(e["task"] == "train" for e in got)


def test_progress_outside_a_build_is_a_plain_tqdm_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(events.EVENTS_ENV, raising=False)
    with events.Progress(3, "rows", unit="row") as bar:
        bar.update(3)
    assert "rows" in capsys.readouterr().err


def test_read_events_keeps_a_half_written_line_for_the_next_read(tmp_path: Path) -> None:
    channel = tmp_path / "e.jsonl"
    channel.write_text(json.dumps({"event": "start", "task": "a"}) + "\n" + '{"event": "prog')
    got, offset = events.read_events(channel)
    assert [e["task"] for e in got] == ["a"]
    with channel.open("a") as fh:
        fh.write('ress", "task": "a", "n": 1}\n')
    more, _ = events.read_events(channel, offset)
    assert more == [{"event": "progress", "task": "a", "n": 1}]


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


def test_terminal_display_redraws_one_line_per_task_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    display = BuildProgress(out)
    display({"event": "start", "task": "train", "at": 100.0})
    display({"event": "progress", "task": "train", "desc": "boosting", "n": 75, "total": 150, "unit": "tree"})
    display({"event": "start", "task": "evaluate", "at": 103.5})
    display({"event": "failed", "task": "evaluate"})
    display.finish(104.0)
    text = out.getvalue()
    assert "boosting [" in text and "75/150 tree" in text
    assert "✓ train" in text and "3.5 s" in text
    assert "✗ evaluate" in text and "failed" in text
    assert text.count("\n") == 2  # one finished line per task; the bar was redrawn in place


def test_terminal_display_in_a_log_has_no_bars() -> None:
    out = io.StringIO()
    display = BuildProgress(out)
    display({"event": "start", "task": "train", "at": 1.0})
    display({"event": "progress", "task": "train", "desc": "boosting", "n": 5, "total": 10})
    display.finish(2.0)
    assert out.getvalue().splitlines() == ["  ▸ train", "  ✓ train           1.0 s"]


def test_values_are_shown_as_written_not_as_numpy_reprs() -> None:
    import numpy as np

    assert shown(np.int64(1)) == "1" and shown(np.str_("yes")) == "'yes'" and shown(np.float64(0.5)) == "0.5"


def test_a_column_differing_in_case_is_suggested_and_never_cut_from_the_list() -> None:
    columns = [f"feature_{i}" for i in range(60)] + ["Diagnosis"]
    assert closest_names("diagnosis", columns)[0] == "Diagnosis"
    text = missing_column_found("diagnosis", columns)
    assert text.startswith("no column 'diagnosis'; did you mean 'Diagnosis'?")
    assert "61 columns" in text and "and 21 more" in text


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
