"""The Voila dashboards as a stakeholder opens them: `make dashboard` in a built project, the links it
prints opened in a real headless Chromium, and what the pages say checked against the data (the
experiments page, which needs two builds, in test_experiments.py)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
import yaml

from nbops.registry.store import Registry
from tests.support import REPO, launch_chromium, nbops, output_of
from tests.support.browser import PAGE_READY_MS
from tests.support.voila import READY, dashboard_copy, make_dashboard, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dashboard_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built with two years of monthly production history."""
    project = dashboard_copy(tmp_path_factory.mktemp("dash") / "project")
    proc = nbops(
        project, "build", "--env", "env.test.yaml", "--set", "production_months=24", "--set", "tracking=disabled"
    )
    assert proc.returncode == 0, output_of(proc)[-4000:]
    return project


@pytest.fixture(scope="module")
def served(dashboard_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`make dashboard` on the built project; the links it printed."""
    proc, links = make_dashboard(dashboard_project, tmp_path_factory.mktemp("voila") / "voila.log")
    yield links
    stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def built(dashboard_project: Path) -> dict[str, object]:
    """What the build wrote, read from its files: the env, the history, the production version's metadata."""
    env = yaml.safe_load((dashboard_project / "env.test.yaml").read_text())
    root = dashboard_project / "build" / "test"
    history = pd.read_parquet(root / "monitoring" / "history.parquet").sort_values("batch_id", ignore_index=True)
    registration = json.loads((root / "models" / "registration.json").read_text())
    production = Registry(registration["registry"]).alias("production")
    assert production is not None, f"the build registered no production model under {root / 'registry'}"
    return {"env": env, "history": history, "metadata": production.metadata}


def _open(browser: object, url: str, ready: str) -> object:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, timeout=PAGE_READY_MS)
    return page


def _no_kernel_error(page: object) -> None:
    text = page.inner_text("body")  # type: ignore[attr-defined]
    for marker in ("Traceback", "Error:", "There was an error when executing"):
        assert marker not in text, text[:2000]


def _full_page_screenshot(page: object, path: Path) -> None:
    """Voila scrolls inside its own container: grow the viewport to the content, then capture."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1280, "height": int(height) + 40})  # type: ignore[attr-defined]
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]


def _clipped(page: object, selector: str) -> list[str]:
    """Elements under ``selector`` whose text is wider or taller than their box (cut off)."""
    return page.evaluate(  # type: ignore[attr-defined]
        """sel => [...document.querySelectorAll(sel)]
            .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
            .map(e => `${e.tagName}.${e.className}: ${e.innerText.slice(0, 80)} `
                + `(${e.scrollWidth}>${e.clientWidth})`)""",
        selector,
    )


def test_make_dashboard_prints_links_that_open_every_dashboard(served: dict[str, str], browser: object) -> None:
    """The links `make dashboard` prints carry one token, Voila's, and open the dashboards (not a login page)."""
    assert sorted(served) == sorted(READY), f"`make dashboard` printed links to {sorted(served)}"
    tokens = {name: parse_qs(urlsplit(url).query).get("token", [""])[0] for name, url in served.items()}
    assert len(set(tokens.values())) == 1 and re.fullmatch(r"[0-9a-f]{32}", tokens["monitoring"]), (
        f"the two links carry different tokens: {served}"
    )
    for name, url in served.items():
        page = _open(browser, url, READY[name])
        assert "/login" not in page.url, f"{url} landed on {page.url}"  # type: ignore[attr-defined]
        assert page.locator("input[type=password]").count() == 0  # type: ignore[attr-defined]
        _no_kernel_error(page)
        page.close()  # type: ignore[attr-defined]


def test_dashboard_requires_the_token(served: dict[str, str]) -> None:
    bare = served["monitoring"].split("?")[0]
    response = httpx.get(bare, timeout=30, follow_redirects=False)
    assert response.status_code in (302, 401, 403), f"{bare} without the token answered {response.status_code}"


def _status_rows(page: object) -> dict[str, dict[str, str]]:
    headers = page.locator(".nbops-status-table thead th").all_inner_texts()  # type: ignore[attr-defined]
    rows = page.locator(".nbops-status-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )  # type: ignore[attr-defined]
    return {r[0]: dict(zip(headers, r, strict=True)) for r in rows}


def test_monitoring_dashboard_says_what_the_numbers_say(
    served: dict[str, str], browser: object, built: dict[str, object]
) -> None:
    env, history, metadata = built["env"], built["history"], built["metadata"]
    assert isinstance(env, dict) and isinstance(history, pd.DataFrame) and isinstance(metadata, dict)
    page = _open(browser, served["monitoring"], ".nbops-status-table")
    _no_kernel_error(page)
    rows = _status_rows(page)
    months = list(history["batch_id"].astype(str))
    assert sorted(rows) == months, f"the status table shows {sorted(rows)}, the history has {months}"
    # The drift schedule injects drift (or concept drift) into those months: each must read alert.
    schedule = env["drift_schedule"]
    scenarios = {m: (schedule[k] if k < len(schedule) else "none") for k, m in enumerate(months)}
    drifted = [m for m, s in scenarios.items() if s != "none"]
    assert drifted, "env.test.yaml's drift_schedule injects no drift: nothing to check"
    wrong = {m: (scenarios[m], rows[m]["status"], rows[m]["why"]) for m in drifted if rows[m]["status"] != "alert"}
    assert not wrong, f"months with injected drift that do not read 'alert' (scenario, status, why): {wrong}"
    false_alarms = {m: rows[m]["why"] for m, s in scenarios.items() if s == "none" and rows[m]["status"] == "alert"}
    assert not false_alarms, f"clean months read 'alert': {false_alarms}"
    # The last label_delay months have no labels yet, and say so.
    metric = "ROC AUC"
    pending = months[-int(env["label_delay"]) :]
    # Their performance estimated from the scores alone (the version's estimator) stands in until then.
    estimates = history.set_index(history["batch_id"].astype(str))["est__roc_auc"]
    assert {m: rows[m][metric] for m in pending} == {
        m: f"labels pending (estimated {estimates[m]:.3f})" for m in pending
    }
    labelled = history.dropna(subset=["perf__roc_auc"])
    assert {m: rows[m][metric] for m in labelled["batch_id"]} == {
        m: f"{v:.3f}" for m, v in zip(labelled["batch_id"], labelled["perf__roc_auc"], strict=True)
    }

    # The performance chart carries the alert level (test AUC minus max_auc_drop) and a y-axis label.
    chart = page.locator(".nbops-performance svg")  # type: ignore[attr-defined]
    limit = metadata["metrics"]["roc_auc"] - env["max_auc_drop"]
    assert math.isclose(float(chart.get_attribute("data-limit")), limit, rel_tol=1e-6)
    assert chart.locator("[data-role=alert-level]").count() == 1
    assert "ROC AUC" in chart.locator("[data-role=y-label]").text_content()
    assert f"alert below {limit:.3f}" in chart.text_content()
    assert chart.locator("[data-role=pending-label]").count() >= 1

    # Hover a point: its label shows the month's value (the worst labelled month).
    worst = labelled.loc[labelled["perf__roc_auc"].idxmin()]
    point = chart.locator(f".nbops-tip[data-batch='{worst['batch_id']}']")
    label = point.locator(".nbops-tip-label")
    assert not label.is_visible()
    point.locator(".nbops-hit").hover()
    label.wait_for(state="visible", timeout=5_000)
    assert f"{worst['perf__roc_auc']:.3f}" in label.text_content() and str(worst["batch_id"]) in label.text_content()
    # Hover a heatmap cell: its PSI.
    feature = max((c for c in history.columns if c.startswith("psi__")), key=lambda c: history[c].max())
    month = str(history.loc[history[feature].idxmax(), "batch_id"])
    cell = page.locator(
        f".nbops-heatmap .nbops-tip[data-feature='{feature.removeprefix('psi__')}'][data-batch='{month}']"
    )  # type: ignore[attr-defined]
    cell.locator(".nbops-hit").hover()
    cell.locator(".nbops-tip-label").wait_for(state="visible", timeout=5_000)
    assert f"PSI {history[feature].max():.3f}" in cell.locator(".nbops-tip-label").text_content()

    # Nothing is cut off: no table cell, header or tile has more text than room, no table needs scrolling.
    clipped = _clipped(page, ".nbops-page td, .nbops-page th, .nbops-tile-label, .nbops-tile-value, .nbops-table-wrap")
    assert not clipped, f"text cut off: {clipped[:10]}"
    # Headers line up with their columns: same alignment and the same left and right edges.
    misaligned = page.evaluate(  # type: ignore[attr-defined]
        """() => [...document.querySelectorAll('.nbops-table')].flatMap(t => {
            const ths = [...t.tHead.rows[0].cells], first = t.tBodies[0].rows[0];
            return ths.filter((th, i) => {
                const td = first.cells[i], a = th.getBoundingClientRect(), b = td.getBoundingClientRect();
                return getComputedStyle(th).textAlign !== getComputedStyle(td).textAlign
                    || Math.abs(a.left - b.left) > 1 || Math.abs(a.right - b.right) > 1;
            }).map(th => `${t.className}: ${th.innerText}`);
        })"""
    )
    assert not misaligned, f"headers not aligned with their columns: {misaligned}"
    # Long alert messages wrap between words, never mid-word.
    messages = page.locator(".nbops-alerts-table tbody td.nbops-col-3")  # type: ignore[attr-defined]
    assert messages.count() > 0
    style = messages.first.evaluate(
        "e => [getComputedStyle(e).wordBreak, getComputedStyle(e).overflowWrap, getComputedStyle(e).whiteSpace]"
    )
    assert style == ["normal", "break-word", "normal"], style
    # The charts are sized for the page: as wide as the column, never wider (no stretching past their
    # natural size at 1280 px, no overflow at 800 px).
    widths = page.evaluate(
        "() => [...document.querySelectorAll('.nbops-page svg.nbops-chart')].map(s => "
        "[s.getBoundingClientRect().width, s.viewBox.baseVal.width])"
    )  # type: ignore[attr-defined]
    assert widths and all(shown <= natural + 0.5 for shown, natural in widths), widths
    _full_page_screenshot(page, REPO / "reports" / "dashboard_monitoring.png")
    page.set_viewport_size({"width": 800, "height": 1000})  # type: ignore[attr-defined]
    page.wait_for_timeout(500)  # type: ignore[attr-defined]
    overflow = page.evaluate(
        "() => [...document.querySelectorAll('.nbops-page, .nbops-page > *')].filter(e => e.scrollWidth > "
        "e.clientWidth + 1).map(e => e.className)"
    )  # type: ignore[attr-defined]
    assert not overflow, f"at 800 px the page is wider than the window: {overflow}"
    page.close()  # type: ignore[attr-defined]


def test_monitoring_feature_picker_redraws_the_distribution(served: dict[str, str], browser: object) -> None:
    page = _open(browser, served["monitoring"], ".nbops-distribution svg")
    select = page.locator(".widget-dropdown select").first  # type: ignore[attr-defined]
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 20
    first = select.input_value()
    page.wait_for_selector(f".nbops-distribution svg[data-feature='{first}']", timeout=30_000)  # type: ignore[attr-defined]
    other = next(o for o in options if o != first)
    select.select_option(other)
    page.wait_for_selector(f".nbops-distribution svg[data-feature='{other}']", timeout=30_000)  # type: ignore[attr-defined]
    assert page.locator(f".nbops-distribution svg[data-feature='{first}']").count() == 0  # type: ignore[attr-defined]
    bar = page.locator(".nbops-distribution .nbops-tip").first  # type: ignore[attr-defined]
    bar.locator(".nbops-hit").hover()
    bar.locator(".nbops-tip-label").wait_for(state="visible", timeout=5_000)
    assert re.search(r"reference \d+\.\d%", bar.locator(".nbops-tip-label").text_content())
    _no_kernel_error(page)
    page.close()  # type: ignore[attr-defined]


def test_model_dashboard_speaks_of_the_target_and_its_explorer_responds(
    served: dict[str, str], browser: object, built: dict[str, object]
) -> None:
    metadata = built["metadata"]
    assert isinstance(metadata, dict)
    page = _open(browser, served["model"], ".nbops-threshold-result")
    _no_kernel_error(page)
    assert "Model card" in page.inner_text(".nbops-card")  # type: ignore[attr-defined]
    target = metadata["target"]
    positive = metadata.get("positive_class") or "1"
    confusion = page.inner_text(".nbops-confusion")  # type: ignore[attr-defined]
    assert f"actual {target} = {positive}" in confusion, confusion
    explorer = page.inner_text(".nbops-threshold-result")  # type: ignore[attr-defined]
    for word in ("defaulted", "repaid", "declined", "approved", "approval"):
        assert word not in (confusion + explorer).lower(), (
            f"'{word}' is the built-in credit data's word, not the target's: {explorer}"
        )
    before = explorer
    cost = page.locator(".widget-text input").first  # type: ignore[attr-defined]
    cost.fill("50000")
    cost.press("Enter")
    page.wait_for_function(
        "b => document.querySelector('.nbops-threshold-result').innerText !== b", arg=before, timeout=30_000
    )  # type: ignore[attr-defined]
    bar = page.locator(".nbops-importance .nbops-tip").first  # type: ignore[attr-defined]
    bar.locator(".nbops-hit").hover()
    bar.locator(".nbops-tip-label").wait_for(state="visible", timeout=5_000)
    assert re.search(r"\d\.\d{3}", bar.locator(".nbops-tip-label").text_content())
    clipped = _clipped(page, ".nbops-page td, .nbops-page th, .nbops-tile-label, .nbops-tile-value, .nbops-table-wrap")
    assert not clipped, f"text cut off: {clipped[:10]}"
    _full_page_screenshot(page, REPO / "reports" / "dashboard_model.png")
    page.close()  # type: ignore[attr-defined]


def test_dashboard_without_history_shows_an_empty_state(tmp_path: Path, browser: object) -> None:
    project = dashboard_copy(tmp_path / "empty")
    proc, links = make_dashboard(project, tmp_path / "voila.log")
    try:
        page = _open(browser, links["monitoring"], ".nbops-empty")
        _no_kernel_error(page)
        assert "make run" in page.inner_text(".nbops-empty")  # type: ignore[attr-defined]
        # The experiments page, with no run recorded yet, says how to record one.
        page = _open(browser, links["experiments"], ".nbops-empty")
        _no_kernel_error(page)
        text = page.inner_text(".nbops-empty")  # type: ignore[attr-defined]
        assert "No runs recorded yet" in text and "make run" in text, text
        assert page.locator(".nbops-runs-table").count() == 0  # type: ignore[attr-defined]
        _full_page_screenshot(page, REPO / "reports" / "dashboard_experiments_empty.png")
    finally:
        stop(proc)
