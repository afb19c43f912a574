"""What `make run` shows a user: live progress on the terminal (never in the reports), the stage's
own error printed last with the traceback kept in a log, the notes a summary owes, and a picture of
the pipeline that opens offline and agrees with `nbops why`."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import copy_project, launch_chromium, nbops, output_of

pytestmark = pytest.mark.slow
QUIET = ("--set", "tracking=disabled")


def _table(path: Path, rows: int = 400, single_class: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    df = pd.DataFrame(
        {
            "tenure": rng.integers(1, 60, rows),
            "spend": np.round(50 + 10 * x, 2),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
        }
    )
    df["churned"] = 1 if single_class else (x + rng.normal(scale=0.8, size=rows) > 0.8).astype(int)
    df.to_csv(path, index=False)
    return path


def _last_lines(text: str, n: int) -> list[str]:
    return [line for line in text.rstrip().splitlines() if line.strip()][-n:]


def test_a_failing_stage_ends_the_build_with_its_own_message_and_keeps_the_traceback_in_a_log(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    data = _table(project / "one_class.csv", single_class=True)
    proc = nbops(
        project, "build", "--env", "env.test.yaml", *QUIET, "--set", f"data={data.name}", "--set", "target=churned"
    )
    assert proc.returncode != 0
    text = output_of(proc)
    assert "Traceback" not in text and "ploomber.io" not in text and "np.int64" not in text
    tail = _last_lines(proc.stderr, 5)
    assert tail[0] == "error: the target has a single class", proc.stderr[-3000:]
    assert tail[-2].strip() == "found: every labelled row is 1"
    assert tail[-1].strip().startswith("what to do:")
    named = re.search(r"Full log \(Ploomber's output and the traceback\): (\S+)", proc.stderr)
    assert named, proc.stderr[-2000:]
    log = project / named.group(1)
    assert "Traceback" in log.read_text() and "the target has a single class" in log.read_text()
    assert (
        "The build failed in task 'ingest' (notebooks/01_ingest.ipynb): the products of the tasks that succeeded "
        "are kept" in proc.stderr
    )
    record = json.loads((project / "build/test/reports/builds.jsonl").read_text().splitlines()[-1])
    assert record["failure"]["task"] == "ingest" and record["failure"]["nbops"] is True


def test_progress_is_live_on_a_terminal_and_absent_from_the_reports(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "TERM": "xterm"}
    env.pop("NBOPS_PROJECT", None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbops",
            "--project",
            str(project),
            "build",
            "--env",
            "env.test.yaml",
            *QUIET,
            "--until",
            "train",
        ],
        cwd=project,
        env=env,
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0
    os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert re.search(r"▸ train\s+boosting \[[█·]+\] \d+/150 tree", terminal), terminal[-3000:]
    assert "✓ ingest" in terminal and "✓ features" in terminal and "✓ train" in terminal
    assert "Executing cell" not in terminal and "Building task" not in terminal  # Ploomber's own bars: the log
    reports = project / "build/test/reports"
    for name in ("01_ingest", "02_features", "03_train"):
        for suffix in (".ipynb", ".html"):
            body = (reports / f"{name}{suffix}").read_text()
            assert "boosting" not in body and "it/s]" not in body and "tree/s" not in body, (
                f"{name}{suffix} carries a progress bar"
            )


def test_summary_says_when_the_schema_was_inferred_and_when_production_got_worse(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    data = _table(project / "churn.csv", rows=1500)
    common = ("--env", "env.test.yaml", *QUIET, "--set", f"data={data.name}", "--set", "target=churned")
    first = nbops(project, "build", *common)
    assert first.returncode == 0, output_of(first)[-4000:]
    assert "Schema inferred from the data on first use: schemas/churn.schema.yaml" in first.stdout
    # A much weaker model, let through by a wide tolerance: promoted, and the summary says it is worse.
    second = nbops(
        project,
        "build",
        *common,
        "--set",
        "num_boost_round=1",
        "--set",
        "num_leaves=2",
        "--set",
        "promotion_tolerance=0.9",
    )
    assert second.returncode == 0, output_of(second)[-4000:]
    assert "Schema inferred" not in second.stdout  # ingest did not run again
    note = next(line for line in second.stdout.splitlines() if "Note:" in line)
    assert "the new production model v0002 is worse than v0001" in note and "within promotion_tolerance 0.9" in note


def _why_states(project: Path, *sets: str) -> dict[str, str]:
    proc = nbops(project, "why", "--env", "env.test.yaml", *sets)
    assert proc.returncode == 0, output_of(proc)
    states, task = {}, None
    for line in proc.stdout.splitlines():
        head = re.match(r"^(\w+)\s+\(identity now", line)
        if head:
            task = head.group(1)
        elif task and "next build:" in line:
            states[task] = "up to date" if "up to date" in line else "will run"
        elif task and "never built" in line:
            states[task] = "will run"
    return states


def test_the_pipeline_picture_opens_offline_and_agrees_with_nbops_why(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    project = copy_project(tmp_path / "project")
    build = nbops(project, "build", "--env", "env.test.yaml", *QUIET)
    assert build.returncode == 0, output_of(build)[-4000:]
    after_build = project / "build/test/reports/pipeline.html"
    assert after_build.exists() and 'data-state="will run"' not in after_build.read_text()
    change = ("--set", "tracking=disabled", "--set", "learning_rate=0.1")
    out = tmp_path / "picture"
    proc = nbops(project, "plot", "--env", "env.test.yaml", *change, "--out", str(out))
    assert proc.returncode == 0, output_of(proc)
    expected = _why_states(project, *change)
    assert expected["train"] == "will run" and expected["features"] == "up to date"
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto((out / "pipeline.html").as_uri())
        tasks = page.locator("g.nbops-task")
        drawn = {
            tasks.nth(i).get_attribute("data-task"): tasks.nth(i).get_attribute("data-state")
            for i in range(tasks.count())
        }
        box = page.locator("svg.nbops-dag").bounding_box()
        page.screenshot(path=str(tmp_path / "pipeline.png"), full_page=True)
        browser.close()
    assert [u for u in requests if not u.startswith("file:")] == []
    assert box is not None and box["width"] > 300 and box["height"] > 300
    assert {t: ("up to date" if s == "up to date" else "will run") for t, s in drawn.items()} == expected
    svg = (out / "pipeline.svg").read_text()
    assert (
        str(project) not in svg and str(project) not in (out / "pipeline.html").read_text()
    )  # paths relative to the root
    assert "parameter &#x27;learning_rate&#x27; changed: 0.05 -&gt; 0.1" in svg  # the reason, escaped, in the tooltip
