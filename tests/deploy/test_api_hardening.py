"""The REST service under attack: slow clients, floods, big requests and hostile values, against a
real uvicorn on 127.0.0.1 serving the tiny model's real wheel (``python -m <package> serve`` with the
wheel on the path, as ``pip install`` would put it).

Memory is the server's resident set from /proc, compared with its own idle size; times are reported
(printed), never asserted: what is asserted is what the server answered, and in which order.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from nbops.runtime.serve import MAX_HEADER_BYTES
from tests.support import TinyModel, free_port, readme_block, stop_process
from tests.support.attack import health_once, slow_attack

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
STARTUP_SECONDS = 60
TIMEOUT = httpx.Timeout(60.0)


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    output: Path
    token: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


# The wheel's serve() with uvicorn's pure-Python h11 parser, which it falls back to without httptools.
SERVE_WITH_H11 = """
import sys
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
import {package} as pkg
from {package}._runtime.serve import MAX_HEADER_BYTES, Limits, create_app, guarded_protocol
limits = Limits.from_env()
uvicorn.run(create_app(pkg.load(), limits=limits), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            http=guarded_protocol(H11Protocol, limits), limit_concurrency=limits.max_connections,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES)
"""


@contextmanager
def served(
    model: TinyModel,
    folder: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    http: str = "httptools",
) -> Iterator[Served]:
    """``python -m <package> serve`` from the tiny model's wheel on a free port (``http="h11"``: the
    wheel's app and guard on uvicorn's h11 parser); always terminated."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    environment["PYTHONPATH"] = str(model.wheel)
    environment.update(env or {})
    command = [sys.executable, "-m", model.package, "serve", "--host", HOST, "--port", str(port), *(args or [])]
    if http == "h11":
        command = [sys.executable, "-c", SERVE_WITH_H11.format(package=model.package), str(port)]
    output = folder / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    server = Served(f"http://{HOST}:{port}", port, proc, output, environment.get("NBOPS_API_TOKEN") or None)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while health_once(HOST, port, 2.0)[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /health (exit code {proc.poll()}):\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        stop_process(proc)


def token() -> str:
    return "tok-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def records(tiny_model: TinyModel) -> list[dict[str, Any]]:
    """The tiny model's test split as JSON records: its features and its pass-through fields."""
    df = pd.read_parquet(tiny_model.splits["test"])
    schema = json.loads((tiny_model.version.path / "input_schema.json").read_text())
    columns = [f["name"] for f in schema["fields"]] + [c for c in schema["passthrough"] if c in df.columns]
    out = json.loads(df[columns].to_json(orient="records", date_format="iso"))
    assert out and all(set(r) == set(columns) for r in out)
    return out


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status}, found {r.status_code}: {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body


# --- 1. slow clients: partial bodies and half-sent headers -----------------------------------------------


@pytest.mark.parametrize("protected", [True, False], ids=["with-token", "without-token"])
def test_a_slow_client_attack_leaves_memory_bounded_and_health_answering(
    tiny_model: TinyModel, tmp_path: Path, protected: bool
) -> None:
    """60 connections each sending 16 MB of a 32 MB body (no token) and 300 sending half a header line,
    held while /health is asked. With a token the bodies are refused (401) from their headers; without
    one, the bodies held at once stay within the in-flight budget (503 beyond). Either way the server
    closes the half-header connections once their deadline passes."""
    env = {"NBOPS_HEADER_TIMEOUT": "2", "NBOPS_BODY_TIMEOUT": "5"}
    if protected:
        env["NBOPS_API_TOKEN"] = token()
    else:
        env["NBOPS_MAX_INFLIGHT_BYTES"] = str(32 << 20)
    with served(tiny_model, tmp_path, env=env) as server:
        report = slow_attack(HOST, server.port, server.process.pid, hold_seconds=6, close_wait_seconds=30)
        after = httpx.get(server.url + "/health", timeout=TIMEOUT)
    print(f"\nslow-client attack ({'with' if protected else 'without'} a token): {report.summary()}")
    assert report.ratio < 1.5, f"the server grew from its idle size under the attack: {report.summary()}"
    failed = [(status, round(s, 3)) for status, s in report.health if status != 200]
    assert report.health and not failed, f"/health did not answer 200 under the attack: {failed[:10]}"
    assert after.status_code == 200, after.text
    assert report.headers_open == 0, f"half-header connections the server kept open: {report.summary()}"
    held = [a for a in report.body_answers if a == "open"]
    refused = "401" if protected else "503"
    assert any(refused in a for a in report.body_answers), report.summary()
    if protected:  # every unauthenticated body is answered from its headers, none is waited for
        assert not held, f"{len(held)} unauthenticated connections with a body were still held: {report.summary()}"


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_stalled_body_or_header_is_answered_408_and_closed(tiny_model: TinyModel, tmp_path: Path, http: str) -> None:
    env = {"NBOPS_HEADER_TIMEOUT": "1", "NBOPS_BODY_TIMEOUT": "1"}
    with served(tiny_model, tmp_path, env=env, http=http) as server:
        stalled = {
            "body": f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\n" + '{"records": [',
            "headers": f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Le",
        }
        for what, sent in stalled.items():
            with socket.create_connection((HOST, server.port), timeout=30) as s:
                s.sendall(sent.encode())
                answer = read_until_closed(s)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), f"a stalled {what}: the server answered {answer[:300]!r}"
            error = json.loads(body)["error"]
            assert what in error and ("NBOPS_BODY_TIMEOUT" if what == "body" else "NBOPS_HEADER_TIMEOUT") in error
        assert health_once(HOST, server.port, 10)[0] == 200


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test: it kept it open)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {s.gettimeout()} s; it had sent {data[:200]!r}")
    return data


def test_headers_larger_than_the_cap_are_431_and_closed(tiny_model: TinyModel, tmp_path: Path) -> None:
    # A little more than the cap, in one send and then nothing: the server reads it all before it
    # answers, so its close is a clean one (closing on unread bytes would reset the connection).
    filler = b"a" * (MAX_HEADER_BYTES + 4096)
    with served(tiny_model, tmp_path) as server, socket.create_connection((HOST, server.port), timeout=30) as s:
        s.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\nX-Filler: ".encode() + filler)
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:300]
    assert "headers" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


def test_a_body_larger_than_the_cap_is_413_before_it_is_read(
    tiny_model: TinyModel, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    cap = 256 << 10
    with served(tiny_model, tmp_path, env={"NBOPS_MAX_BODY_BYTES": str(cap)}) as server:
        body = json.dumps({"records": records[:1]}).encode()
        ok = httpx.post(server.url + "/predict", content=body, timeout=TIMEOUT)
        assert ok.status_code == 200, ok.text
        big = json.dumps({"records": [records[i % len(records)] for i in range(2000)]}).encode()
        assert len(big) > cap
        declared = httpx.post(server.url + "/predict", content=big, timeout=TIMEOUT)
        error = problem(declared, 413)["error"]
        assert f"{cap:,}" in error and "NBOPS_MAX_BODY_BYTES" in error
        assert declared.headers.get("connection") == "close"

        def chunked() -> Iterator[bytes]:  # no Content-Length: the cap holds as the body arrives
            for i in range(0, len(big), 16 << 10):
                yield big[i : i + (16 << 10)]

        problem(httpx.post(server.url + "/predict", content=chunked(), timeout=TIMEOUT), 413)


def test_more_connections_than_the_cap_are_503(tiny_model: TinyModel, tmp_path: Path) -> None:
    cap = 8
    with served(tiny_model, tmp_path, args=["--max-connections", str(cap)]) as server:
        idle = [socket.create_connection((HOST, server.port), timeout=10) for _ in range(cap)]
        try:
            time.sleep(0.5)  # let the server accept them all
            status, _ = health_once(HOST, server.port, 10)
        finally:
            for s in idle:
                s.close()
        assert status == 503, f"with {cap} connections open (the cap) /health answered {status}"
        deadline = time.monotonic() + 30
        while (again := health_once(HOST, server.port, 10)[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert again == 200, f"after the connections closed, /health answered {again}"


# --- 2. the token guards everything but /health --------------------------------------------------------

GUARDED = ["/metadata", "/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/metrics", "/no-such-page"]


def test_with_a_token_every_path_but_health_needs_it(tiny_model: TinyModel, tmp_path: Path) -> None:
    secret = token()
    with (
        served(tiny_model, tmp_path, env={"NBOPS_API_TOKEN": secret}) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as c,
    ):
        assert c.get("/health").status_code == 200
        for path in GUARDED:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}):
                r = c.get(path, headers=headers)
                assert "token" in problem(r, 401)["error"], path
                assert r.headers.get("www-authenticate") == "Bearer", (path, r.headers)
                assert secret not in r.text
            r = c.get(path, headers=server.headers())
            assert r.status_code == (404 if path == "/no-such-page" else 200), (path, r.status_code, r.text[:200])
        meta = c.get("/metadata", headers=server.headers()).json()
        assert meta["version"] == tiny_model.version.version


def test_public_metrics_answer_a_scrape_without_the_token_the_readme_way(tiny_model: TinyModel, tmp_path: Path) -> None:
    """The README's serve command with --public-metrics: /metrics without the token, nothing else."""
    block = readme_block("--public-metrics", "bash")
    assert "export NBOPS_API_TOKEN=" in block, block
    line = next(ln for ln in block.splitlines() if "--public-metrics" in ln)
    words = shlex.split(line.split("#", 1)[0])
    assert words[:4] == ["python", "-m", tiny_model.package, "serve"], words
    assert not {"--host", "--port"} & set(words), words  # served() chooses a free port
    env = {"NBOPS_API_TOKEN": token()}  # what the block's export line sets
    with (
        served(tiny_model, tmp_path, env=env, args=words[4:]) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as c,
    ):
        scrape = c.get("/metrics")
        assert scrape.status_code == 200 and "nbops_requests_total" in scrape.text, scrape.text[:300]
        for path in ("/metadata", "/openapi.json", "/docs"):
            problem(c.get(path), 401)
        assert c.post("/predict", json={"records": []}).status_code == 401


# --- 3. a large request is scored off the event loop -----------------------------------------------------


def test_health_answers_while_a_large_request_is_scored(
    tiny_model: TinyModel, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    n = 60_000
    big = json.dumps({"records": [records[i % len(records)] for i in range(n)]}).encode()
    with served(tiny_model, tmp_path, env={"NBOPS_MAX_RECORDS": str(n)}) as server:
        health: list[tuple[float, int | str, float]] = []  # (finished at, status, seconds)
        done = threading.Event()
        times: dict[str, float] = {}

        def big_request() -> None:
            with socket.create_connection((HOST, server.port), timeout=120) as s:
                s.sendall(
                    f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n".encode()
                    + big
                )
                times["sent"] = time.perf_counter()
                answer = read_until_closed(s)
            times["done"] = time.perf_counter()
            times["status"] = int(answer.split(b" ", 2)[1])
            done.set()

        worker = threading.Thread(target=big_request)
        worker.start()
        while not done.is_set():
            status, seconds = health_once(HOST, server.port, 120)
            health.append((time.perf_counter(), status, seconds))
        worker.join()
    assert times["status"] == 200, times
    sent, finished = times["sent"], times["done"]
    during = [(at, status, s) for at, status, s in health if sent < at < finished]
    ms = sorted(s * 1e3 for _, _, s in during)
    print(
        f"\n/health while {n:,} records ({len(big) / 2**20:.1f} MB) were scored in {finished - sent:.2f} s after "
        f"the upload: {len(during)} answers, p50 {ms[len(ms) // 2] if ms else float('nan'):.1f} ms, "
        f"max {ms[-1] if ms else float('nan'):.1f} ms"
    )
    assert all(status == 200 for _, status, _ in during), during[:5]
    late = [at for at, _, _ in during if at > sent + (finished - sent) / 2]
    assert late, (
        f"no /health answer in the second half of the {finished - sent:.2f} s the big request took after its "
        f"upload ({len(during)} in all): the scoring blocked the server"
    )


# --- 4. pass-through fields are typed --------------------------------------------------------------------


def test_a_pass_through_object_or_list_is_422_naming_the_field_with_the_log_on(
    tiny_model: TinyModel, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    passthrough = json.loads((tiny_model.version.path / "input_schema.json").read_text())["passthrough"]
    field = passthrough[0]
    deep: Any = "x"
    for _ in range(900):
        deep = {"a": deep}
    with served(tiny_model, tmp_path, args=["--prediction-log", str(tmp_path / "log")]) as server:
        for value in (deep, {"id": 1}, [1, 2], True):
            sent = [dict(r) for r in records[:3]]
            sent[1][field] = value
            r = httpx.post(server.url + "/predict", json={"records": sent}, timeout=TIMEOUT)
            body = problem(r, 422)
            assert [(p["record"], p["field"]) for p in body["problems"]] == [(1, field)], body
            assert field in body["error"]
        ok = httpx.post(server.url + "/predict", json={"records": records[:3]}, timeout=TIMEOUT)
        assert ok.status_code == 200, ok.text
    lines = (tmp_path / "log" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["records"] == records[:3]
