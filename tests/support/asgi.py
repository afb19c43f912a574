"""One HTTP request through an ASGI app in this process, with no server: what the app answered and
how often it read the body (a guard that answers early must never read it)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


def asgi_request(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, Any, dict[bytes, bytes], int]:
    """(status, the answer's JSON or None when empty, the answer's headers, how often the body was read)."""
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(answer) if answer else None, dict(start["headers"]), reads
