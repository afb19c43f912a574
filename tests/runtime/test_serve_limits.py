"""The scoring API's limits, in process: where they come from, and that a refused request's body is
never read (the real server under attack is tests/deploy/test_api_hardening.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nbops.runtime.model import ScoringModel
from nbops.runtime.serve import Limits, create_app
from tests.support import TinyModel
from tests.support.asgi import asgi_request


def test_limits_come_from_the_environment_and_flags_win() -> None:
    env = {"NBOPS_MAX_RECORDS": "500", "NBOPS_HEADER_TIMEOUT": "2.5", "NBOPS_PUBLIC_METRICS": "1"}
    limits = Limits.from_env(env, header_timeout=7)
    assert (limits.max_records, limits.header_timeout, limits.public_metrics) == (500, 7, True)
    assert limits.max_body_bytes == 500 * 4096 + 65536 and limits.max_inflight_bytes == 4 * limits.max_body_bytes
    capped = Limits.from_env({"NBOPS_MAX_INFLIGHT_BYTES": "1000"})
    assert capped.max_body_bytes == 1000, "a body larger than the in-flight budget could never be read"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("NBOPS_MAX_RECORDS", "lots"), ("NBOPS_BODY_TIMEOUT", "-1"), ("NBOPS_MAX_CONNECTIONS", "0")],
)
def test_a_limit_that_is_not_a_positive_number_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable) as caught:
        Limits.from_env({variable: value})
    assert repr(value) in str(caught.value)


def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, Any, dict[bytes, bytes], int]:
    """One request through the ASGI app: (status, answer, headers, how often the app read the body)."""
    return asgi_request(app, method, path, headers, body)


def test_a_request_without_the_token_is_401_and_its_body_is_never_read(tiny_model: TinyModel) -> None:
    app = create_app(ScoringModel.from_folder(tiny_model.version.path), token="s3cret", log_dir=None)
    body = json.dumps({"records": [{}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for path in ("/predict", "/metadata", "/openapi.json", "/docs", "/metrics"):
        status, answer, head, reads = call(app, "POST" if path == "/predict" else "GET", path, headers, body)
        assert status == 401 and "token" in answer["error"], (path, status, answer)
        assert reads == 0, f"{path}: the body was read before the token was checked"
        assert head[b"connection"] == b"close" and head[b"www-authenticate"] == b"Bearer", head
    status, answer, _, _ = call(app, "GET", "/health", [], b"")
    assert status == 200 and answer["status"] == "ok"


def test_a_body_declared_larger_than_the_cap_is_413_unread(tiny_model: TinyModel) -> None:
    limits = Limits(max_body_bytes=1000)
    app = create_app(ScoringModel.from_folder(tiny_model.version.path), token="", log_dir=None, limits=limits)
    headers = [(b"content-length", b"5000")]
    status, answer, head, reads = call(app, "POST", "/predict", headers, b" " * 5000)
    assert status == 413 and "1,000" in answer["error"] and "NBOPS_MAX_BODY_BYTES" in answer["error"], answer
    assert reads == 0 and head[b"connection"] == b"close"
