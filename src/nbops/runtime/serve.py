"""The REST API: FastAPI on uvicorn, one model version, sub-millisecond single-row predictions.

The request body is parsed and validated by the same validator as ``predict`` (so every client
mistake is a 4xx naming the record and the field, never a 500), records are encoded straight to the
feature matrix (no DataFrame per request), and LightGBM scores a row on one thread. Each request's
inputs and outputs are appended to a rotated JSON-lines prediction log that monitoring reads.

/docs (Swagger UI) loads its script, styles and icon from the API itself (the files of the
``fastapi-offline`` package, in the ``[serve]`` extra), never from a CDN, so it works offline; the
request body's example is a typical record built from the training data's reference profile.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime,
# and the names they use (Request, Response) are imported inside create_app.
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import ScoringModel
from .schema import InputError, InputSchema

TOKEN_ENV = "NBOPS_API_TOKEN"
LOG_DIR_ENV = "NBOPS_PREDICTION_LOG"
MAX_RECORDS_ENV = "NBOPS_MAX_RECORDS"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DOCS_ASSETS = "/docs/assets"  # Swagger UI's files, served by the API itself (no CDN)


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


class Metrics:
    """Prometheus text-format counters and histograms, kept in process (no extra dependency)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.scores = [0] * (len(SCORE_BUCKETS) + 1)
        self.scores_sum = 0.0
        self.scores_count = 0
        self.records_rejected = 0

    @staticmethod
    def _bucket(value: float, bounds: tuple[float, ...]) -> int:
        for i, b in enumerate(bounds):
            if value <= b:
                return i
        return len(bounds)

    def observe(self, path: str, status: int, seconds: float, scores: Any = (), rejected: int = 0) -> None:
        with self.lock:
            self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
            self.latency[self._bucket(seconds, LATENCY_BUCKETS)] += 1
            self.latency_sum += seconds
            self.latency_count += 1
            self.records_rejected += rejected
            for s in scores:
                self.scores[self._bucket(float(s), SCORE_BUCKETS)] += 1
                self.scores_sum += float(s)
                self.scores_count += 1

    def render(self, version: str) -> str:
        version = _label(version)
        lines = [
            "# HELP nbops_requests_total Requests by path and status code.",
            "# TYPE nbops_requests_total counter",
        ]
        with self.lock:
            for (path, status), n in sorted(self.requests.items()):
                lines.append(
                    f'nbops_requests_total{{path="{_label(path)}",status="{status}",model_version="{version}"}} {n}'
                )
            errors = sum(n for (_, status), n in self.requests.items() if status >= 400)
            lines += [
                "# HELP nbops_request_errors_total Requests answered with a 4xx or 5xx.",
                "# TYPE nbops_request_errors_total counter",
                f"nbops_request_errors_total {errors}",
            ]
            lines += [
                "# HELP nbops_records_rejected_total Records refused by validation.",
                "# TYPE nbops_records_rejected_total counter",
                f"nbops_records_rejected_total {self.records_rejected}",
            ]
            lines += _histogram(
                "nbops_request_latency_seconds",
                "Request handling time.",
                LATENCY_BUCKETS,
                self.latency,
                self.latency_sum,
                self.latency_count,
            )
            lines += _histogram(
                "nbops_prediction_score",
                "Distribution of predicted scores.",
                SCORE_BUCKETS,
                self.scores,
                self.scores_sum,
                self.scores_count,
            )
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


KNOWN_PATHS = frozenset({"/predict", "/health", "/metadata", "/metrics", "/docs", "/openapi.json"})


def _histogram(
    name: str, help_text: str, bounds: tuple[float, ...], counts: list[int], total: float, n: int
) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    running = 0
    for b, c in zip(bounds, counts, strict=False):
        running += c
        out.append(f'{name}_bucket{{le="{b}"}} {running}')
    out.append(f'{name}_bucket{{le="+Inf"}} {n}')
    out += [f"{name}_sum {total}", f"{name}_count {n}"]
    return out


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
        properties[name] = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
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
    """

    openapi: Callable[[], dict[str, Any]]  # FastAPI's, set by create_app: for tools that introspect the app

    def __init__(self, api: Any, score: Any, metrics: Metrics, max_body_bytes: int) -> None:
        self.api = api
        self.score = score
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        if scope["path"] == "/predict" and scope["method"] == "POST":
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    await _respond(
                        send, 413, _problem(f"the body is larger than {self.max_body_bytes:,} bytes; split the batch")
                    )
                    self.metrics.observe(path, 413, time.perf_counter() - start)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            try:
                status, payload, scores, rejected = self.score(b"".join(chunks), auth)
            except Exception:  # a bug of ours, never a client's mistake: count it, hide internals
                status, payload, scores, rejected = 500, _problem("internal error"), [], 0
            await _respond(send, status, payload)
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


async def _respond(send: Any, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _problem(message: str, problems: list[dict[str, Any]] | None = None) -> bytes:
    # ensure_ascii: a client's field name may be any JSON string, lone surrogates included.
    return json.dumps({"error": message, "problems": problems or []}, ensure_ascii=True).encode()


def create_app(
    model: ScoringModel, *, token: str | None = None, log_dir: str | Path | None = None, max_records: int | None = None
) -> ScoringApp:
    """Build the ASGI app serving ``model``."""
    from fastapi.responses import PlainTextResponse

    try:
        from fastapi_offline import FastAPIOffline
    except ImportError as exc:
        raise ImportError(
            "the API's /docs needs the Swagger UI files of the 'fastapi-offline' package, which is not "
            "installed: install the wheel with its serve extra (pip install '<wheel>[serve]')"
        ) from exc

    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    expected = f"Bearer {token}".encode() if token else None
    max_records = max_records or int(os.environ.get(MAX_RECORDS_ENV, "10000"))
    folder = log_dir or os.environ.get(LOG_DIR_ENV)
    plog = PredictionLog(Path(folder)) if folder else None
    metrics = Metrics()
    version = model.version
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
        description=f"Scores records with model version {version} ({model.task_type}).",
        static_url=DOCS_ASSETS,
        redoc_url=None,
    )

    def score(raw: bytes, authorization: bytes) -> tuple[int, bytes, list[float], int]:
        if expected is not None and not hmac.compare_digest(authorization, expected):
            return (
                401,
                _problem(f"missing or wrong bearer token (set the Authorization header to 'Bearer <{TOKEN_ENV}>')"),
                [],
                0,
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return 400, _problem(f"the body is not valid JSON: {exc}"), [], 0
        status, payload, predictions, rejected = _score(body, model, max_records)
        if status == 200 and plog is not None:
            plog.append(
                {"ts": time.time(), "model_version": version, "records": body["records"], "predictions": predictions}
            )
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
                "description": "More records than allowed",
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

    @api.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render(version)

    @api.on_event("shutdown")
    def close_log() -> None:
        if plog is not None:
            plog.close()

    app = ScoringApp(api, score, metrics, max_body_bytes=max_records * 4096 + 65536)
    app.openapi = api.openapi
    return app


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
    if model.classes is not None:
        if not all(math.isfinite(s) for s in raw.ravel().tolist()):  # never expected: a model bug
            raise RuntimeError("non-finite prediction")
        predictions: list[Any] = multiclass_predictions(model, raw)
        # ensure_ascii: class names are the data's, any text at all
        return 200, json.dumps({"model_version": model.version, "predictions": predictions}).encode(), predictions, 0
    scores = raw.tolist()
    if not all(math.isfinite(s) for s in scores):  # never expected: a model bug, not a client error
        raise RuntimeError("non-finite prediction")
    return 200, json.dumps({"model_version": model.version, "predictions": scores}).encode(), scores, 0


def serve(model: ScoringModel, host: str = "127.0.0.1", port: int = 8000, log_dir: str | None = None) -> None:
    """Run the API with uvicorn (one worker; scale out with more processes behind a balancer).

    httptools and uvloop (in the ``[serve]`` extra) are used when installed: the pure-Python HTTP
    parser alone costs more than scoring a row.
    """
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(
        create_app(model, log_dir=log_dir),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=http,
        loop=loop,
    )
