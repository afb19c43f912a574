"""The REST API: FastAPI on uvicorn, one model version, sub-millisecond single-row predictions.

The request body is parsed and validated by the same validator as ``predict`` (so every client
mistake is a 4xx naming the record and the field, never a 500), records are encoded straight to the
feature matrix (no DataFrame per request), and LightGBM scores a row on one thread. Each request's
inputs and outputs are appended to a rotated JSON-lines prediction log that monitoring reads.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime,
# and the names they use (Request, Response) are imported inside create_app.
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import ScoringModel
from .schema import InputError, InputSchema

TOKEN_ENV = "NBOPS_API_TOKEN"
LOG_DIR_ENV = "NBOPS_PREDICTION_LOG"
MAX_RECORDS_ENV = "NBOPS_MAX_RECORDS"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


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
                lines.append(f'nbops_requests_total{{path="{_label(path)}",status="{status}",model_version="{version}"}} {n}')
            errors = sum(n for (_, status), n in self.requests.items() if status >= 400)
            lines += ["# HELP nbops_request_errors_total Requests answered with a 4xx or 5xx.", "# TYPE nbops_request_errors_total counter", f"nbops_request_errors_total {errors}"]
            lines += ["# HELP nbops_records_rejected_total Records refused by validation.", "# TYPE nbops_records_rejected_total counter", f"nbops_records_rejected_total {self.records_rejected}"]
            lines += _histogram("nbops_request_latency_seconds", "Request handling time.", LATENCY_BUCKETS, self.latency, self.latency_sum, self.latency_count)
            lines += _histogram("nbops_prediction_score", "Distribution of predicted scores.", SCORE_BUCKETS, self.scores, self.scores_sum, self.scores_count)
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


KNOWN_PATHS = frozenset({"/predict", "/health", "/metadata", "/metrics", "/docs", "/openapi.json", "/redoc"})


def _histogram(name: str, help_text: str, bounds: tuple[float, ...], counts: list[int], total: float, n: int) -> list[str]:
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


def create_app(model: ScoringModel, *, token: str | None = None, log_dir: str | Path | None = None, max_records: int | None = None) -> Any:
    """Build the FastAPI app serving ``model``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse, Response

    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    max_records = max_records or int(os.environ.get(MAX_RECORDS_ENV, "10000"))
    folder = log_dir or os.environ.get(LOG_DIR_ENV)
    plog = PredictionLog(Path(folder)) if folder else None
    metrics = Metrics()
    version = model.version
    body_schema = request_schema(model.schema, max_records)
    problem_schema = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "object"}}},
    }
    app = FastAPI(
        title=f"{model.metadata.get('package', 'nbops model')} scoring API",
        version=version,
        description=f"Scores records with model version {version} ({model.task_type}).",
    )

    def problem(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> Response:
        # ensure_ascii: a client's field name may be any JSON string, lone surrogates included.
        body = json.dumps({"error": message, "problems": problems or []}, ensure_ascii=True)
        return Response(body, status_code=status, media_type="application/json")

    def authorised(request: Request) -> bool:
        if not token:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:].encode("utf-8", "surrogateescape") if header.startswith("Bearer ") else b""
        return bool(given) and hmac.compare_digest(given, token.encode())

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug of ours: count it and answer 500 without leaking internals
            metrics.observe(request.url.path, 500, time.perf_counter() - start)
            return problem(500, "internal error")
        if request.url.path != "/predict":
            # Unknown paths share one series: a client must not be able to create unbounded labels.
            path = request.url.path if request.url.path in KNOWN_PATHS else "other"
            metrics.observe(path, response.status_code, time.perf_counter() - start)
        return response

    @app.post(
        "/predict",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
        responses={
            200: {"description": "Predictions, in the order of the records", "content": {"application/json": {"schema": {"type": "object", "properties": {"model_version": {"type": "string"}, "predictions": {"type": "array", "items": {"type": "number"}}}}}}},
            400: {"description": "Malformed JSON", "content": {"application/json": {"schema": problem_schema}}},
            401: {"description": "Missing or wrong bearer token", "content": {"application/json": {"schema": problem_schema}}},
            413: {"description": "More records than allowed", "content": {"application/json": {"schema": problem_schema}}},
            422: {"description": "Records that do not match the schema (each problem names the record and the field)", "content": {"application/json": {"schema": problem_schema}}},
        },
    )
    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        if not authorised(request):
            metrics.observe("/predict", 401, time.perf_counter() - start)
            return problem(401, f"missing or wrong bearer token (set the Authorization header to 'Bearer <{TOKEN_ENV}>')")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            metrics.observe("/predict", 400, time.perf_counter() - start)
            return problem(400, f"the body is not valid JSON: {exc}")
        status, response, scores, rejected = _score(body, model, max_records, problem)
        if status == 200 and plog is not None:
            plog.append({"ts": time.time(), "model_version": version, "records": body["records"], "predictions": scores})
        metrics.observe("/predict", status, time.perf_counter() - start, scores, rejected)
        return response

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": version}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return {**model.metadata, "input_schema": model.schema.to_dict()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render(version)

    @app.on_event("shutdown")
    def close_log() -> None:
        if plog is not None:
            plog.close()

    return app


def _score(body: Any, model: ScoringModel, max_records: int, problem: Any) -> tuple[int, Any, list[float], int]:
    from fastapi.responses import Response

    if not isinstance(body, dict) or set(body) != {"records"}:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        return 422, problem(422, f"expected an object {{\"records\": [...]}}, found {keys}"), [], 0
    records = body["records"]
    if not isinstance(records, list) or not records:
        return 422, problem(422, "'records' must be a non-empty list of objects"), [], 0
    if len(records) > max_records:
        return 413, problem(413, f"{len(records):,} records is more than the {max_records:,} allowed per request; split the batch"), [], len(records)
    try:
        model.schema.check_records(records)
    except InputError as exc:
        details = [{"record": p.record, "field": p.field, "problem": p.message} for p in exc.problems]
        return 422, problem(422, str(exc), details), [], len({p.record for p in exc.problems})
    scores = model.predict_records(records, validated=True).tolist()
    if not all(math.isfinite(s) for s in scores):  # never expected: a model bug, not a client error
        raise RuntimeError("non-finite prediction")
    payload = json.dumps({"model_version": model.version, "predictions": scores})
    return 200, Response(payload, media_type="application/json"), scores, 0


def serve(model: ScoringModel, host: str = "127.0.0.1", port: int = 8000, log_dir: str | None = None) -> None:
    """Run the API with uvicorn (one worker; scale out with more processes behind a balancer)."""
    import uvicorn

    uvicorn.run(create_app(model, log_dir=log_dir), host=host, port=port, log_level="warning", access_log=False)
