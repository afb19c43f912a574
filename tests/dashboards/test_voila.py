"""The Voila dashboards in a real headless Chromium: widgets render, pickers redraw, no kernel error."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, copy_project, nbops, output_of

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "nbops-dashboard-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _voila(project: Path, env_file: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "NBOPS_ENV": env_file, "PLOOMBER_STATS_ENABLED": "false", "WANDB_MODE": "disabled"}
    env.pop("NBOPS_PROJECT", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "voila"), "dashboards", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", f"--token={TOKEN}", "--preheat_kernel=True", "--pool_size=1"],
        cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            # The tree page, not a notebook: every notebook GET starts a kernel.
            if httpx.get(f"{base}/voila/static/voila.js", timeout=2).status_code < 500:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    return proc, base


@pytest.fixture(scope="module")
def dashboard_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built with two years of monthly production history."""
    project = copy_project(tmp_path_factory.mktemp("dash") / "project")
    shutil.copytree(REPO / "dashboards", project / "dashboards")
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "production_months=24", "--set", "tracking=disabled")
    assert proc.returncode == 0, output_of(proc)[-4000:]
    return project


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


def _open(browser: object, url: str, ready: str) -> tuple[object, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})  # type: ignore[attr-defined]
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(ready, timeout=90_000)
    return page, time.perf_counter() - start


def _no_kernel_error(page: object) -> None:
    text = page.inner_text("body")  # type: ignore[attr-defined]
    for marker in ("Traceback", "Error:", "There was an error when executing"):
        assert marker not in text, text[:2000]


def test_monitoring_dashboard_renders_and_the_feature_picker_redraws(dashboard_project: Path, browser: object, tmp_path: Path) -> None:
    proc, base = _voila(dashboard_project, "env.test.yaml", tmp_path / "voila.log")
    try:
        page, seconds = _open(browser, f"{base}/voila/render/monitoring.ipynb?token={TOKEN}", ".nbops-kpis")
        print(f"monitoring dashboard ready in {seconds:.2f} s with 24 months of history")
        _no_kernel_error(page)
        assert "batches monitored" in page.inner_text(".nbops-kpis")
        assert page.locator("text=24").first.is_visible()
        select = page.locator(".widget-dropdown select").first
        options = select.locator("option").all_inner_texts()
        assert len(options) >= 20
        first = select.input_value()
        page.wait_for_selector(f".nbops-dist-{first}", timeout=30_000)
        other = next(o for o in options if o != first)
        select.select_option(other)
        page.wait_for_selector(f".nbops-dist-{other}", timeout=30_000)  # the plot was redrawn for the new feature
        assert page.locator(f".nbops-dist-{first}").count() == 0
        _no_kernel_error(page)
        shot = REPO / "reports" / "dashboard_monitoring.png"
        shot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_model_dashboard_threshold_explorer_responds(dashboard_project: Path, browser: object, tmp_path: Path) -> None:
    proc, base = _voila(dashboard_project, "env.test.yaml", tmp_path / "voila.log")
    try:
        page, _ = _open(browser, f"{base}/voila/render/model.ipynb?token={TOKEN}", ".nbops-threshold-result")
        _no_kernel_error(page)
        assert "Model card" in page.inner_text("body")
        before = page.inner_text(".nbops-threshold-result")
        loss = page.locator(".widget-text input").first
        loss.fill("50000")
        loss.press("Enter")
        page.wait_for_function("b => document.querySelector('.nbops-threshold-result').innerText !== b", arg=before, timeout=30_000)
        assert page.inner_text(".nbops-threshold-result") != before
        page.screenshot(path=str(REPO / "reports" / "dashboard_model.png"), full_page=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_without_history_shows_an_empty_state(tmp_path: Path, browser: object) -> None:
    project = copy_project(tmp_path / "empty")
    shutil.copytree(REPO / "dashboards", project / "dashboards")
    proc, base = _voila(project, "env.test.yaml", tmp_path / "voila.log")
    try:
        page, _ = _open(browser, f"{base}/voila/render/monitoring.ipynb?token={TOKEN}", ".nbops-empty")
        _no_kernel_error(page)
        assert "make run" in page.inner_text(".nbops-empty")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_requires_the_token(dashboard_project: Path, tmp_path: Path) -> None:
    proc, base = _voila(dashboard_project, "env.test.yaml", tmp_path / "voila.log")
    try:
        response = httpx.get(f"{base}/voila/render/monitoring.ipynb", timeout=30, follow_redirects=False)
        assert response.status_code in (302, 401, 403)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
