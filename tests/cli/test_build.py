"""`nbops build`'s terminal display: one live line per task on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from nbops.cli.build import BuildProgress


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
