"""The REST API of the scoring wheel, tested against a real uvicorn process.

Each server is ``<scoring venv python> -m <package> serve`` started from the clean scoring virtualenv
(only the wheel and its ``[serve]`` extra), talked to over 127.0.0.1 with httpx, and terminated by its
fixture's finaliser (one test serves a user's own table the `make serve` way, with ``nbops serve``; the
/docs tests drive Swagger UI in headless Chromium with every non-loopback request aborted). Expected
values are never copied from a run: predictions are compared with
``m.predict(df)`` computed in the same scoring venv, field names and limits are read from the model's
own input schema.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.support import copy_project, free_port, launch_chromium, nbops, output_of, stop_process

pytestmark = pytest.mark.slow

MAX_RECORDS = 1000
STARTUP_SECONDS = 60
TIMEOUT = httpx.Timeout(30.0)

# --- servers -------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    log_dir: Path | None
    token: str | None
    process: subprocess.Popen[bytes]
    output: Path


@contextmanager
def running_server(
    venv: dict[str, Any], folder: Path, *, token: str | None = None, log_dir: Path | None = None
) -> Iterator[Server]:
    """Start ``python -m <package> serve`` from the scoring venv; always terminate it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env["NBOPS_MAX_RECORDS"] = str(MAX_RECORDS)
    if token is not None:
        env["NBOPS_API_TOKEN"] = token
    cmd = [str(venv["python"]), "-m", str(venv["package"]), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if log_dir is not None:
        cmd += ["--prediction-log", str(log_dir)]
    output = folder / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    server = Server(f"http://127.0.0.1:{port}", log_dir, token, proc, output)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop_process(proc)


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    last = ""
    for _ in range(STARTUP_SECONDS * 10):  # bounded in count and in time
        if server.process.poll() is not None:
            pytest.fail(
                f"the server exited with {server.process.returncode}:\n"
                + server.output.read_text(errors="replace")[-3000:]
            )
        try:
            r = httpx.get(server.url + "/health", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pytest.fail(
        f"GET /health did not answer 200 within {STARTUP_SECONDS} s (last: {last}):\n"
        + server.output.read_text(errors="replace")[-3000:]
    )


@pytest.fixture(scope="module")
def server(scoring_venv: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("api-server")
    with running_server(scoring_venv, folder, log_dir=folder / "prediction-log") as s:
        yield s


@pytest.fixture(scope="module")
def auth_server(scoring_venv: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("api-auth-server")
    with running_server(scoring_venv, folder, token="tok-" + secrets.token_urlsafe(24)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


# --- the model's contract and the test split --------------------------------------------------------


# Run once in the scoring venv: the model's contract, a choice of test-split rows (the first 80, which
# exercises the batch path, and up to 20 with missing values) and m.predict(df) for exactly those rows.
REFERENCE = """
import json, sys
import pandas as pd
import {package} as pkg
m = pkg.load()
df = pd.read_parquet(sys.argv[1])
names = [f.name for f in m.schema.fields]
with_nulls = df[names].isna().any(axis=1).to_numpy().nonzero()[0][:20].tolist()
positions = sorted(set(range(min(80, len(df)))) | set(with_nulls))
json.dump({{
    "version": m.version, "task_type": m.task_type, "schema": m.schema.to_dict(), "metadata": m.metadata,
    "positions": positions, "predictions": m.predict(df.iloc[positions]).tolist(),
}}, sys.stdout)
"""


@pytest.fixture(scope="module")
def facts(scoring_venv: dict[str, Any]) -> dict[str, Any]:
    """The packaged model's version, task type, input schema, metadata and reference predictions."""
    script = REFERENCE.format(package=scoring_venv["package"])
    proc = subprocess.run(
        [str(scoring_venv["python"]), "-c", script, str(split_path(scoring_venv))],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def fields(facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in facts["schema"]["fields"]}


def split_path(venv: dict[str, Any]) -> Path:
    return Path(venv["project"]) / "build/test/data/processed/test.parquet"


def json_safe(value: Any) -> Any:
    """A DataFrame cell as a JSON value: missing -> None, timestamps -> str, numpy scalars -> Python."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


@dataclass
class Rows:
    positions: list[int]
    records: list[dict[str, Any]]  # features and pass-through fields
    expected: list[float]  # m.predict(df) in the scoring venv, same rows
    version: str

    def features_only(self, names: list[str]) -> list[dict[str, Any]]:
        return [{k: r[k] for k in names} for r in self.records]


@pytest.fixture(scope="module")
def rows(scoring_venv: dict[str, Any], facts: dict[str, Any]) -> Rows:
    """The chosen test-split rows as JSON-safe records, with m.predict(df) for each."""
    df = pd.read_parquet(split_path(scoring_venv))
    positions = facts["positions"]
    assert len(positions) >= 64 and len(facts["predictions"]) == len(positions)
    assert any(df.iloc[positions][[f["name"] for f in facts["schema"]["fields"]]].isna().any(axis=1)), (
        "no row with a missing value"
    )
    columns = [f["name"] for f in facts["schema"]["fields"]] + [
        c for c in facts["schema"]["passthrough"] if c in df.columns
    ]
    records = [{c: json_safe(v) for c, v in df.iloc[p][columns].items()} for p in positions]
    return Rows(positions, records, facts["predictions"], facts["version"])


@pytest.fixture(scope="module")
def names(facts: dict[str, Any]) -> list[str]:
    return [f["name"] for f in facts["schema"]["fields"]]


def post_predict(
    client: httpx.Client, body: Any = None, *, content: bytes | None = None, headers: dict[str, Any] | None = None
) -> httpx.Response:
    if content is None:
        content = json.dumps(body, allow_nan=True).encode()
    return client.post("/predict", content=content, headers={"Content-Type": "application/json", **(headers or {})})


def assert_problem_response(r: httpx.Response, status: int) -> dict[str, Any]:
    """The API's own problem document (not FastAPI's {'detail': ...}) with the expected status."""
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("problems"), list), body
    return body


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12


# --- /health, /metadata, /openapi.json ---------------------------------------------------------------


def test_health_is_ok_with_the_packaged_model_version(client: httpx.Client, scoring_venv: dict[str, Any]) -> None:
    r = client.get("/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "model_version": scoring_venv["model_version"]}


def test_metadata_has_version_task_type_features_and_input_schema(
    client: httpx.Client, facts: dict[str, Any], scoring_venv: dict[str, Any]
) -> None:
    r = client.get("/metadata")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["version"] == scoring_venv["model_version"] == facts["version"]
    assert meta["task_type"] == facts["task_type"]
    assert meta["task_type"] in {"binary", "regression"}
    assert meta["features"] == facts["metadata"]["features"] and meta["features"]
    assert meta["input_schema"] == facts["schema"]
    assert sorted(f["name"] for f in meta["input_schema"]["fields"]) == sorted(meta["features"])


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (FastAPI may move schemas to components)."""
    for _ in range(20):
        if not (isinstance(node, dict) and "$ref" in node):
            return node
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    raise AssertionError("$ref cycle")


def variants(spec: dict[str, Any], prop: dict[str, Any]) -> list[dict[str, Any]]:
    prop = resolve(spec, prop)
    alts = prop.get("anyOf") or prop.get("oneOf")
    return [resolve(spec, a) for a in alts] if alts else [prop]


def test_openapi_documents_the_predict_body_from_the_input_schema(client: httpx.Client, facts: dict[str, Any]) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    spec = r.json()
    op = spec["paths"]["/predict"]["post"]
    body = resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["records"]
    records = resolve(spec, body["properties"]["records"])
    assert records["type"] == "array" and records.get("minItems") == 1 and records.get("maxItems") == MAX_RECORDS
    item = resolve(spec, records["items"])
    assert item.get("additionalProperties") is False
    props = item["properties"]
    for f in facts["schema"]["fields"]:
        assert f["name"] in props, f"{f['name']} missing from the documented record"
        assert f["name"] in item["required"]
        alts = variants(spec, props[f["name"]])
        types = {a.get("type") for a in alts}
        assert ("null" in types) == bool(f["nullable"]), (f["name"], alts)
        (value,) = [a for a in alts if a.get("type") != "null"]
        if f["kind"] == "numeric":
            assert value["type"] == "number", (f["name"], value)
            if f["min"] is not None:
                assert value.get("minimum") == f["min"], (f["name"], value)
            if f["max"] is not None:
                assert value.get("maximum") == f["max"], (f["name"], value)
        else:
            assert value["type"] == "string", (f["name"], value)
            if f["categories"] is not None:
                assert sorted(value.get("enum", [])) == sorted(f["categories"]), (f["name"], value)
    for name in facts["schema"]["passthrough"]:
        assert name in props and name not in item["required"]
    assert {"200", "400", "401", "413", "422"} <= set(op["responses"])


# --- /docs: Swagger UI served offline, with an example record -----------------------------------------

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONTENT_TYPES = {
    ".js": "javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".ico": "image/",
    ".json": "application/json",
}


class References(HTMLParser):
    """Every src and href of a page's tags."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [(tag, name, value) for name, value in attrs if name in {"src", "href"} and value]


def docs_references(html: str) -> list[str]:
    """The URLs a docs page makes the browser load: its src/href and the OpenAPI document Swagger UI reads."""
    parser = References()
    parser.feed(html)
    return [value for _, _, value in parser.found] + re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)


def check_docs_page(base: str, html: str) -> list[str]:
    """Assert the page names no other host and every URL it references answers 200 with a fitting type."""
    ours = urlsplit(base).netloc
    absolute = re.findall(r"""(?:https?:)?//[^\s'"<>)]+""", html)
    elsewhere = [u for u in absolute if urlsplit(u if u.startswith("http") else "http:" + u).netloc != ours]
    assert not elsewhere, (
        f"the docs page at {base}/docs names other hosts (a user offline cannot load them): {elsewhere}"
    )
    refs = docs_references(html)
    kinds = {Path(urlsplit(r).path).suffix for r in refs}
    assert {".js", ".css", ".json"} <= kinds, f"expected a script, a stylesheet and the OpenAPI document among {refs}"
    for ref in refs:
        url = urljoin(base + "/docs", ref)
        assert urlsplit(url).netloc == ours, f"{ref!r} resolves to {url}, not to the API at {base}"
        r = httpx.get(url, timeout=TIMEOUT)
        assert r.status_code == 200 and r.content, (
            f"GET {url} (referenced by /docs) answered {r.status_code} with {len(r.content)} bytes"
        )
        suffix = Path(urlsplit(url).path).suffix
        assert suffix in CONTENT_TYPES, (
            f"/docs references {ref!r}, which is none of the expected kinds {sorted(CONTENT_TYPES)}"
        )
        assert CONTENT_TYPES[suffix] in r.headers.get("content-type", ""), (
            f"GET {url}: content-type {r.headers.get('content-type')!r}, expected {CONTENT_TYPES[suffix]}"
        )
    return refs


def docs_example(spec: dict[str, Any]) -> dict[str, Any]:
    """The record in /predict's documented request-body example (what Swagger UI's 'Try it out' starts from)."""
    media = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "example" in media, (
        f"/predict's request body has no example (found keys {sorted(media)}); a user would type every field by hand"
    )
    example = media["example"]
    assert isinstance(example, dict) and list(example) == ["records"] and len(example["records"]) == 1, example
    return example["records"][0]


def test_docs_reference_no_external_url_and_every_asset_answers_200(client: httpx.Client, server: Server) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (
        f"{r.status_code} {r.headers.get('content-type')}"
    )
    refs = check_docs_page(server.url, r.text)
    assert any(ref.startswith("/docs/assets/") for ref in refs), refs


def test_redoc_is_not_offered_because_it_loads_from_a_cdn(client: httpx.Client) -> None:
    assert client.get("/redoc").status_code == 404


def test_the_docs_example_is_the_training_medians_and_most_frequent_levels(
    client: httpx.Client, facts: dict[str, Any], scoring_venv: dict[str, Any]
) -> None:
    spec = client.get("/openapi.json").json()
    record = docs_example(spec)
    names = [f["name"] for f in facts["schema"]["fields"]]
    assert list(record) == names, f"the example's fields {list(record)} are not the model's features {names}"
    hidden = set(facts["metadata"]["excluded_columns"]) | set(facts["schema"]["passthrough"])
    assert hidden and not hidden & set(record), f"identifier/PII columns in the example: {hidden & set(record)}"
    train = pd.read_parquet(Path(scoring_venv["project"]) / "build/test/data/processed/train.parquet")
    for f in facts["schema"]["fields"]:
        column = train[f["name"]].dropna()
        if f["kind"] == "numeric":
            median = float(column.median())
            assert abs(record[f["name"]] - median) <= max(
                0.5 if float(record[f["name"]]).is_integer() else 0.0, 1e-5 * abs(median)
            ), (f["name"], record[f["name"]], median)
        else:
            counts = column.astype(str).value_counts()
            assert record[f["name"]] in set(counts[counts == counts.max()].index), (
                f["name"],
                record[f["name"]],
                counts.head(3).to_dict(),
            )


def test_the_docs_example_scores_200(client: httpx.Client, facts: dict[str, Any]) -> None:
    record = docs_example(client.get("/openapi.json").json())
    r = post_predict(client, {"records": [record]})
    assert r.status_code == 200, f"POST /predict with the docs' own example answered {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert (
        body["model_version"] == facts["version"]
        and len(body["predictions"]) == 1
        and math.isfinite(body["predictions"][0])
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    """Function-scoped: while Playwright's sync API runs, asyncio.run (the load test) cannot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@dataclass
class Traffic:
    blocked: list[str]
    failed: list[str]
    answers: list[tuple[int, str]]


def offline_page(browser: Any) -> tuple[Any, Traffic]:
    """A page whose every request to a host other than loopback is aborted (and recorded)."""
    traffic = Traffic([], [], [])
    context = browser.new_context(viewport={"width": 1280, "height": 1400})

    def only_loopback(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in {"data", "blob"} or url.hostname in LOOPBACK:
            route.continue_()
        else:
            traffic.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("requestfailed", lambda req: traffic.failed.append(f"{req.url}: {req.failure}"))
    page.on("response", lambda resp: traffic.answers.append((resp.status, resp.url)))
    return page, traffic


def test_swagger_ui_renders_offline_and_try_it_out_scores_the_example(
    browser: Any, server: Server, facts: dict[str, Any], tmp_path: Path
) -> None:
    page, traffic = offline_page(browser)
    page.goto(server.url + "/docs", wait_until="domcontentloaded")
    predict = page.locator(".opblock-post", has=page.locator(".opblock-summary-path", has_text="/predict"))
    try:
        predict.wait_for(timeout=60_000)
    except Exception as exc:  # playwright's TimeoutError: say what the page could not load
        pytest.fail(
            f"Swagger UI did not list POST /predict within 60 s ({type(exc).__name__}); requests to other hosts "
            f"aborted: {traffic.blocked}; failed: {traffic.failed}"
        )
    listed = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/predict", "/health", "/metadata", "/metrics"} <= set(listed), listed
    predict.locator(".opblock-summary").click()
    predict.get_by_role("button", name="Try it out").click()
    body = json.loads(predict.locator("textarea.body-param__text").input_value())
    spec = httpx.get(server.url + "/openapi.json", timeout=TIMEOUT).json()
    assert body == {"records": [docs_example(spec)]}, f"Try it out is not prefilled with the documented example: {body}"
    predict.get_by_role("button", name="Execute").click()
    status = predict.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=30_000)
    status.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "docs-try-it-out.png"), full_page=True)
    assert status.inner_text().strip() == "200", (
        f"Execute answered {status.inner_text()!r} (screenshot: {tmp_path / 'docs-try-it-out.png'})"
    )
    answer = json.loads(predict.locator(".live-responses-table .response-col_description pre").first.inner_text())
    assert answer["model_version"] == facts["version"] and len(answer["predictions"]) == 1, answer
    assert traffic.blocked == [], f"/docs tried to reach other hosts: {traffic.blocked}"
    assert traffic.failed == [], f"requests failed while /docs loaded: {traffic.failed}"
    bad = [(s, u) for s, u in traffic.answers if s != 200]
    assert not bad, f"requests of /docs not answered 200: {bad}"
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for _, u in traffic.answers), traffic.answers
    page.context.close()


def own_table(n: int, seed: int = 11) -> pd.DataFrame:
    """A user's own table: an identifier and personal data (an e-mail address) beside the features."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.exponential(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    signal = 1.5 * x1 - x2 + (colour == "red")
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "email": [f"person{i}@example.org" for i in range(n)],
            "x1": x1.round(4),
            "x2": x2.round(4),
            "colour": colour,
            "churned": np.where(rng.random(n) < 1 / (1 + np.exp(-signal)), "yes", "no"),
        }
    )


def test_make_serve_docs_work_offline_and_show_no_personal_data(tmp_path: Path) -> None:
    """The `make serve` path (nbops serve, from the registry) on a user's table with an id and an e-mail column."""
    project = copy_project(tmp_path / "project")
    table = own_table(2000)
    table.to_csv(project / "customers.csv", index=False)
    settings = [
        "data=customers.csv",
        "target=churned",
        "pii_columns=[email]",
        "id_columns=[customer_id]",
        "time_column=none",
        "tracking=disabled",
    ]
    overrides = [a for s in settings for a in ("--set", s)]
    proc = nbops(project, "build", "--env", "env.test.yaml", *overrides)
    assert proc.returncode == 0, output_of(proc)[-5000:]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    output = tmp_path / "serve.out"
    # What `make serve ENV_FILE=env.test.yaml ARGS="--set ... --port P"` runs, in the project.
    command = [
        str(Path(sys.executable).parent / "nbops"),
        "serve",
        "--env",
        "env.test.yaml",
        *overrides,
        "--port",
        str(port),
    ]
    with output.open("wb") as out:
        serving = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", None, None, serving, output)
    try:
        wait_until_healthy(server)
        spec_text = httpx.get(server.url + "/openapi.json", timeout=TIMEOUT).text
        record = docs_example(json.loads(spec_text))
        assert sorted(record) == ["colour", "x1", "x2"], (
            f"the example should hold exactly the features, found {sorted(record)}"
        )
        docs = httpx.get(server.url + "/docs", timeout=TIMEOUT)
        assert docs.status_code == 200, docs.status_code
        check_docs_page(server.url, docs.text)
        for text, where in ((spec_text, "/openapi.json"), (docs.text, "/docs")):
            leaked = [v for v in [*table["email"], *table["customer_id"]] if v in text]
            assert not leaked, f"{where} shows personal data or identifiers of the training table: {leaked[:3]}"
        r = httpx.post(server.url + "/predict", json={"records": [record]}, timeout=TIMEOUT)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1, f"{r.status_code} {r.text[:300]}"
    finally:
        stop_process(serving)


# --- POST /predict: predictions ------------------------------------------------------------------


@pytest.mark.parametrize("passthrough", [True, False], ids=["with-id-and-month", "features-only"])
def test_predictions_equal_model_predict_in_the_scoring_venv(
    client: httpx.Client, rows: Rows, names: list[str], passthrough: bool
) -> None:
    records = rows.records if passthrough else rows.features_only(names)
    r = post_predict(client, {"records": records})
    assert r.status_code == 200, f"{r.status_code} {r.text[:500]}"
    out = r.json()
    assert out["model_version"] == rows.version
    assert len(out["predictions"]) == len(records)
    bad = [
        (i, got, want)
        for i, (got, want) in enumerate(zip(out["predictions"], rows.expected, strict=True))
        if not close(got, want)
    ]
    assert not bad, f"{len(bad)} predictions differ from m.predict(df): {bad[:5]}"
    # one record at a time (the single-row path) gives the same numbers
    for i in range(0, len(records), 9):
        r = post_predict(client, {"records": [records[i]]})
        assert r.status_code == 200, r.text[:500]
        (got,) = r.json()["predictions"]
        assert close(got, rows.expected[i]), (i, got, rows.expected[i])


def test_exactly_max_records_is_accepted(client: httpx.Client, rows: Rows) -> None:
    records = [rows.records[i % len(rows.records)] for i in range(MAX_RECORDS)]
    r = post_predict(client, {"records": records})
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    preds = r.json()["predictions"]
    assert len(preds) == MAX_RECORDS
    assert all(close(p, rows.expected[i % len(rows.records)]) for i, p in enumerate(preds))


# --- POST /predict: client mistakes -----------------------------------------------------------------


def test_malformed_json_is_400(client: httpx.Client) -> None:
    for content in (b'{"records": [{"age": 1,', b"not json", b'{"records": [1, 2,]}', b"\xff\xfe\x00garbage"):
        body = assert_problem_response(post_predict(client, content=content), 400)
        assert "json" in body["error"].lower()


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2, 3]",
        b'"records"',
        b"42",
        b"null",
        b"{}",
        b'{"rows": []}',
        b'{"records": {"age": 30}}',
        b'{"records": "x"}',
        b'{"records": []}',
        b'{"records": [], "extra": 1}',
    ],
    ids=[
        "list",
        "string",
        "number",
        "null",
        "empty-object",
        "missing-records",
        "records-object",
        "records-string",
        "records-empty",
        "extra-key",
    ],
)
def test_a_body_of_the_wrong_shape_is_422(client: httpx.Client, content: bytes) -> None:
    body = assert_problem_response(post_predict(client, content=content), 422)
    assert "records" in body["error"]


def test_more_records_than_nbops_max_records_is_413(client: httpx.Client, rows: Rows) -> None:
    records = [rows.records[i % len(rows.records)] for i in range(MAX_RECORDS + 1)]
    body = assert_problem_response(post_predict(client, {"records": records}), 413)
    assert f"{MAX_RECORDS:,}" in body["error"] or str(MAX_RECORDS) in body["error"]


def pick(fields: dict[str, dict[str, Any]], **want: Any) -> str:
    """The first schema field with the given properties (a test of the API, not of this dataset)."""
    for name, f in fields.items():
        if all((f.get(k) is not None) if v is ... else f.get(k) == v for k, v in want.items()):
            return name
    pytest.fail(f"no field in the input schema with {want}")


BAD = 2  # the bad record's index: never the first one


def mistakes(fields: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """kind -> (field, mutation); a mutation is a value, or DELETE."""
    numeric_required = pick(fields, kind="numeric", nullable=False)
    with_min = pick(fields, kind="numeric", min=...)
    with_max = pick(fields, kind="numeric", max=...)
    categorical = pick(fields, kind="categorical", categories=...)
    categorical_required = pick(fields, kind="categorical", nullable=False)
    return {
        "missing-field": (numeric_required, DELETE),
        "unknown-field": ("not_a_feature_xyz", 1.0),
        "string-in-numeric": (numeric_required, "12.5abc"),
        "bool-in-numeric": (numeric_required, True),
        "object-in-numeric": (numeric_required, {"value": 1}),
        "number-in-categorical": (categorical, 42),
        "null-in-required-categorical": (categorical_required, None),
        "NaN-in-non-nullable": (numeric_required, float("nan")),
        "Infinity": (with_max, float("inf")),
        "-Infinity": (numeric_required, float("-inf")),
        "unseen-category": (categorical, "definitely_not_a_level"),
        "below-minimum": (with_min, fields[with_min]["min"] - 1),
        "above-maximum": (with_max, fields[with_max]["max"] + 1),
    }


DELETE = object()
MISTAKE_KINDS = [
    "missing-field",
    "unknown-field",
    "string-in-numeric",
    "bool-in-numeric",
    "object-in-numeric",
    "number-in-categorical",
    "null-in-required-categorical",
    "NaN-in-non-nullable",
    "Infinity",
    "-Infinity",
    "unseen-category",
    "below-minimum",
    "above-maximum",
]


@pytest.mark.parametrize("kind", MISTAKE_KINDS)
def test_a_bad_record_is_422_naming_the_record_and_the_field(
    client: httpx.Client, rows: Rows, fields: dict[str, dict[str, Any]], kind: str
) -> None:
    field, mutation = mistakes(fields)[kind]
    records = [dict(r) for r in rows.records[:4]]
    if mutation is DELETE:
        del records[BAD][field]
    else:
        records[BAD][field] = mutation
    # json.dumps(allow_nan=True) writes the bare tokens NaN / Infinity / -Infinity, as some clients do
    content = json.dumps({"records": records}, allow_nan=True).encode()
    if kind in {"NaN-in-non-nullable", "Infinity", "-Infinity"}:
        assert re.search(rb'"' + field.encode() + rb'": -?(NaN|Infinity)', content), content[:200]
    body = assert_problem_response(post_predict(client, content=content), 422)
    problems = body["problems"]
    assert problems, body
    assert any(p.get("record") == BAD and p.get("field") == field for p in problems), problems
    assert all(p.get("record") == BAD for p in problems), f"only record {BAD} is wrong: {problems}"
    assert f"record {BAD}" in body["error"] and field in body["error"]


def test_every_bad_record_is_reported_not_just_the_first(
    client: httpx.Client, rows: Rows, fields: dict[str, dict[str, Any]]
) -> None:
    with_min = pick(fields, kind="numeric", min=...)
    categorical = pick(fields, kind="categorical", categories=...)
    records = [dict(r) for r in rows.records[:6]]
    records[1][with_min] = fields[with_min]["min"] - 10
    records[4][categorical] = "nope"
    body = assert_problem_response(post_predict(client, {"records": records}), 422)
    found = {(p["record"], p["field"]) for p in body["problems"]}
    assert found == {(1, with_min), (4, categorical)}, body["problems"]


def test_an_integer_beyond_the_float_range_is_422_not_500(
    client: httpx.Client, rows: Rows, fields: dict[str, dict[str, Any]]
) -> None:
    """Regression: math.isinf(10**400) raised OverflowError in the validator (a 500)."""
    field = pick(fields, kind="numeric", nullable=False)
    records = [dict(r) for r in rows.records[:3]]
    records[BAD][field] = "__HUGE__"
    huge = b"1" + b"0" * 400  # valid JSON; Python parses it as an int, 10**400
    content = json.dumps({"records": records}).encode().replace(b'"__HUGE__"', huge)
    assert json.loads(content)["records"][BAD][field] == 10**400
    r = post_predict(client, content=content)
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    body = assert_problem_response(r, 422)
    assert [(p["record"], p["field"]) for p in body["problems"]] == [(BAD, field)]


def test_an_unknown_field_named_with_a_lone_surrogate_is_422_not_500(client: httpx.Client, rows: Rows) -> None:
    """Regression: the field name went verbatim into a UTF-8 JSON response, which cannot encode it (a 500)."""
    records = [dict(r) for r in rows.records[:3]]
    records[BAD]["\ud800"] = 1
    content = json.dumps({"records": records}).encode()  # ensure_ascii: the JSON text has \ud800, which is valid JSON
    r = post_predict(client, content=content)
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    body = assert_problem_response(r, 422)
    assert [p["record"] for p in body["problems"]] == [BAD]


def test_deeply_nested_json_is_a_4xx_not_500(client: httpx.Client) -> None:
    """Regression: json.loads raised RecursionError, which was not caught (a 500)."""
    depth = 100_000
    for content in (b"[" * depth + b"]" * depth, b'{"records": ' + b"[" * depth + b"]" * depth + b"}"):
        r = post_predict(client, content=content)
        assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
        assert_problem_response(r, r.status_code)
        assert 400 <= r.status_code < 500


# --- auth --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_client(auth_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_server.url, timeout=TIMEOUT) as c:
        yield c


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Bearer", "Basic {token}", "bearer-{token}", "Bearer {token}x", "{token}"],
    ids=["no-header", "wrong-token", "scheme-only", "basic-scheme", "no-space", "token-suffix", "no-scheme"],
)
def test_predict_without_the_right_bearer_token_is_401(
    auth_client: httpx.Client, auth_server: Server, rows: Rows, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header.format(token=auth_server.token)}
    r = post_predict(auth_client, {"records": rows.records[:2]}, headers=headers)
    body = assert_problem_response(r, 401)
    assert "token" in body["error"].lower()
    assert auth_server.token not in r.text


def test_predict_with_the_bearer_token_is_200(auth_client: httpx.Client, auth_server: Server, rows: Rows) -> None:
    r = post_predict(
        auth_client, {"records": rows.records[:3]}, headers={"Authorization": f"Bearer {auth_server.token}"}
    )
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    preds = r.json()["predictions"]
    assert all(close(a, b) for a, b in zip(preds, rows.expected[:3], strict=True))


def test_a_non_ascii_bearer_token_is_401_not_500(auth_client: httpx.Client, rows: Rows) -> None:
    """Regression: hmac.compare_digest(str, str) raised TypeError on non-ASCII text (a 500)."""
    r = post_predict(
        auth_client, {"records": rows.records[:1]}, headers={"Authorization": "Bearer caf\u00e9".encode("utf-8")}
    )
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert_problem_response(r, 401)


# --- prediction log -----------------------------------------------------------------------------------


def log_lines(folder: Path) -> list[dict[str, Any]]:
    """Every logged request, oldest file first (rotated files, then the live one)."""
    files = sorted(folder.glob("*.jsonl"), key=lambda p: (p.name == "predictions.jsonl", p.name))
    out = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def test_the_prediction_log_has_one_json_line_per_scored_request(
    client: httpx.Client, server: Server, rows: Rows, names: list[str]
) -> None:
    assert server.log_dir is not None
    before = len(log_lines(server.log_dir))
    sent: list[tuple[list[dict[str, Any]], list[float]]] = []
    batches = [rows.records[0:1], rows.records[1:4], rows.features_only(names)[4:9], rows.records[9:10]]
    for i, batch in enumerate(batches):
        r = post_predict(client, {"records": batch})
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
        sent.append((batch, r.json()["predictions"]))
        if i == 1:  # refused requests are not logged
            assert post_predict(client, content=b"{oops").status_code == 400
            assert post_predict(client, {"records": [{"age": "x"}]}).status_code == 422
    lines = log_lines(server.log_dir)
    assert len(lines) - before == len(batches), (
        f"{len(lines) - before} new log lines for {len(batches)} scored requests"
    )
    for entry, (batch, preds) in zip(lines[before:], sent, strict=True):
        assert entry["model_version"] == rows.version
        assert entry["records"] == batch
        assert entry["predictions"] == preds
        assert isinstance(entry["ts"], int | float) and entry["ts"] > 0


# --- /metrics -------------------------------------------------------------------------------------------

LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{((?:{LABEL})(?:,{LABEL})*)?,?\}})? (\S+)(?: \d+)?$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format, strictly: every line a comment or ``name{labels} value``."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("# "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/plain")
    return parse_metrics(r.text)


def test_metrics_is_prometheus_text(client: httpx.Client) -> None:
    client.get("/health")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(r.text)
    for family, kind in [
        ("nbops_requests_total", "counter"),
        ("nbops_request_latency_seconds", "histogram"),
        ("nbops_prediction_score", "histogram"),
    ]:
        assert f"# TYPE {family} {kind}" in r.text
    assert metric(samples, "nbops_requests_total", path="/health", status="200") >= 1
    assert metric(samples, "nbops_request_latency_seconds_bucket", le="+Inf") == metric(
        samples, "nbops_request_latency_seconds_count"
    )
    parser = pytest.importorskip("prometheus_client.parser")
    names = {f.name for f in parser.text_string_to_metric_families(r.text)}
    assert {"nbops_requests", "nbops_request_latency_seconds", "nbops_prediction_score"} <= names


def test_metrics_count_what_was_sent(client: httpx.Client, rows: Rows) -> None:
    before = scrape(client)
    ok_sizes = [1, 3, 7, 2]
    start = 0
    for n in ok_sizes:
        r = post_predict(client, {"records": rows.records[start : start + n]})
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
        start += n
    bad = {
        400: [b"{"],
        422: [b"[]", b'{"records": []}', json.dumps({"records": [{"x": 1}]}).encode()],
        413: [json.dumps({"records": [rows.records[0]] * (MAX_RECORDS + 1)}).encode()],
    }
    for status, contents in bad.items():
        for content in contents:
            assert post_predict(client, content=content).status_code == status
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("nbops_requests_total", path="/predict", status="200") == len(ok_sizes)
    for status, contents in bad.items():
        assert delta("nbops_requests_total", path="/predict", status=str(status)) == len(contents), status
    assert delta("nbops_requests_total", path="/predict", status="500") == 0
    sent = len(ok_sizes) + sum(len(c) for c in bad.values())
    assert delta("nbops_request_latency_seconds_count") >= sent
    assert delta("nbops_request_latency_seconds_bucket", le="+Inf") == delta("nbops_request_latency_seconds_count")
    assert delta("nbops_prediction_score_count") == sum(ok_sizes)
    assert delta("nbops_prediction_score_bucket", le="+Inf") == sum(ok_sizes)
    assert delta("nbops_request_errors_total") >= sum(len(c) for c in bad.values())
    assert delta("nbops_records_rejected_total") >= 1 + MAX_RECORDS + 1


def test_metrics_stay_valid_prometheus_text_after_odd_paths(auth_server: Server) -> None:
    """Regression: raw paths became unescaped labels (run on the auth server, whose metrics no other test reads)."""
    headers = {"Authorization": f"Bearer {auth_server.token}"}
    with httpx.Client(base_url=auth_server.url, timeout=TIMEOUT, headers=headers) as c:
        for path in ("/no-such-page", "/a%22b", "/back%5Cslash", "/new%0Aline"):
            assert c.get(path).status_code == 404
        r = c.get("/metrics")
    assert r.status_code == 200
    parse_metrics(r.text)  # raises AssertionError on a malformed line


# --- load -------------------------------------------------------------------------------------------------

LOAD_REQUESTS = 5000
LOAD_CONCURRENCY = 32
LOAD_TIME_LIMIT = 300  # a bound for the loop, not an assertion on speed


async def hammer(url: str, records: list[dict[str, Any]]) -> tuple[list[tuple[int, int, Any]], float]:
    sem = asyncio.Semaphore(LOAD_CONCURRENCY)
    limits = httpx.Limits(max_connections=LOAD_CONCURRENCY, max_keepalive_connections=LOAD_CONCURRENCY)
    results: list[tuple[int, int, Any]] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=TIMEOUT) as c:

        async def one(i: int) -> None:
            async with sem:
                k = i % len(records)
                try:
                    r = await c.post("/predict", json={"records": [records[k]]})
                    results.append(
                        (
                            k,
                            r.status_code,
                            r.json()
                            if r.headers.get("content-type", "").startswith("application/json")
                            else r.text[:200],
                        )
                    )
                except httpx.HTTPError as exc:
                    results.append((k, -1, repr(exc)))

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(LOAD_REQUESTS))), LOAD_TIME_LIMIT)
        return results, time.perf_counter() - start


def test_load_5000_single_record_requests_at_concurrency_32(server: Server, client: httpx.Client, rows: Rows) -> None:
    first = post_predict(client, {"records": [rows.records[0]]})
    assert first.status_code == 200, f"{first.status_code} {first.text[:300]}"  # fail fast
    results, seconds = asyncio.run(hammer(server.url, rows.records))
    rate = len(results) / seconds
    print(
        f"\nload test: {len(results)} requests at concurrency {LOAD_CONCURRENCY} in {seconds:.2f} s "
        f"= {rate:,.0f} requests/s"
    )
    assert len(results) == LOAD_REQUESTS
    errors = [
        (k, s, b) for k, s, b in results if s != 200 or not isinstance(b, dict) or len(b.get("predictions", [])) != 1
    ]
    assert not errors, f"{len(errors)} errors, e.g. {errors[:3]}"
    wrong = [(k, b["predictions"][0]) for k, _, b in results if not close(b["predictions"][0], rows.expected[k])]
    assert not wrong, f"{len(wrong)} answers differ from m.predict(df) for their row: {wrong[:3]}"
    assert {b["model_version"] for _, _, b in results} == {rows.version}


def test_the_server_was_started_from_the_scoring_venv(server: Server, scoring_venv: dict[str, Any]) -> None:
    """Guards the fixture itself: the process is the scoring venv's python, not this one."""
    assert server.process.poll() is None
    assert server.process.args[0] == str(scoring_venv["python"]) != sys.executable
