"""The service's /metrics as Prometheus reads it: promtool checks the live exposition of a real uvicorn,
and Debian's Prometheus scrapes the service with the README's job; the README's metric table and the
shipped Grafana dashboard name exactly what the service exports.

The server is the scoring wheel of the session's tiny model (``python -m <package> serve`` with the wheel
on the path, the way bench/ runs it), with a token, so the scrape goes through the bearer-token check.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from nbops.runtime.metrics import Metrics
from nbops.runtime.model import ScoringModel
from tests.support import REPO, TinyModel, free_port, readme_block, stop_process

DASHBOARD = REPO / "deploy" / "grafana" / "nbops-scoring.json"
JOB = "nbops-scoring"  # the README job's name
PORT_PLACEHOLDER = "127.0.0.1:8000"
TOKEN_FILE_PLACEHOLDER = "/etc/prometheus/nbops_api_token"
STARTUP_SECONDS = 60
SCRAPE_SECONDS = 60  # a bound for the waits on Prometheus, not an assertion on speed
# PromQL words that are not metric names: functions, aggregations, keywords, and label names of `by`.
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "without", "on", "ignoring", "le"}


# --- the metric names --------------------------------------------------------------------------------------


def exported_samples() -> set[str]:
    """The sample names a serving app exports once it has answered requests (in process)."""
    m = Metrics("v0001")
    m.observe("/predict", 200, 0.001, [0.4])
    m.observe("/predict", 422, 0.001, [], 1)
    text = m.exposition(None)[0].decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def readme_metric_families() -> set[str]:
    """The ``nbops_`` metric families the README's table lists (its first column)."""
    text = (REPO / "README.md").read_text()
    return set(re.findall(r"^\| `(nbops_[a-z_]+)[{`]", text, re.M))


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel in the Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers once label matchers, ranges,
    `by (...)` groupings and Grafana variables are taken out, less PromQL's own words."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\bby\s*\([^)]*\)|\$\w+|\"[^\"]*\"", " ", expr)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - PROMQL_WORDS


def test_the_readme_lists_exactly_the_families_the_service_exports() -> None:
    families = {re.sub(r"_(total|bucket|count|sum|info)$", "", n) for n in exported_samples() if n.startswith("nbops_")}
    listed = {re.sub(r"_(total|info)$", "", n) for n in readme_metric_families()}
    assert listed == families, f"README table: {sorted(listed)}; exported: {sorted(families)}"


def test_every_dashboard_query_names_metrics_the_service_exports() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36, "not a Grafana dashboard model"
    exported = exported_samples()
    expressions = dashboard_expressions()
    assert len(expressions) >= 10, expressions
    for title, expr in expressions:
        names = metric_names_in(expr)
        assert names, f"panel {title!r}: no metric in {expr!r}"
        assert names <= exported, f"panel {title!r}: {sorted(names - exported)} not exported by the service ({expr})"
    used = {n for _, e in expressions for n in metric_names_in(e)}
    families = {re.sub(r"_(total|bucket|count|sum|info)$", "", n) for n in exported if n.startswith("nbops_")}
    unused = {f for f in families if not any(n.startswith(f) for n in used)}
    assert not unused, f"metrics no panel shows: {sorted(unused)}"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus", variables
    assert re.fullmatch(r"label_values\((\w+), job\)", variables["job"]["definition"]).group(1) in exported
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and '{job=~"$job"' in target["expr"], (panel["title"], target["expr"])


# --- a real server ---------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    port: int
    token: str
    records: list[dict[str, Any]]


@contextmanager
def running_server(model: TinyModel, folder: Path) -> Iterator[Server]:
    """``python -m <package> serve`` from the tiny model's wheel on 127.0.0.1, with a token; always stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), "tok-" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env.update({"PYTHONPATH": str(model.wheel), "NBOPS_API_TOKEN": token})
    cmd = [sys.executable, "-m", model.package, "serve", "--host", "127.0.0.1", "--port", str(port)]
    output = folder / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200,
            STARTUP_SECONDS,
            "the server's /health",
            lambda: (
                output.read_text(errors="replace")[-3000:] if proc.poll() is None else "exited: " + output.read_text()
            ),
        )
        schema = ScoringModel.from_folder(model.version.path).schema
        rows = pd.read_parquet(model.splits["test"]).head(20)[[f.name for f in schema.fields]]
        records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
        yield Server(f"http://127.0.0.1:{port}", port, token, records)
    finally:
        stop_process(proc)


def wait_for(ready: Callable[[], Any], seconds: float, what: str, detail: Callable[[], str] = lambda: "") -> Any:
    """Poll ``ready()`` every 0.2 s until it returns something true; fail naming ``what`` after ``seconds``."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            value = ready()
            if value:
                return value
        except (httpx.TransportError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{what} did not come within {seconds:.0f} s (last error: {last!r})\n{detail()}")


def send_traffic(server: Server) -> dict[str, int]:
    """Predictions (some refused) and requests for odd paths; how many of each were sent."""
    headers = {"Authorization": f"Bearer {server.token}"}
    sizes = [1, 3, 2, 5]
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        start = 0
        for n in sizes:
            r = c.post("/predict", json={"records": server.records[start : start + n]})
            assert r.status_code == 200, r.text[:300]
            start += n
        bad = {**server.records[0], "no_such_field": 1}
        assert c.post("/predict", json={"records": [bad, server.records[1]]}).status_code == 422
        for path in ("/no-such-page", "/a%22b", "/new%0Aline"):
            assert c.get(path).status_code == 404
    return {"ok_requests": len(sizes), "records": sum(sizes), "refused_requests": 1}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"Debian's `{name}` is missing: `make browser` (run by `make test`) installs the prometheus package"
        )
    return found


@pytest.mark.slow
def test_promtool_accepts_the_live_metrics(tiny_model: TinyModel, tmp_path: Path) -> None:
    promtool = tool("promtool")
    with running_server(tiny_model, tmp_path / "server") as server:
        send_traffic(server)
        r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    checked = subprocess.run([promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=60)
    report = (checked.stdout + checked.stderr).decode(errors="replace")
    assert checked.returncode == 0 and not report.strip(), f"promtool check metrics:\n{report}\n---\n{r.text}"
    names = {line.split("{")[0].split(" ")[0] for line in r.text.splitlines() if line and not line.startswith("#")}
    missing = exported_samples() - names
    assert not missing, f"the live /metrics lacks {sorted(missing)}"


# --- a real Prometheus -------------------------------------------------------------------------------------


@contextmanager
def running_prometheus(config: dict[str, Any], folder: Path) -> Iterator[str]:
    """Debian's Prometheus with ``config``, its own data folder, on a free 127.0.0.1 port; always stopped."""
    prometheus = tool("prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    cmd = [
        prometheus,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    output = folder / "prometheus.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and httpx.get(url + "/-/ready", timeout=2).status_code == 200,
            STARTUP_SECONDS,
            "Prometheus' /-/ready",
            lambda: f"exit code {proc.poll()}\n" + output.read_text(errors="replace")[-3000:],
        )
        yield url
    finally:
        stop_process(proc)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant PromQL query through Prometheus' HTTP API (fails on an error)."""
    r = httpx.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.status_code} {body}"
    return list(body["data"]["result"])


def scalar(prometheus: str, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def readme_scrape_config(port: int, token_file: Path) -> str:
    """The README's job with its two placeholders replaced: the service's port and the token file."""
    block = readme_block(f"job_name: {JOB}")
    for placeholder in (PORT_PLACEHOLDER, TOKEN_FILE_PLACEHOLDER):
        assert block.count(placeholder) == 1, f"README scrape config: expected {placeholder!r} once:\n{block}"
    return block.replace(PORT_PLACEHOLDER, f"127.0.0.1:{port}").replace(TOKEN_FILE_PLACEHOLDER, str(token_file))


@pytest.mark.slow
def test_prometheus_scrapes_the_service_with_the_readme_config(tiny_model: TinyModel, tmp_path: Path) -> None:
    with running_server(tiny_model, tmp_path / "server") as server:
        token_file = tmp_path / "nbops_api_token"
        token_file.write_text(server.token + "\n")
        token_file.chmod(0o600)
        config = yaml.safe_load(readme_scrape_config(server.port, token_file))
        # The README's job as it is; beside it the same job without the token, which must be refused.
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        tokenless = {k: v for k, v in config["scrape_configs"][0].items() if k != "authorization"}
        config["scrape_configs"].append({**tokenless, "job_name": "without-token"})
        with running_prometheus(config, tmp_path / "prometheus") as prometheus:

            def targets() -> dict[str, dict[str, Any]] | None:
                active = httpx.get(prometheus + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
                by_job = {t["labels"]["job"]: t for t in active}
                done = set(by_job) == {JOB, "without-token"} and all(t["health"] != "unknown" for t in by_job.values())
                return by_job if done else None

            by_job = wait_for(targets, SCRAPE_SECONDS, "both targets scraped")
            assert by_job[JOB]["health"] == "up", by_job[JOB]
            assert by_job[JOB]["scrapeUrl"] == f"http://127.0.0.1:{server.port}/metrics", by_job[JOB]
            assert by_job["without-token"]["health"] == "down" and "401" in by_job["without-token"]["lastError"], (
                by_job["without-token"]
            )
            selector = f'job="{JOB}"'
            assert scalar(prometheus, f"up{{{selector}}}") == 1
            ok = f'sum(nbops_requests_total{{{selector}, path="/predict", status="200"}})'
            assert scalar(prometheus, ok) is None, "predictions counted before any was sent"

            sent = send_traffic(server)
            counted = f'sum(nbops_requests_total{{{selector}, path="/predict", status="200"}}) == {sent["ok_requests"]}'
            wait_for(lambda: query(prometheus, counted), SCRAPE_SECONDS, f"Prometheus reading {counted}")
            scores = f"sum(nbops_prediction_score_count{{{selector}}})"
            wait_for(lambda: scalar(prometheus, scores) == sent["records"], SCRAPE_SECONDS, f"{scores} == {sent}")
            refused = f'sum(nbops_requests_total{{{selector}, path="/predict", status="422"}})'
            assert scalar(prometheus, refused) == sent["refused_requests"]
            assert scalar(prometheus, f"sum(nbops_records_rejected_total{{{selector}}})") == 1
            assert scalar(prometheus, f'sum(nbops_requests_total{{{selector}, path="other", status="404"}})') == 3
            version = query(prometheus, f"nbops_model_info{{{selector}}}")
            assert [v["metric"]["model_version"] for v in version] == [tiny_model.version.version], version

            # Every panel of the Grafana dashboard, as Grafana would send it for this job: valid PromQL
            # with data behind it.
            time.sleep(3)  # a few more scrapes, so that rates over the window have two points
            for title, expr in dashboard_expressions():
                promql = expr.replace('=~"$job"', f'=~"{JOB}"').replace("$__rate_interval", "1m")
                assert "$" not in promql, promql
                result = query(prometheus, promql)
                assert result, f"panel {title!r}: no data for {promql}"
