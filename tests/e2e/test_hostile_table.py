"""The hostile table (tests/support/hostile.py) through `make run` and `make dashboard`: every HTML
product and both Voila dashboards open in Chromium without one dialog, showing the markup as text;
the row index is an id, the infinite target quarantined, the names LightGBM refuses train."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.support import launch_chromium, nbops, output_of
from tests.support.browser import PAGE_READY_MS
from tests.support.hostile import IMG_COLUMN, SCRIPT_VALUE, write_hostile_table
from tests.support.voila import READY, dashboard_copy, make_dashboard, stop

pytestmark = pytest.mark.slow
ROOT = Path("build/test")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = dashboard_copy(tmp_path_factory.mktemp("hostile") / "project")
    write_hostile_table(project / "hostile.csv")
    env = project / "env.test.yaml"
    text = re.sub(r"(?m)^data: .*$", "data: hostile.csv", env.read_text())
    env.write_text(re.sub(r"(?m)^target: .*$", "target: default", text))
    proc = nbops(project, "build", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)[-4000:]
    return project, proc.stdout


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


def visit(browser: object, url: str, ready: str | None = None) -> tuple[list[str], str]:
    """Open ``url``, hover what a reader hovers, return the dialogs that fired and the page's text."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    fired: list[str] = []
    page.on("dialog", lambda dialog: (fired.append(dialog.message), dialog.dismiss()))
    page.goto(url, wait_until="load")
    if ready:
        page.wait_for_selector(ready, timeout=PAGE_READY_MS)
    for element in page.query_selector_all("b, td, th, code, span, li")[:400]:
        try:
            element.hover(timeout=100)
        except Exception:  # hidden or detached: nothing to hover
            pass
    page.wait_for_timeout(300)
    text = page.inner_text("body")
    page.close()
    return fired, text


def test_the_table_is_read_as_its_author_meant(hostile: tuple[Path, str]) -> None:
    project, out = hostile
    assert "3,999 valid, 1 quarantined" in out
    schema = (project / "schemas/hostile.schema.yaml").read_text()
    assert "- name: 'Unnamed: 0'\n  kind: text\n  role: id" in schema
    quarantine = pd.read_parquet(project / ROOT / "data/interim/quarantine.parquet")
    assert quarantine["_reason"].tolist() == ["default: label 'inf' is not one of the two classes"]
    features = json.loads((project / ROOT / "models/feature_transform.json").read_text())["feature_names"]
    assert IMG_COLUMN in features and "a,b" in features and "x`y" in features  # the user's names, kept


def test_every_html_product_opens_without_a_dialog(hostile: tuple[Path, str], browser: object) -> None:
    project, _ = hostile
    pages = sorted((project / ROOT).rglob("*.html"))
    assert len(pages) >= 11, pages  # 8 reports, the pipeline picture, the version's card and the report's
    shown_as_text = 0
    for path in pages:
        fired, text = visit(browser, path.as_uri())
        assert not fired, f"{path.relative_to(project)} ran {fired}"
        shown_as_text += SCRIPT_VALUE in text
    assert shown_as_text >= 3  # the markup is shown to the reader, as text (card, register, features...)


def test_both_dashboards_open_without_a_dialog(hostile: tuple[Path, str], browser: object, tmp_path: Path) -> None:
    project, _ = hostile
    proc, links = make_dashboard(project, tmp_path / "voila.log")
    try:
        for name, url in links.items():
            fired, text = visit(browser, url, READY[name])
            assert not fired, f"the {name} dashboard ran {fired}"
            assert "Traceback" not in text
    finally:
        stop(proc)
