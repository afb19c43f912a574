"""The experiments page as a user opens it: `make dashboard` in a project built twice (two learning
rates), its experiments link in headless Chromium; the runs table, the scatter, the learning curves
and the diff of two runs chosen in the page, each checked against the runs index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, launch_chromium, nbops, output_of
from tests.support.browser import PAGE_READY_MS
from tests.support.voila import make_dashboard, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(two_builds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The experiments page of the two builds, open in Chromium, its widgets rendered."""
    from playwright.sync_api import sync_playwright

    proc, links = make_dashboard(two_builds["project"], tmp_path_factory.mktemp("voila") / "voila.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            dialogs: list[str] = []
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            tab.goto(links["experiments"], wait_until="domcontentloaded")
            tab.wait_for_selector(".nbops-diff-out .nbops-diff", timeout=PAGE_READY_MS)
            tab.dialogs = dialogs
            yield tab
            browser.close()
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def runs(two_builds: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs index as `nbops runs --json` gives it, newest first."""
    proc = nbops(two_builds["project"], "runs", "--env", "env.test.yaml", "--json", "--limit", "0")
    assert proc.returncode == 0, output_of(proc)
    return list(json.loads(proc.stdout))


def _by(runs: list[dict[str, Any]], build: str, task: str) -> dict[str, Any]:
    return next(r for r in runs if r["build_id"] == build and r["task"] == task)


def test_the_runs_table_lists_every_recorded_run_newest_first(page: Any, runs: list[dict[str, Any]]) -> None:
    text = page.inner_text("body")
    for marker in ("Traceback", "Error:", "There was an error when executing"):
        assert marker not in text, text[:2000]
    shown = page.locator(".nbops-runs-table tbody tr td.nbops-col-0").all_inner_texts()
    assert shown == [r["identity"] for r in runs]
    tasks = page.locator(".nbops-runs-table tbody tr td.nbops-col-2").all_inner_texts()
    assert tasks == [r["task"] for r in runs]
    assert str(len(runs)) in page.inner_text(".nbops-kpis")
    took = page.locator(".nbops-runs-table tbody tr td.nbops-col-4").all_inner_texts()
    assert took == [f"{r['duration_s']:.1f} s" for r in runs]
    # nothing is cut off: no cell, header or tile has more text than room
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('.nbops-page td, .nbops-page th, .nbops-tile-label, .nbops-tile-value')]
            .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
            .map(e => e.innerText.slice(0, 80))"""
    )
    assert not clipped, f"text cut off: {clipped[:10]}"


def test_the_scatter_draws_one_point_per_evaluated_model_against_its_learning_rate(
    page: Any, runs: list[dict[str, Any]], two_builds: dict[str, Any]
) -> None:
    chart = page.locator(".nbops-scatter-chart svg")
    assert chart.get_attribute("data-x") == "learning_rate"
    metric = chart.get_attribute("data-y")
    evaluated = [r for r in runs if metric in r["metrics"]]
    assert metric == "roc_auc" and len(evaluated) == 2
    assert int(chart.get_attribute("data-points")) == len(evaluated) == chart.locator("[data-role=point]").count()
    # hover a point: its run, learning rate and metric
    newest = evaluated[0]
    tip = chart.locator(f".nbops-tip[data-run='{newest['identity']}']")
    tip.locator(".nbops-hit").hover()
    tip.locator(".nbops-tip-label").wait_for(state="visible", timeout=5_000)
    label = tip.locator(".nbops-tip-label").text_content()
    assert f"learning_rate {two_builds['learning_rates'][1]:.4f}" in label
    assert f"roc_auc {newest['metrics']['roc_auc']:.4f}" in label


def test_the_learning_curves_of_both_training_runs_are_overlaid(page: Any, runs: list[dict[str, Any]]) -> None:
    trains = [r for r in runs if r["task"] == "train"]
    chart = page.locator(".nbops-curves-chart svg")
    drawn = chart.locator("[data-role=valid-curve]")
    assert drawn.count() == 2
    assert sorted(drawn.evaluate_all("els => els.map(e => e.dataset.run)")) == sorted(r["identity"] for r in trains)
    for r in trains:
        points = chart.locator(f"[data-role=valid-curve][data-run='{r['identity']}']").get_attribute("points")
        assert len(points.split()) == len(r["curves"]["valid"])
    chart.screenshot(path=str(REPO / "reports" / "dashboard_experiments_curves.png"))
    # choosing one run leaves one curve
    page.locator(".nbops-curves-runs select").select_option(index=0)
    page.wait_for_function(
        "() => document.querySelectorAll('.nbops-curves-chart [data-role=valid-curve]').length === 1", timeout=30_000
    )


def test_choosing_two_runs_shows_what_differs(
    page: Any, runs: list[dict[str, Any]], two_builds: dict[str, Any]
) -> None:
    b1, b2 = two_builds["builds"]
    rates = two_builds["learning_rates"]
    # the page opens on the newest training run against the one before it
    first = page.locator(".nbops-diff-out .nbops-diff-task[data-task='train']")
    assert first.count() == 1
    assert f"learning_rate{rates[0]} → {rates[1]}" in first.inner_text().replace("\t", "")
    # choose the two evaluate runs: the diff follows their inputs to the training runs
    ea, eb = _by(runs, b1, "evaluate"), _by(runs, b2, "evaluate")

    def choose(which: str, run: dict[str, Any]) -> None:
        select = page.locator(f".nbops-diff-{which} select")
        label = next(o for o in select.locator("option").all_inner_texts() if run["identity"][:10] in o)
        select.select_option(label=label)

    choose("a", ea)
    choose("b", eb)
    page.wait_for_selector(".nbops-diff-out .nbops-diff-task[data-task='evaluate']", timeout=30_000)
    out = page.locator(".nbops-diff-out")
    assert ea["identity"] in out.inner_text() and eb["identity"] in out.inner_text()
    tasks = out.locator(".nbops-diff-task").evaluate_all("els => els.map(e => e.dataset.task)")
    assert tasks == ["tune", "train", "evaluate"]  # the tune task starts from the parameters as set
    params = out.locator("tr.nbops-diff-parameter").all_inner_texts()
    assert len(params) == 2 and all("learning_rate" in p for p in params), params
    evaluate = out.locator(".nbops-diff-task[data-task='evaluate']")
    for row in evaluate.locator("tr.nbops-diff-metric").all():
        cells = row.locator("td").all_inner_texts()
        name, verdict = cells[1], cells[3]
        change = eb["metrics"][name] - ea["metrics"][name]
        assert f"{change:+.4f}" in cells[2], cells
        if name in ("roc_auc", "pr_auc", "ks"):
            assert verdict == ("better" if change > 0 else "worse"), cells
        if name in ("log_loss", "brier"):
            assert verdict == ("better" if change < 0 else "worse"), cells
    assert evaluate.locator(".nbops-diff-segments tbody tr").count() >= 1
    assert not page.dialogs
    _screenshot(page, REPO / "reports" / "dashboard_experiments.png")


def _screenshot(page: Any, path: Path) -> None:
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1280, "height": int(height) + 40})
    page.wait_for_timeout(300)
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
