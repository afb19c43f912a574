"""The REST API: FastAPI on uvicorn, one model version, sub-millisecond single-row predictions.

The request body is parsed and validated by the same validator as ``predict`` (so every client
mistake is a 4xx naming the record and the field, never a 500), records are encoded straight to the
feature matrix (no DataFrame per request), and LightGBM scores a row on one thread. Each request's
inputs and outputs are appended to a rotated JSON-lines prediction log that monitoring reads. The
Open Inference Protocol (KServe V2, :mod:`.oip`) is served beside /predict under /v2, with the same
token, limits, metrics and log.

/docs (Swagger UI) loads its script, styles and icon from the API itself (the files of the
``fastapi-offline`` package, in the ``[serve]`` extra), never from a CDN, so it works offline; the
request body's example is a typical record built from the training data's reference profile.

A client cannot make the server hold memory or a connection for long (:class:`Limits`): with a
token set, every path but /health (and /metrics, if made public) answers 401 from the headers alone,
before any body is read; a body has a size cap, all bodies being read share a memory budget, a
request's headers and its body each have a deadline (:func:`guarded_protocol`), and the number of
connections is capped. A large request is scored on a worker thread, so /health answers meanwhile.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime,
# and the names they use (Request, Response) are imported inside create_app.
import asyncio
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import oip
from .metrics import Metrics
from .model import ScoringModel
from .schema import InputError, InputSchema

TOKEN_ENV = "NBOPS_API_TOKEN"
LOG_DIR_ENV = "NBOPS_PREDICTION_LOG"
MAX_RECORDS_ENV = "NBOPS_MAX_RECORDS"
MAX_BODY_BYTES_ENV = "NBOPS_MAX_BODY_BYTES"
MAX_INFLIGHT_BYTES_ENV = "NBOPS_MAX_INFLIGHT_BYTES"
MAX_CONNECTIONS_ENV = "NBOPS_MAX_CONNECTIONS"
HEADER_TIMEOUT_ENV = "NBOPS_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "NBOPS_BODY_TIMEOUT"
PUBLIC_METRICS_ENV = "NBOPS_PUBLIC_METRICS"
MAX_HEADER_BYTES = 64 << 10  # a request line and headers larger than this are refused (431)
INLINE_BODY_BYTES = 16 << 10  # bodies up to this size (a few dozen records, ~1 ms) are scored on the event loop
DOCS_ASSETS = "/docs/assets"  # Swagger UI's files, served by the API itself (no CDN)


@dataclass(frozen=True)
class Limits:
    """How much one server lets a client make it hold or wait for; each can be set by an environment
    variable (or a ``serve`` flag).

    Attributes:
        max_records: records per request (``NBOPS_MAX_RECORDS``); more is a 413.
        max_body_bytes: bytes of one request body (``NBOPS_MAX_BODY_BYTES``; default 4 KiB a record
            plus 64 KiB, and never more than ``max_inflight_bytes``); more is a 413, refused from
            the Content-Length before the body is read.
        max_inflight_bytes: bytes of request bodies held at once, all requests together
            (``NBOPS_MAX_INFLIGHT_BYTES``; default four bodies of the largest size); a request that
            would go beyond is a 503.
        max_connections: connections and requests in progress at once (``NBOPS_MAX_CONNECTIONS``,
            uvicorn's ``limit_concurrency``); a request beyond is a 503.
        header_timeout: seconds a connection may take to send a request's line and headers, from its
            opening or from the previous answer (``NBOPS_HEADER_TIMEOUT``); then it is closed (408).
        body_timeout: seconds a request may take to send its body once its headers are in
            (``NBOPS_BODY_TIMEOUT``); then it is closed (408).
        public_metrics: /metrics answers without the token, for a Prometheus scrape
            (``NBOPS_PUBLIC_METRICS=1``).
    """

    max_records: int = 10_000
    max_body_bytes: int = 0  # 0: 4 KiB a record plus 64 KiB
    max_inflight_bytes: int = 0  # 0: four bodies of max_body_bytes
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    public_metrics: bool = False

    def __post_init__(self) -> None:
        if not self.max_body_bytes:
            object.__setattr__(self, "max_body_bytes", self.max_records * 4096 + 65536)
        if not self.max_inflight_bytes:
            object.__setattr__(self, "max_inflight_bytes", 4 * self.max_body_bytes)
        if self.max_body_bytes > self.max_inflight_bytes:  # such a body could never be read: a 413, not a 503
            object.__setattr__(self, "max_body_bytes", self.max_inflight_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> "Limits":
        """The limits set in ``env`` (default: the process environment), with ``given`` values
        (those not None) taking precedence. Raises ValueError naming a variable that is not a number."""
        env = os.environ if env is None else env
        names = {
            "max_records": (MAX_RECORDS_ENV, int),
            "max_body_bytes": (MAX_BODY_BYTES_ENV, int),
            "max_inflight_bytes": (MAX_INFLIGHT_BYTES_ENV, int),
            "max_connections": (MAX_CONNECTIONS_ENV, int),
            "header_timeout": (HEADER_TIMEOUT_ENV, float),
            "body_timeout": (BODY_TIMEOUT_ENV, float),
        }
        values: dict[str, Any] = {}
        for key, (variable, kind) in names.items():
            text = env.get(variable, "").strip()
            if given.get(key) is not None:
                values[key] = given[key]
            elif text:
                try:
                    values[key] = kind(text)
                except ValueError:
                    values[key] = None
                if values[key] is None or not values[key] > 0:
                    what = "a whole number" if kind is int else "a number of seconds"
                    raise ValueError(f"{variable} must be {what} above 0, found {text!r}; set it or unset it")
        flag = env.get(PUBLIC_METRICS_ENV, "").strip().lower()
        if given.get("public_metrics") is not None:
            values["public_metrics"] = bool(given["public_metrics"])
        elif flag:
            if flag not in {"1", "true", "yes", "0", "false", "no"}:
                raise ValueError(f"{PUBLIC_METRICS_ENV} must be 1 or 0, found {flag!r}")
            values["public_metrics"] = flag in {"1", "true", "yes"}
        bad = [k for k, v in values.items() if k != "public_metrics" and not v > 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be above 0, found {[values[k] for k in bad]}")
        return cls(**values)


class PredictionLog:
    """Append-only JSON lines, rotated by size; one line per request (inputs, outputs, version, time)."""

    def __init__(self, folder: Path, max_bytes: int = 50 << 20) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "predictions.jsonl"
        self.fh = self.path.open("a", encoding="utf-8")

    def append(self, entry: Mapping[str, Any]) -> None:
        # Strict JSON: a NaN a client sent for a nullable field is logged as null.
        line = json.dumps(_json_safe(entry), separators=(",", ":"), default=str, allow_nan=False) + "\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            if self.fh.tell() >= self.max_bytes:
                self.fh.close()
                self.path.rename(self.folder / f"predictions-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl")
                self.fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        with self.lock:
            self.fh.close()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


KNOWN_PATHS = frozenset({"/predict", "/health", "/metadata", "/metrics", "/docs", "/openapi.json"})


def request_schema(schema: InputSchema, max_records: int) -> dict[str, Any]:
    """The OpenAPI (JSON Schema) description of the /predict body, generated from the input schema."""
    properties: dict[str, Any] = {}
    for f in schema.fields:
        if f.kind == "numeric":
            prop: dict[str, Any] = {"type": "number"}
            if f.min is not None:
                prop["minimum"] = f.min
            if f.max is not None:
                prop["maximum"] = f.max
        else:
            prop = {"type": "string"}
            if f.categories is not None:
                prop["enum"] = list(f.categories)
        properties[f.name] = {"anyOf": [prop, {"type": "null"}]} if f.nullable else prop
    for name in schema.passthrough:
        properties[name] = {
            "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
            "description": "A pass-through field: echoed in the answer's `ids`, never modelled.",
        }
    for name in schema.ignored:
        properties[name] = {"description": "A column of the training table the model does not use: accepted, ignored."}
    record = {"type": "object", "properties": properties, "required": schema.names, "additionalProperties": False}
    return {
        "type": "object",
        "required": ["records"],
        "additionalProperties": False,
        "properties": {"records": {"type": "array", "items": record, "minItems": 1, "maxItems": max_records}},
    }


def example_record(
    schema: InputSchema, profile: Mapping[str, Any] | None, levels: Mapping[str, Sequence[str]]
) -> dict[str, Any] | None:
    """A typical record for the API docs' example: each numeric feature's training median and each
    categorical feature's most frequent training level, read from the reference profile.

    Built from the profile, not copied from a row, so the docs show no real record; only the model's
    features appear (identifiers, PII and ignored columns never reach the input schema's fields).
    Without a profile, the middle of each declared range and the first known level stand in. Returns
    None if the record would not pass the input schema (Swagger UI then shows its own placeholder).
    """
    numeric = (profile or {}).get("numeric") or {}
    categorical = (profile or {}).get("categorical") or {}
    record: dict[str, Any] = {}
    for f in schema.fields:
        value: Any
        if f.kind == "numeric":
            quantiles = [
                q
                for q in (numeric.get(f.name) or {}).get("quantiles") or []
                if isinstance(q, int | float) and math.isfinite(q)
            ]
            if quantiles:
                value = _readable(quantiles[len(quantiles) // 2], whole=all(float(q).is_integer() for q in quantiles))
            elif f.min is not None and f.max is not None:
                value = _readable((f.min + f.max) / 2, whole=False)
            else:
                value = f.min if f.min is not None else f.max if f.max is not None else 0
            if f.min is not None and value < f.min:
                value = f.min
            if f.max is not None and value > f.max:
                value = f.max
        else:
            allowed = f.categories if f.categories is not None else list(levels.get(f.name) or [])
            frequent = [lv for lv in (categorical.get(f.name) or {}).get("levels") or [] if lv in allowed]
            value = frequent[0] if frequent else allowed[0] if allowed else None
        record[f.name] = value
    try:
        schema.check_records([record])
    except InputError:
        return None
    return record


def _readable(value: float, *, whole: bool) -> float | int:
    """Six significant digits; an integer when the feature only takes whole values."""
    value = float(f"{value:.6g}")
    return int(round(value)) if whole or value.is_integer() else value


class ScoringApp:
    """The ASGI application: ``POST /predict`` is answered here directly, everything else by FastAPI.

    Starlette's HTTP middleware and FastAPI's routing cost more than the model itself on a one-row
    request (about 0.6 ms and 0.3 ms here), so the scoring path is plain ASGI; FastAPI still serves
    /health, /metadata, /metrics and the OpenAPI documents, including /predict's. Every request is
    counted in the metrics, and an unexpected error is a 500 without internals.

    The token is checked from the headers, before anything else: a request without it is answered
    401 and its body is never read (the connection is closed if one was announced). A /predict body
    is refused (413) beyond ``limits.max_body_bytes``, from its Content-Length when it has one, and
    refused (503) when the bodies held at once would pass ``limits.max_inflight_bytes``. A body
    larger than :data:`INLINE_BODY_BYTES` is scored on a worker thread (JSON parsing aside, the
    validation, the transform and LightGBM let the event loop run), so /health answers meanwhile.
    """

    openapi: Callable[[], dict[str, Any]]  # FastAPI's, set by create_app: for tools that introspect the app

    def __init__(
        self,
        api: Any,
        score: Any,
        metrics: Metrics,
        limits: Limits,
        expected_authorization: bytes | None,
        v2: Any = None,
    ) -> None:
        self.api = api
        self.score = score
        self.v2 = v2  # the Open Inference Protocol's /v2 paths (V2Handler), answered here like /predict
        self.metrics = metrics
        self.limits = limits
        self.max_body_bytes = limits.max_body_bytes
        self.expected = expected_authorization
        # Health probes answer without the token: /health, and the protocol's /v2/health/live and ready.
        probes = {"/health", "/v2/health/live", "/v2/health/ready"}
        self.open_paths = frozenset(probes | {"/metrics"} if limits.public_metrics else probes)
        self.inflight_bytes = 0  # bodies held now, all requests together (touched only on the event loop)
        self.workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbops-scoring")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        start = time.perf_counter()
        v2 = self.v2 is not None and oip.is_v2(scope["path"])
        route = oip.route(scope["path"]) if v2 else None
        path = route.label if route is not None else scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        if self.expected is not None and scope["path"] not in self.open_paths:
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(auth, self.expected):
                await _respond(send, 401, UNAUTHORIZED, close=_announces_body(scope), headers=CHALLENGE)
                self.metrics.observe(path, 401, time.perf_counter() - start)
                return
        if scope["path"] == "/predict" and scope["method"] == "POST":
            status, scores, rejected = await self.predict(scope, receive, send)
            if status:
                self.metrics.observe(path, status, time.perf_counter() - start, scores, rejected)
            return
        if route is not None:
            status, scores, rejected = await self.open_inference(route, scope, receive, send)
            if status:
                self.metrics.observe(path, status, time.perf_counter() - start, scores, rejected)
            return
        status_seen = 500

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        try:
            await self.api(scope, receive, recording_send)
        except Exception:
            await _respond(send, 500, _problem("internal error"))
            status_seen = 500
        self.metrics.observe(path, status_seen, time.perf_counter() - start)

    async def open_inference(
        self, route: oip.Route, scope: dict[str, Any], receive: Any, send: Any
    ) -> tuple[int, list[float], int]:
        """A /v2 request: an inference read and scored as /predict is (the same limits), the others
        answered from the model's metadata; (status, scores, records refused)."""
        if route.kind == "unknown" or scope["method"] != route.method:
            if route.kind == "unknown":
                status, message = 404, f"no such path of the Open Inference Protocol: {scope['path'][:200]}"
            else:
                status, message = 405, f"{scope['path'][:200]} takes {route.method}, not {scope['method'][:10]}"
            close = _announces_body(scope)
            await _respond(send, status, _problem(message), close=close, headers=((b"allow", route.method.encode()),))
            return status, [], 0
        if route.kind != "infer":
            status, payload = self.v2.get(route)
            await _respond(send, status, payload, close=_announces_body(scope))
            return status, [], 0
        header_length = next((v for k, v in scope["headers"] if k == b"inference-header-content-length"), None)
        return await self.predict(scope, receive, send, lambda raw: self.v2.infer(raw, header_length, route))

    async def predict(
        self, scope: dict[str, Any], receive: Any, send: Any, score: Callable[[bytes], tuple[Any, ...]] | None = None
    ) -> tuple[int, list[float], int]:
        """Read the body within the limits, score it with ``score`` (default: /predict's) and answer;
        (status, scores, records refused), status 0 if the client went away before an answer."""
        score = score or self.score
        limit = self.max_body_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _respond(send, 413, _too_large(limit, int(declared)), close=True)
            return 413, [], 0
        chunks: list[bytes] = []
        held = 0
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect: nobody to answer
                    return 0, [], 0
                chunk = message.get("body", b"")
                if held + len(chunk) > limit:
                    await _respond(send, 413, _too_large(limit, None), close=True)
                    return 413, [], 0
                if self.inflight_bytes + len(chunk) > self.limits.max_inflight_bytes:
                    await _respond(send, 503, BUSY, close=True, headers=RETRY_SOON)
                    return 503, [], 0
                self.inflight_bytes += len(chunk)
                held += len(chunk)
                chunks.append(chunk)
                more = message.get("more_body", False)
            raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            del chunks[:]
            headers: Sequence[tuple[bytes, bytes]] = ()
            try:
                if held <= INLINE_BODY_BYTES:
                    status, payload, scores, rejected, *extra = score(raw)
                else:
                    loop = asyncio.get_running_loop()
                    status, payload, scores, rejected, *extra = await loop.run_in_executor(self.workers, score, raw)
                if extra:  # the answer's own headers (a /v2 answer with binary tensor data)
                    headers = extra[0]
            except Exception:  # a bug of ours, never a client's mistake: count it, hide internals
                status, payload, scores, rejected = 500, _problem("internal error"), [], 0
            await _respond(send, status, payload, headers=headers)
            return status, scores, rejected
        finally:
            self.inflight_bytes -= held

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)


def _announces_body(scope: Mapping[str, Any]) -> bool:
    """True if the request's headers announce a body (which an early answer leaves unread)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in {b"0", b""}):
            return True
    return False


def _too_large(limit: int, declared: int | None) -> bytes:
    found = f"; this one declares {declared:,} bytes" if declared is not None else ""
    return _problem(
        f"the body is larger than the {limit:,} bytes allowed per request{found}; split the batch "
        f"(the server's {MAX_BODY_BYTES_ENV} sets the limit)"
    )


async def _respond(
    send: Any, status: int, payload: bytes, *, close: bool = False, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON answer (unless ``headers`` give another content-type); ``close``: end the connection
    after it (a body was left unread)."""
    if headers and any(name == b"content-type" for name, _ in headers):
        head = [*headers, (b"content-length", str(len(payload)).encode())]
    else:
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


def _problem(message: str, problems: list[dict[str, Any]] | None = None) -> bytes:
    # ensure_ascii: a client's field name may be any JSON string, lone surrogates included.
    return json.dumps({"error": message, "problems": problems or []}, ensure_ascii=True).encode()


UNAUTHORIZED = _problem(
    f"missing or wrong bearer token: every path but /health needs the header 'Authorization: Bearer <token>' "
    f"(the server's {TOKEN_ENV})"
)
CHALLENGE = ((b"www-authenticate", b"Bearer"),)
BUSY = _problem(
    f"the server is reading as many request bodies as it may hold at once ({MAX_INFLIGHT_BYTES_ENV}); "
    "retry in a moment, or send smaller batches"
)
RETRY_SOON = ((b"retry-after", b"1"),)


def create_app(
    model: ScoringModel,
    *,
    token: str | None = None,
    log_dir: str | Path | None = None,
    max_records: int | None = None,
    limits: Limits | None = None,
) -> ScoringApp:
    """Build the ASGI app serving ``model``.

    ``token`` (default ``NBOPS_API_TOKEN``; an empty string for none), ``log_dir`` (default
    ``NBOPS_PREDICTION_LOG``) and ``limits`` (default :meth:`Limits.from_env`, with ``max_records``
    when given) say who may call and how much one may send.
    """
    from fastapi import Request
    from fastapi.responses import Response

    try:
        from fastapi_offline import FastAPIOffline
    except ImportError as exc:
        raise ImportError(
            "the API's /docs needs the Swagger UI files of the 'fastapi-offline' package, which is not "
            "installed: install the wheel with its serve extra (pip install '<wheel>[serve]')"
        ) from exc

    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    expected = f"Bearer {token}".encode() if token else None
    limits = limits if limits is not None else Limits.from_env(max_records=max_records)
    max_records = limits.max_records
    folder = log_dir or os.environ.get(LOG_DIR_ENV)
    plog = PredictionLog(Path(folder)) if folder else None
    version = model.version
    metrics = Metrics(version)
    body_schema = request_schema(model.schema, max_records)
    body_media: dict[str, Any] = {"schema": body_schema}
    example = example_record(model.schema, model.reference_profile, model.feature_transform.categorical)
    if example is not None:  # Swagger UI's "Try it out" starts from it
        body_media["example"] = {"records": [example]}
    problem_schema = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "object"}}},
    }
    # FastAPIOffline is FastAPI whose /docs page loads Swagger UI from the files it ships, mounted at
    # DOCS_ASSETS, instead of a CDN. No /redoc: ReDoc's sidebar always loads the Redocly logo from
    # a CDN, which fails offline and tells a third party that someone read the docs.
    api = FastAPIOffline(
        title=f"{model.metadata.get('package', 'nbops model')} scoring API",
        version=version,
        description=f"Scores records with model version {version} ({model.task_type}). The Open Inference "
        f"Protocol (KServe V2) is served beside /predict: GET /v2/models/{model.metadata.get('package', 'model')} "
        "lists its inputs and outputs, POST .../infer scores.",
        static_url=DOCS_ASSETS,
        redoc_url=None,
    )

    def score(raw: bytes) -> tuple[int, bytes, list[float], int]:
        """Parse, validate and score one /predict body (the token was checked): (status, answer,
        scores for the metrics, records refused)."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return 400, _problem(f"the body is not valid JSON: {exc}"), [], 0
        status, payload, predictions, rejected = _score(body, model, max_records)
        if status == 200 and plog is not None:
            records = without_ignored(body["records"], model.schema.ignored_names)
            plog.append({"ts": time.time(), "model_version": version, "records": records, "predictions": predictions})
        # The score histogram counts a number per record: a multiclass record's most likely class's probability.
        scores = [max(p["probabilities"].values()) if isinstance(p, dict) else p for p in predictions]
        return status, payload, scores, rejected

    @api.post(
        "/predict",
        summary="Score records",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": body_media}}},
        responses={
            200: {
                "description": "Predictions, in the order of the records",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model_version", "predictions"],
                            "additionalProperties": False,
                            "properties": {
                                "model_version": {"type": "string"},
                                "predictions": {"type": "array", "items": prediction_schema(model)},
                                "ids": ids_schema(model.schema),
                            },
                        }
                    }
                },
            },
            400: {"description": "Malformed JSON", "content": {"application/json": {"schema": problem_schema}}},
            401: {
                "description": "Missing or wrong bearer token",
                "content": {"application/json": {"schema": problem_schema}},
            },
            413: {
                "description": "More records or a larger body than allowed",
                "content": {"application/json": {"schema": problem_schema}},
            },
            422: {
                "description": "Records that do not match the schema (each problem names the record and the field)",
                "content": {"application/json": {"schema": problem_schema}},
            },
        },
    )
    def predict_documented() -> dict[str, Any]:  # pragma: no cover - ScoringApp answers POST /predict
        """Score records. The example is a typical record, not a real one: each numeric feature's
        training median and each categorical feature's most frequent level."""
        raise RuntimeError("POST /predict is served before FastAPI routing")

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version}

    @api.get("/metadata")
    def metadata() -> dict[str, Any]:
        return {**model.metadata, "input_schema": model.schema.to_dict()}

    @api.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus' text format, or OpenMetrics if the Accept header asks for it",
                "content": {"text/plain": {}, "application/openmetrics-text": {}},
            }
        },
    )
    async def prometheus(request: Request) -> Response:
        """The service's Prometheus metrics (nbops.runtime.metrics)."""
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @api.on_event("shutdown")
    def close_log() -> None:
        app.close()
        if plog is not None:
            plog.close()

    app = ScoringApp(api, score, metrics, limits, expected, V2Handler(model, max_records, plog))
    app.openapi = api.openapi
    return app


class V2Handler:
    """The Open Inference Protocol (:mod:`.oip`) for ScoringApp: each answer as (status, body[, headers]),
    an inference's records and predictions logged like /predict's, client mistakes as ``{"error": ...}``."""

    def __init__(self, model: ScoringModel, max_records: int, plog: PredictionLog | None) -> None:
        self.model = model
        self.protocol = oip.OpenInference(model, max_records)
        self.plog = plog

    def get(self, route: oip.Route) -> tuple[int, bytes]:
        try:
            return 200, self.protocol.get(route)
        except oip.ProtocolError as exc:
            return exc.status, _problem(exc.message)

    def infer(
        self, raw: bytes, header_length: bytes | None, route: oip.Route
    ) -> tuple[int, bytes, list[float], int, list[tuple[bytes, bytes]]]:
        """(status, body, scores for the metrics, records refused, headers) of an inference request."""
        try:
            done = self.protocol.infer(raw, header_length, route)
        except oip.ProtocolError as exc:
            rows = len({p["row"] for p in exc.problems}) if exc.problems else 0
            return exc.status, _problem(exc.message, exc.problems), [], rows, []
        if self.model.classes is not None:
            logged: list[Any] = multiclass_predictions(self.model, done.scores)
            scores = done.scores.max(axis=1).tolist()
        else:
            logged = scores = done.scores.tolist()
        if self.plog is not None:
            entry = {"ts": time.time(), "model_version": self.model.version, "records": done.records}
            self.plog.append({**entry, "predictions": logged})
        return 200, done.body, scores, 0, done.headers


def ids_schema(schema: InputSchema) -> dict[str, Any]:
    """The JSON Schema of the answer's ``ids``: present only when records carried pass-through fields."""
    return {
        "type": "array",
        "description": "Only when the records carried pass-through fields "
        f"({', '.join(schema.passthrough) or 'none for this model'}): for each prediction, in the same order, "
        "the pass-through fields sent with its record (null where a record lacked one), to join the answer "
        "to the records. Fields the model does not use (the target, ignored columns) are accepted and dropped.",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
                for name in schema.passthrough
            },
        },
    }


def echoed_ids(records: Sequence[Mapping[str, Any]], passthrough: Sequence[str]) -> list[dict[str, Any]] | None:
    """Each record's pass-through fields (those any record carried; None where one lacks it), or None
    when no record carried any."""
    if len(records) == 1:  # the single-record request: no generator per field
        sent = [name for name in passthrough if name in records[0]]
    else:
        sent = [name for name in passthrough if any(name in r for r in records)]
    if not sent:
        return None
    return [{name: _json_safe(r.get(name)) for name in sent} for r in records]


def without_ignored(records: list[Any], ignored: frozenset[str]) -> list[Any]:
    """The records without the fields the model ignores (the target, ignored columns): what is logged."""
    if not ignored or all(ignored.isdisjoint(r) for r in records):
        return records
    return [{k: v for k, v in r.items() if k not in ignored} for r in records]


def prediction_schema(model: ScoringModel) -> dict[str, Any]:
    """The JSON Schema of one prediction: a number, or for a multiclass model an object with the
    most likely class and the probability of each class keyed by its name."""
    if model.classes is None:
        return {"type": "number"}
    names = [str(c) for c in model.classes]
    integer = all(isinstance(c, int) and not isinstance(c, bool) for c in model.classes)
    return {
        "type": "object",
        "required": ["label", "probabilities"],
        "additionalProperties": False,
        "properties": {
            "label": {"type": "integer" if integer else "string", "enum": list(model.classes)},
            "probabilities": {
                "type": "object",
                "required": names,
                "additionalProperties": False,
                "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in names},
            },
        },
    }


def multiclass_predictions(model: ScoringModel, scores: Any) -> list[dict[str, Any]]:
    """Each record's most likely class and its probability of every class, keyed by class name."""
    classes = model.classes or []
    names = [str(c) for c in classes]
    return [
        {"label": classes[int(row.argmax())], "probabilities": dict(zip(names, row.tolist(), strict=True))}
        for row in scores
    ]


def _score(body: Any, model: ScoringModel, max_records: int) -> tuple[int, bytes, list[Any], int]:
    if not isinstance(body, dict) or set(body) != {"records"}:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        return 422, _problem(f'expected an object {{"records": [...]}}, found {keys}'), [], 0
    records = body["records"]
    if not isinstance(records, list) or not records:
        return 422, _problem("'records' must be a non-empty list of objects"), [], 0
    if len(records) > max_records:
        return (
            413,
            _problem(f"{len(records):,} records is more than the {max_records:,} allowed per request; split the batch"),
            [],
            len(records),
        )
    try:
        model.schema.check_records(records)
    except InputError as exc:
        details = [{"record": p.record, "field": p.field, "problem": p.message} for p in exc.problems]
        return 422, _problem(str(exc), details), [], len({p.record for p in exc.problems})
    raw = model.predict_records(records, validated=True)
    answer: dict[str, Any] = {"model_version": model.version}
    if model.classes is not None:
        if not all(math.isfinite(s) for s in raw.ravel().tolist()):  # never expected: a model bug
            raise RuntimeError("non-finite prediction")
        predictions: list[Any] = multiclass_predictions(model, raw)
    else:
        predictions = raw.tolist()
        if not all(math.isfinite(s) for s in predictions):  # never expected: a model bug, not a client error
            raise RuntimeError("non-finite prediction")
    answer["predictions"] = predictions
    ids = echoed_ids(records, model.schema.passthrough) if model.schema.passthrough else None
    if ids is not None:
        answer["ids"] = ids
    # ensure_ascii: class names and identifiers are the data's, any text at all
    return 200, json.dumps(answer).encode(), predictions, 0


def guarded_protocol(base: Any, limits: Limits) -> Any:
    """uvicorn's HTTP protocol class ``base`` (httptools' or h11's) with deadlines a slow client
    cannot stretch, which uvicorn itself does not have.

    A connection must send a request's line and headers within ``limits.header_timeout`` seconds of
    opening or of its previous answer (uvicorn's keep-alive timer restarts with every byte, so half a
    header line sent slowly held a connection for ever), in at most :data:`MAX_HEADER_BYTES` (431
    beyond); and a request's body within ``limits.body_timeout`` seconds of its headers. A client
    that misses a deadline gets a 408 (if it had begun a request) and its connection is closed.
    Only what both protocols share is used: ``cycle`` (the request in progress), its
    ``response_complete``, ``more_body`` and ``response_started``, and ``on_response_complete``.
    """

    class GuardedProtocol(base):  # type: ignore[misc]
        _guard_timer: asyncio.TimerHandle | None = None
        _guard_phase: tuple[str, Any] = ("", None)
        _header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._guard()

        def data_received(self, data: bytes) -> None:
            if self._guard_phase[0] == "headers":
                self._header_bytes += len(data)
            super().data_received(data)
            if self._header_bytes > MAX_HEADER_BYTES and self._phase()[0] == "headers":
                message = f"the request line and headers are larger than {MAX_HEADER_BYTES:,} bytes"
                self._refuse(b"431 Request Header Fields Too Large", message)
                return
            self._guard()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._guard()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_guard()
            super().connection_lost(exc)

        def _phase(self) -> tuple[str, Any]:
            """What the connection waits for from the client: "headers", "body", or "" (its answer)."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return "headers", cycle
            return ("body" if cycle.more_body else ""), cycle

        def _guard(self) -> None:
            """Start the deadline of what the connection now waits for, unless it already runs."""
            if self.transport is None or self.transport.is_closing():
                self._cancel_guard()
                return
            phase = self._phase()
            if phase[0] == self._guard_phase[0] and phase[1] is self._guard_phase[1]:
                return
            self._cancel_guard()
            self._guard_phase = phase
            if phase[0] == "headers":
                self._header_bytes = 0
                self._guard_timer = self.loop.call_later(limits.header_timeout, self._expire, phase)
            elif phase[0] == "body":
                self._guard_timer = self.loop.call_later(limits.body_timeout, self._expire, phase)

        def _cancel_guard(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None

        def _expire(self, phase: tuple[str, Any]) -> None:
            self._guard_timer = None
            now = self._phase()
            if now[0] != phase[0] or now[1] is not phase[1] or self.transport.is_closing():
                return
            if phase[0] == "headers" and not self._header_bytes:  # an idle connection: just close it
                self.transport.close()
                return
            seconds = limits.header_timeout if phase[0] == "headers" else limits.body_timeout
            variable = HEADER_TIMEOUT_ENV if phase[0] == "headers" else BODY_TIMEOUT_ENV
            self._refuse(
                b"408 Request Timeout",
                f"the request's {'headers' if phase[0] == 'headers' else 'body'} did not arrive within "
                f"{seconds:g} s (the server's {variable})",
                answer=phase[0] == "headers" or not phase[1].response_started,
            )

        def _refuse(self, status: bytes, message: str, *, answer: bool = True) -> None:
            """Answer ``status`` with a problem document (unless an answer began) and close."""
            self._cancel_guard()
            if answer:
                body = _problem(message)
                self.transport.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\nconnection: close\r\n\r\n"
                    + body
                )
            self.transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def serve(
    model: ScoringModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_dir: str | None = None,
    limits: Limits | None = None,
) -> None:
    """Run the API with uvicorn (one worker; scale out with more processes behind a balancer), within
    ``limits`` (default: :meth:`Limits.from_env`).

    httptools and uvloop (in the ``[serve]`` extra) are used when installed: the pure-Python HTTP
    parser alone costs more than scoring a row.
    """
    import importlib.util

    import uvicorn

    limits = limits if limits is not None else Limits.from_env()
    if importlib.util.find_spec("httptools"):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(
        create_app(model, log_dir=log_dir, limits=limits),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=guarded_protocol(base, limits),
        loop=loop,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
