"""Property-based fuzzing of the live REST API: no input may make it answer a 5xx.

Two fuzzers against one real uvicorn process started from the scoring venv: schemathesis, driven by
the server's own /openapi.json (valid and invalid bodies), and hypothesis, posting arbitrary JSON and
records with the model's feature names and random-typed values. Both first check that /predict really
reaches the validator (a valid record scores), so neither can pass vacuously.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support import free_port, stop_process

pytestmark = pytest.mark.slow

MAX_RECORDS = 1000
STARTUP_SECONDS = 60
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

# --- the server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server(scoring_venv: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``<scoring venv python> -m <package> serve`` on a free port, with a prediction log; terminated after."""
    folder = tmp_path_factory.mktemp("fuzz-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env["NBOPS_MAX_RECORDS"] = str(MAX_RECORDS)
    cmd = [
        str(scoring_venv["python"]),
        "-m",
        str(scoring_venv["package"]),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--prediction-log",
        str(folder / "log"),
    ]
    output = folder / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        for _ in range(STARTUP_SECONDS * 10):
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{output.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no 200 from /health within {STARTUP_SECONDS} s:\n{output.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.1)
        else:
            pytest.fail(f"no 200 from /health:\n{output.read_text(errors='replace')[-3000:]}")
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def client(fuzz_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server, timeout=httpx.Timeout(30.0)) as c:
        yield c


@pytest.fixture(scope="module")
def input_schema(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/metadata")
    assert r.status_code == 200, r.text[:300]
    return r.json()["input_schema"]


def valid_record(schema: dict[str, Any]) -> dict[str, Any]:
    """A record every rule of the schema accepts, built from the schema alone."""
    record: dict[str, Any] = {}
    for f in schema["fields"]:
        if f["kind"] == "numeric":
            lo, hi = f["min"], f["max"]
            record[f["name"]] = (
                (lo + hi) / 2
                if lo is not None and hi is not None
                else (lo + 1.0 if lo is not None else (hi - 1.0 if hi is not None else 1.0))
            )
        else:
            record[f["name"]] = f["categories"][0] if f["categories"] else "a"
    return record


def assert_predict_reachable(client: httpx.Client, schema: dict[str, Any]) -> None:
    """A valid record scores: the fuzzing below reaches the validator and the model."""
    r = client.post("/predict", json={"records": [valid_record(schema)]})
    assert r.status_code == 200, (
        f"a valid record was not scored ({r.status_code} {r.text[:300]}): fuzzing /predict would test nothing"
    )
    assert len(r.json()["predictions"]) == 1


def send(client: httpx.Client, body: Any) -> httpx.Response:
    # json.dumps: ASCII-only text (lone surrogates as \\udxxx escapes) and bare NaN/Infinity tokens
    content = json.dumps(body, allow_nan=True).encode()
    return client.post("/predict", content=content, headers={"Content-Type": "application/json"})


def check_response(r: httpx.Response, body: Any) -> None:
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]} for {json.dumps(body, allow_nan=True)[:500]}"
    out = r.json()
    if r.status_code == 200:
        records = body["records"]
        assert len(out["predictions"]) == len(records)
        assert all(isinstance(p, float) and math.isfinite(p) for p in out["predictions"])
    else:
        assert 400 <= r.status_code < 500 and isinstance(out.get("error"), str), (r.status_code, out)
        if isinstance(body, dict) and isinstance(body.get("records"), list):
            assert all(-1 <= p["record"] < len(body["records"]) for p in out["problems"]), out["problems"]


# --- schemathesis over /openapi.json ---------------------------------------------------------------


def test_schemathesis_finds_no_server_error(
    fuzz_server: str, client: httpx.Client, input_schema: dict[str, Any], tmp_path: Path
) -> None:
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is not installed (it is in the dev extra)"
    assert_predict_reachable(client, input_schema)
    cmd = [
        str(SCHEMATHESIS), "run", f"{fuzz_server}/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "200",
        "--mode", "all",  # valid and invalid (negative) bodies
        "--seed", "20240901",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    print(output[-2500:])
    assert proc.returncode == 0, f"schemathesis exited with {proc.returncode}:\n{output[-6000:]}"
    assert "No issues found" in output


# --- hypothesis: random JSON -------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
NUMBERS = st.one_of(
    st.integers(),
    st.floats(),  # NaN and +-Infinity included: the server's parser accepts the bare tokens
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324, -0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples every run
    phases=[Phase.explicit, Phase.generate],  # no shrinking, so bounded in time: the failing body is in the message
    database=None,  # nothing written into the repository
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


def test_random_json_bodies_never_get_a_5xx(client: httpx.Client, input_schema: dict[str, Any]) -> None:
    assert_predict_reachable(client, input_schema)
    bodies = st.one_of(
        JSON,
        st.fixed_dictionaries({"records": JSON}),
        st.fixed_dictionaries({"records": st.lists(JSON, min_size=1, max_size=4)}),
        st.dictionaries(TEXT, JSON, max_size=3),
    )

    @FUZZ
    @given(body=bodies)
    def run(body: Any) -> None:
        check_response(send(client, body), body)

    run()


# --- hypothesis: records with the feature names and random-typed values --------------------------------


def record_strategy(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    base = valid_record(schema)
    names = [f["name"] for f in schema["fields"]]

    def value(f: dict[str, Any]) -> st.SearchStrategy[Any]:
        edges: list[Any] = [None, float("nan"), float("inf"), "", "NaN", "1", True]
        if f["categories"]:
            edges += list(f["categories"]) + [f["categories"][0].upper(), f["categories"][0] + " "]
        for bound in (f["min"], f["max"]):
            if bound is not None:
                edges += [bound, bound - 1e-9, bound + 1e-9, int(bound), str(bound)]
        return st.one_of(st.sampled_from(edges), SCALARS, JSON)

    values = {f["name"]: value(f) for f in schema["fields"]}
    extras = st.dictionaries(st.one_of(TEXT, st.sampled_from(schema["passthrough"] or ["id"])), SCALARS, max_size=2)
    every_field_random = st.fixed_dictionaries(values)
    mutated = st.builds(
        lambda changes, drop, extra: {**{k: v for k, v in base.items() if k not in drop}, **changes, **extra},
        st.fixed_dictionaries({}, optional=values),
        st.sets(st.sampled_from(names), max_size=2),
        extras,
    )
    return st.one_of(st.just(base), mutated, every_field_random)


def test_random_records_with_the_feature_names_never_get_a_5xx(
    client: httpx.Client, input_schema: dict[str, Any]
) -> None:
    assert_predict_reachable(client, input_schema)
    bodies = st.fixed_dictionaries({"records": st.lists(record_strategy(input_schema), min_size=1, max_size=5)})

    @FUZZ
    @given(body=bodies)
    def run(body: dict[str, Any]) -> None:
        check_response(send(client, body), body)

    run()


def test_the_fuzz_server_answers_health(client: httpx.Client, scoring_venv: dict[str, Any]) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["model_version"] == scoring_venv["model_version"]
