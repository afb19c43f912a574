"""The stage-to-build channel: progress events inside a build, a tqdm bar outside, half-written lines kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbops import progress as events


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
