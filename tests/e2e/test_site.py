"""`nbops site` on a built project: every page opens from file:// in Chromium with the network
blocked, no request fails, every link resolves to a page of the site, and nothing is unescaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support import launch_chromium, nbops, output_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(packaged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    proc = nbops(packaged_project, "site", "--env", "env.test.yaml", "--out", str(out))
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.splitlines()[-1] == f"open {(out / 'index.html').as_uri()}"
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


def test_every_page_and_link_works_offline(site: Path, browser: object) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    network: list[str] = []
    failed: list[str] = []

    def route(r: object) -> None:
        url = r.request.url  # type: ignore[attr-defined]
        if url.startswith("file://") or url.startswith("data:"):
            r.continue_()  # type: ignore[attr-defined]
        else:
            network.append(url)
            r.abort()  # type: ignore[attr-defined]

    context.route("**/*", route)
    page = context.new_page()
    page.on("requestfailed", lambda request: failed.append(request.url))
    seen: set[str] = set()
    queue = [(site / "index.html").as_uri()]
    broken: list[str] = []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        page.goto(url, wait_until="load")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            target = urlsplit(href)
            if target.scheme != "file":
                broken.append(f"{url}: links outside the site: {href}")
                continue
            path = Path(unquote(target.path))
            if not path.is_file():
                broken.append(f"{url}: broken link {href}")
            elif path.is_relative_to(site) and path.suffix == ".html":
                queue.append(path.as_uri())
    context.close()
    assert not network, f"the site asked the network for {network[:5]}"
    assert not failed, f"requests failed: {failed[:5]}"
    assert not broken, broken[:10]
    pages = {Path(unquote(urlsplit(u).path)).relative_to(site).as_posix() for u in seen}
    expected = {"index.html", "registry.html", "runs.html", "monitoring.html", "reports/pipeline.html"}
    assert expected <= pages
    assert {f"reports/{t}.html" for t in ("ingest", "train", "evaluate", "register", "monitor")} <= pages
    assert "models/v0001.html" in pages  # the production version's card, reached from the index


def test_the_registry_and_monitoring_pages_say_what_the_products_say(site: Path, packaged_project: Path) -> None:
    from nbops.registry.store import Registry

    registry = Registry(packaged_project / "build/test/registry/credit_risk")
    text = (site / "registry.html").read_text()
    assert f"production <b>{registry.aliases()['production']}</b>" in text
    assert len(re.findall(r"<td>register</td>", text)) == len(
        [e for e in registry.history() if e["event"] == "register"]
    )
    runs = (site / "runs.html").read_text()
    from nbops.experiments.index import read_runs

    recorded = read_runs(packaged_project / "build/test")
    assert recorded and all(r.identity in runs for r in recorded)  # every run of the index, in the table
    monitoring = (site / "monitoring.html").read_text()
    assert monitoring.count('<img src="monitoring/') >= 2
    import pandas as pd

    history = pd.read_parquet(packaged_project / "build/test/monitoring/history.parquet")
    assert all(f"<td>{b}</td>" in monitoring for b in history["batch_id"])
