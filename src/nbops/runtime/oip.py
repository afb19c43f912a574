"""The Open Inference Protocol (KServe V2) beside /predict: what KServe, Seldon/MLServer and Triton
clients speak (tritonclient's ``InferenceServerClient``, MLServer's and KServe's codecs).

Paths (``{name}`` is the wheel's import name, e.g. ``credit_risk_model``; ``{version}`` the registry
version, ``v0003``, or its number, ``3``): ``GET /v2`` (server metadata), ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}`` (model metadata), ``/v2/models/{name}/ready`` and
``POST /v2/models/{name}/infer``, each also as ``/v2/models/{name}/versions/{version}/...``.

An inference request carries the rows in one of two tabular shapes:

- one input per column (what MLServer's ``PandasCodec`` sends, request parameter ``content_type: "pd"``):
  shape ``[N]`` or ``[N, 1]``; a numeric feature as FP64, FP32, INT64, INT32 (any float or integer
  type) or BOOL, a categorical feature as BYTES (text; an integer type for whole-number levels). A
  missing value is ``null`` in JSON (NaN for a float), or an empty string for a categorical feature
  without an empty level (binary BYTES have no null). Inputs named like the identifier, time, target
  or ignored columns are accepted too; the pass-through ones (identifier, time) are echoed as outputs.
- one ``[N, F]`` tensor of a numeric type, its columns the features in the model metadata's order
  (request parameter ``content_type: "np"``, or a single two-dimensional input of another name);
  only for a model whose features are all numeric (a category is text, which such a tensor cannot carry).

Every row then goes through the validator and the scoring path of /predict (:meth:`InputSchema.check_records`,
``predict_records``), so the predictions are /predict's and the wheel's ``predict``'s, bit for bit.

Outputs, as MLServer's scikit-learn runtime names them: ``predict`` is /predict's number (binary: the
positive class's probability, FP64 ``[N]``, as mlserver-lightgbm's ``predict``; regression: the
estimate) or, multiclass, the most likely class (BYTES ``[N]``, INT64 for whole-number classes);
``predict_proba`` (classifiers) is FP64 ``[N, 2]`` for a binary model (``[1 - p, p]``, scikit-learn's
``predict_proba``) and ``[N, C]`` for a multiclass one, its columns the classes in the metadata's
order. Without ``outputs`` in the request every output is answered. Binary tensor data (Triton's
``binary_tensor_data`` extension, tritonclient's default) is accepted and answered as requested.

A client mistake is a 4xx ``{"error": "..."}`` naming the input: 404 for an unknown model or version,
400 for a malformed request, a wrong datatype or shape, a missing or unknown input, or a value the
schema refuses (``problems`` then lists each row and input), 413 beyond the records allowed.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .model import ScoringModel
from .schema import FieldSpec, InputError

# Little-endian numpy types of the protocol's datatypes (binary tensor data is little-endian).
NUMERIC_DATATYPES = {
    "BOOL": "<?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INTEGER_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
DATATYPES = frozenset({*NUMERIC_DATATYPES, "BYTES"})
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
EXTENSIONS = ["binary_tensor_data"]
_VERSION_NUMBER = re.compile(r"v0*(\d+)")


class ProtocolError(Exception):
    """A request the protocol cannot answer: its HTTP status and the message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems


@dataclass(frozen=True)
class Route:
    """A /v2 request: what it asks for (``kind``), and of which model and version."""

    kind: str  # "server" | "live" | "ready" | "model" | "model_ready" | "infer" | "unknown"
    method: str  # the HTTP method the kind takes
    name: str = ""
    version: str = ""

    @property
    def label(self) -> str:
        """The path as the metrics count it: the route, never a client's model name or version."""
        versioned = "/versions/{version}" if self.version else ""
        return {
            "server": "/v2",
            "live": "/v2/health/live",
            "ready": "/v2/health/ready",
            "model": f"/v2/models/{{name}}{versioned}",
            "model_ready": f"/v2/models/{{name}}{versioned}/ready",
            "infer": f"/v2/models/{{name}}{versioned}/infer",
        }.get(self.kind, "other")


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def route(path: str) -> Route:
    """The route of a /v2 ``path`` (``kind`` "unknown" for a path the protocol does not have)."""
    parts = path.rstrip("/").split("/")[2:]  # after "", "v2"
    if not parts:
        return Route("server", "GET")
    if parts in (["health", "live"], ["health", "ready"]):
        return Route(parts[1], "GET")
    if len(parts) < 2 or parts[0] != "models" or not parts[1]:
        return Route("unknown", "")
    name, rest, version = parts[1], parts[2:], ""
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if rest == []:
        return Route("model", "GET", name, version)
    if rest == ["ready"]:
        return Route("model_ready", "GET", name, version)
    if rest == ["infer"]:
        return Route("infer", "POST", name, version)
    return Route("unknown", "", name, version)


@dataclass
class Inference:
    """A scored inference request: the answer's body and headers, and what the server records."""

    body: bytes
    headers: list[tuple[bytes, bytes]]
    records: list[dict[str, Any]]  # the rows as /predict would have received them
    scores: np.ndarray  # the booster's output: (rows,) or (rows, classes)


@dataclass
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]  # flat, row-major
    parameters: dict[str, Any] = field(default_factory=dict)


class OpenInference:
    """The V2 protocol for one model: its metadata, and inference requests decoded into records."""

    def __init__(self, model: ScoringModel, max_records: int) -> None:
        self.model = model
        self.max_records = max_records
        self.name = str(model.metadata.get("package") or "model")
        self.version = model.version
        number = _VERSION_NUMBER.fullmatch(self.version)
        self.versions = {self.version, number.group(1)} if number else {self.version}
        schema = model.schema
        self.fields = list(schema.fields)
        self.by_name: dict[str, FieldSpec] = {f.name: f for f in self.fields}
        self.passthrough = list(schema.passthrough)
        self.extra = set(schema.passthrough) | schema.ignored_names
        self.all_numeric = all(f.kind == "numeric" for f in self.fields)
        self.empty_levels = {f.name for f in self.fields if f.categories is not None and "" in f.categories}
        self.classes = model.classes
        self.outputs = [PREDICT] if model.task_type == "regression" else [PREDICT, PREDICT_PROBA]
        self.metadata_body = _dumps(self.model_metadata())

    # -- metadata --------------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": f"{self.name} (nbops scoring service)", "version": self.version, "extensions": EXTENSIONS}

    def model_metadata(self) -> dict[str, Any]:
        """The model's inputs (one per feature column, in the order of an ``[N, F]`` tensor's columns)
        and outputs, with their datatypes and shapes (-1: the number of rows)."""
        inputs = []
        for f in self.fields:
            tensor: dict[str, Any] = {"name": f.name, "datatype": "FP64" if f.kind == "numeric" else "BYTES"}
            tensor["shape"] = [-1]
            tensor["parameters"] = {"content_type": "np" if f.kind == "numeric" else "str"}
            inputs.append(tensor)
        outputs: list[dict[str, Any]] = []
        if self.classes is None:
            outputs.append({"name": PREDICT, "datatype": "FP64", "shape": [-1]})
            if self.model.task_type != "regression":
                outputs.append(
                    {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, 2], "parameters": {"classes": [0, 1]}}
                )
        else:
            integer = _integer_classes(self.classes)
            outputs.append({"name": PREDICT, "datatype": "INT64" if integer else "BYTES", "shape": [-1]})
            outputs.append(
                {
                    "name": PREDICT_PROBA,
                    "datatype": "FP64",
                    "shape": [-1, len(self.classes)],
                    "parameters": {"classes": list(self.classes)},
                }
            )
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "lightgbm",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"content_type": "pd", "task_type": self.model.task_type},
        }

    def check_model(self, r: Route) -> None:
        """Raise a 404 unless ``r`` names this model (and, if given, its version)."""
        if r.name != self.name:
            raise ProtocolError(
                404, f"unknown model {r.name[:100]!r}: this server serves {self.name!r} (GET /v2/models/{self.name})"
            )
        if r.version and r.version not in self.versions:
            raise ProtocolError(
                404,
                f"model {self.name!r} has no version {r.version[:40]!r}: it serves version {self.version} "
                f"(/v2/models/{self.name}/versions/{self.version}, or without /versions/...)",
            )

    def get(self, r: Route) -> bytes:
        """The answer of a GET route (raises :class:`ProtocolError` for an unknown model)."""
        if r.kind == "server":
            return _dumps(self.server_metadata())
        if r.kind == "live":
            return b'{"live":true}'
        if r.kind == "ready":
            return b'{"ready":true}'
        self.check_model(r)
        if r.kind == "model_ready":
            return _dumps({"name": self.name, "ready": True})
        return self.metadata_body

    # -- inference -------------------------------------------------------------------------------

    def infer(self, raw: bytes, header_length: bytes | None, r: Route) -> Inference:
        """Decode, validate and score an inference request body; raises :class:`ProtocolError`."""
        self.check_model(r)
        request, binary = _split(raw, header_length)
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise ProtocolError(400, f"the request's 'id' must be a string, found {type(request_id).__name__}")
        parameters = _parameters(request.get("parameters"), "the request")
        content_type = parameters.get("content_type")
        if content_type not in (None, "pd", "np"):
            raise ProtocolError(
                400,
                f"request content_type {str(content_type)[:40]!r} is not supported: send 'pd' (one input per "
                "column) or 'np' (one [N, F] tensor of the features)",
            )
        tensors = _tensors(request.get("inputs"), binary)
        if content_type == "np" or (
            content_type is None
            and len(tensors) == 1
            and len(tensors[0].shape) == 2
            and tensors[0].name not in self.by_name
            and tensors[0].name not in self.extra
        ):
            records, echoed = self._matrix_records(tensors), list[_Tensor]()
        else:
            records, echoed = self._column_records(tensors)
        try:
            self.model.schema.check_records(records)
        except InputError as exc:
            problems = [{"input": p.field, "row": p.record, "problem": p.message} for p in exc.problems]
            shown = "; ".join(f"input '{p.field}', row {p.record}: {p.message}" for p in exc.problems[:5])
            more = f" (and {exc.total - 5} more)" if exc.total > 5 else ""
            raise ProtocolError(400, f"{exc.total} problem(s) in the inputs: {shown}{more}", problems) from None
        wanted = self._requested_outputs(request.get("outputs"), parameters, echoed)
        scores = self.model.predict_records(records, validated=True)
        if not np.isfinite(scores).all():  # never expected: a model bug, not a client error
            raise RuntimeError("non-finite prediction")
        answer: dict[str, Any] = {
            "model_name": self.name,
            "model_version": self.version,
            "id": request_id if request_id is not None else str(uuid.uuid4()),
            "outputs": [],
        }
        buffers: list[bytes] = []
        by_echo = {t.name: t for t in echoed}
        for name, binary_out in wanted:
            if name in by_echo:
                t = by_echo[name]
                answer["outputs"].append(
                    {"name": name, "datatype": t.datatype, "shape": t.shape, "data": [_json_value(v) for v in t.values]}
                )
                continue
            datatype, shape, values = self._output(name, scores)
            tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
            if binary_out:
                data = _binary(datatype, values)
                tensor["parameters"] = {"binary_data_size": len(data)}
                buffers.append(data)
            else:
                tensor["data"] = values.ravel().tolist() if isinstance(values, np.ndarray) else values
            answer["outputs"].append(tensor)
        head = _dumps(answer)
        if not buffers:
            return Inference(head, [], records, scores)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(len(head)).encode()),
        ]
        return Inference(head + b"".join(buffers), headers, records, scores)

    def _output(self, name: str, scores: np.ndarray) -> tuple[str, list[int], Any]:
        rows = int(scores.shape[0])
        if self.classes is None:
            if name == PREDICT:
                return "FP64", [rows], scores
            return "FP64", [rows, 2], np.column_stack([1.0 - scores, scores])
        if name == PREDICT_PROBA:
            return "FP64", [rows, len(self.classes)], scores
        picked = [self.classes[i] for i in np.argmax(scores, axis=1).tolist()]
        if _integer_classes(self.classes):
            return "INT64", [rows], picked
        return "BYTES", [rows], [str(c) for c in picked]

    def _requested_outputs(
        self, outputs: Any, parameters: Mapping[str, Any], echoed: Sequence[_Tensor]
    ) -> list[tuple[str, bool]]:
        """(output name, as binary data) for each output to answer, in the request's order."""
        binary_default = parameters.get("binary_data_output") is True
        available = [*self.outputs, *(t.name for t in echoed)]
        if outputs is None:
            return [(name, binary_default) for name in available]
        if not isinstance(outputs, list):
            raise ProtocolError(400, f"'outputs' must be a list of {{\"name\": ...}}, found {type(outputs).__name__}")
        wanted = []
        for i, out in enumerate(outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise ProtocolError(400, f"outputs[{i}] must be an object with a 'name' (text)")
            name = out["name"]
            if name not in available:
                why = (
                    f"a {self.model.task_type} model has no {PREDICT_PROBA}; "
                    if name == PREDICT_PROBA and self.model.task_type == "regression"
                    else ""
                )
                raise ProtocolError(
                    400, f"unknown output {name[:100]!r}: {why}this model answers {', '.join(available)}"
                )
            params = _parameters(out.get("parameters"), f"output '{name}'")
            binary = params.get("binary_data", binary_default)
            wanted.append((name, binary is True))
        return wanted

    # -- the two tabular shapes ------------------------------------------------------------------

    def _matrix_records(self, tensors: list[_Tensor]) -> list[dict[str, Any]]:
        """The rows of one [N, F] numeric tensor, its columns the features in the schema's order."""
        if len(tensors) != 1:
            names = ", ".join(repr(t.name) for t in tensors)
            raise ProtocolError(
                400,
                f"content_type 'np' takes one [N, {len(self.fields)}] tensor of the features, found {len(tensors)} "
                f"inputs ({names}); send one input per column with content_type 'pd' instead",
            )
        t = tensors[0]
        order = ", ".join(f.name for f in self.fields)
        if not self.all_numeric:
            text = ", ".join(f.name for f in self.fields if f.kind != "numeric")
            raise ProtocolError(
                400,
                f"input {t.name!r}: an [N, F] tensor carries numbers only, and this model's features include "
                f"categories ({text}); send one input per column (FP64 for numbers, BYTES for categories), as "
                f"GET /v2/models/{self.name} lists them",
            )
        if len(t.shape) != 2 or t.shape[1] != len(self.fields):
            raise ProtocolError(
                400,
                f"input {t.name!r} has shape {t.shape}: expected [N, {len(self.fields)}], one column per feature in "
                f"this order: {order}",
            )
        if t.datatype not in NUMERIC_DATATYPES:
            raise ProtocolError(400, f"input {t.name!r} is {t.datatype}: an [N, F] tensor of features is FP64")
        rows = self._rows(t)
        values = [_number(t, v, i) for i, v in enumerate(t.values)]
        width = len(self.fields)
        fields = [f.name for f in self.fields]
        return [dict(zip(fields, values[i * width : (i + 1) * width], strict=True)) for i in range(rows)]

    def _column_records(self, tensors: list[_Tensor]) -> tuple[list[dict[str, Any]], list[_Tensor]]:
        """The rows of one input per column: (records, the pass-through inputs to echo)."""
        rows: int | None = None
        columns: dict[str, list[Any]] = {}
        echoed: list[_Tensor] = []
        first = ""
        for t in tensors:
            spec = self.by_name.get(t.name)
            if spec is None and t.name not in self.extra:
                expected = ", ".join(f.name for f in self.fields)
                also = f"; also accepted: {', '.join(sorted(self.extra))}" if self.extra else ""
                hint = (
                    f" (an [N, {len(self.fields)}] tensor of all the features needs request parameter "
                    "content_type 'np')"
                    if len(t.shape) == 2 and self.all_numeric
                    else ""
                )
                raise ProtocolError(
                    400, f"unknown input {t.name[:100]!r}: the model's inputs are {expected}{also}{hint}"
                )
            if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1):
                raise ProtocolError(400, f"input {t.name!r} has shape {t.shape}: a column is [N] or [N, 1] (N rows)")
            n = self._rows(t)
            if rows is None:
                rows, first = n, t.name
            elif n != rows:
                raise ProtocolError(
                    400,
                    f"input {t.name!r} has {n} rows but input {first!r} has {rows}: every column has one value a row",
                )
            if spec is None:
                if t.name in self.passthrough:  # echoed as an output, and in the prediction log
                    echoed.append(t)
                    columns[t.name] = _texts(t) if t.datatype == "BYTES" else t.values
                continue  # the target or an ignored column: accepted, never read
            columns[t.name] = self._column(t, spec)
        missing = [f for f in self.fields if f.name not in columns]
        if missing:
            shown = ", ".join(f"'{f.name}' ({'FP64' if f.kind == 'numeric' else 'BYTES'})" for f in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ProtocolError(
                400,
                f"missing input{'s' if len(missing) > 1 else ''} {shown}{more}: the model needs one input per feature "
                f"(GET /v2/models/{self.name} lists them); send null (or NaN) for an unknown value",
            )
        assert rows is not None
        names = list(columns)
        data = [columns[n] for n in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*data, strict=True)], echoed

    def _rows(self, t: _Tensor) -> int:
        rows = t.shape[0]
        if rows < 1:
            raise ProtocolError(400, f"input {t.name!r} has no rows (shape {t.shape})")
        if rows > self.max_records:
            raise ProtocolError(
                413, f"{rows:,} rows is more than the {self.max_records:,} allowed per request; split the batch"
            )
        return rows

    def _column(self, t: _Tensor, spec: FieldSpec) -> list[Any]:
        """A column's values as /predict's JSON would carry them (numbers, text, None)."""
        if spec.kind == "numeric":
            if t.datatype not in NUMERIC_DATATYPES:
                raise ProtocolError(
                    400,
                    f"input {t.name!r} is a number: send FP64 (or another float or integer type, or BOOL), "
                    f"found {t.datatype}",
                )
            return [_number(t, v, i) for i, v in enumerate(t.values)]
        if t.datatype == "BYTES":
            values = _texts(t)
            if t.name in self.empty_levels:
                return values
            return [None if v == "" else v for v in values]  # binary BYTES have no null: "" is a missing category
        if t.datatype in INTEGER_TYPES:  # whole-number levels sent as integers: compared as their text
            return [None if v is None else str(_integer(t, v, i)) for i, v in enumerate(t.values)]
        raise ProtocolError(400, f"input {t.name!r} is a category (text): send BYTES, found {t.datatype}")


# -- decoding helpers ----------------------------------------------------------------------------


def _split(raw: bytes, header_length: bytes | None) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and the binary tensor data after it."""
    if header_length is not None:
        text = header_length.decode("latin-1").strip()
        if not text.isdigit() or int(text) > len(raw):
            raise ProtocolError(
                400,
                f"Inference-Header-Content-Length {text[:20]!r} is not the length of the JSON header of this "
                f"{len(raw):,}-byte body",
            )
        head, binary = raw[: int(text)], raw[int(text) :]
    else:
        head, binary = raw, b""
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        hint = (
            " (a body with binary tensor data needs the Inference-Header-Content-Length header)"
            if header_length is None
            else ""
        )
        raise ProtocolError(400, f"the inference request is not valid JSON: {str(exc)[:200]}{hint}") from None
    if not isinstance(request, dict):
        raise ProtocolError(
            400, f'expected an inference request {{"inputs": [...]}}, found a JSON {type(request).__name__}'
        )
    return request, binary


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(400, f"the parameters of {where} must be an object, found {type(value).__name__}")
    return value


def _tensors(inputs: Any, binary: bytes) -> list[_Tensor]:
    """Every input tensor, its data flat (binary tensor data decoded, in the inputs' order)."""
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(400, '\'inputs\' must be a non-empty list of tensors {"name", "shape", "datatype", "data"}')
    out: list[_Tensor] = []
    seen: set[str] = set()
    offset = 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(400, f"inputs[{i}] must be an object with a 'name' (text)")
        name = item["name"]
        if name in seen:
            raise ProtocolError(400, f"input {name[:100]!r} is given twice")
        seen.add(name)
        datatype, shape = item.get("datatype"), item.get("shape")
        if datatype not in DATATYPES:
            raise ProtocolError(
                400,
                f"input {name[:100]!r}: datatype {str(datatype)[:20]!r} is not one of the protocol's "
                f"({', '.join(sorted(DATATYPES))})",
            )
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape)
        ):
            raise ProtocolError(400, f"input {name[:100]!r}: 'shape' must be a list of sizes (whole numbers >= 0)")
        parameters = _parameters(item.get("parameters"), f"input '{name[:100]}'")
        size = math.prod(shape)
        if "binary_data_size" in parameters:
            length = parameters["binary_data_size"]
            if not isinstance(length, int) or isinstance(length, bool) or length < 0 or offset + length > len(binary):
                raise ProtocolError(
                    400,
                    f"input {name[:100]!r}: binary_data_size {str(length)[:20]} goes beyond the "
                    f"{len(binary):,} bytes of binary data after the JSON header",
                )
            values = _from_binary(name, datatype, binary[offset : offset + length], size)
            offset += length
        else:
            if "data" not in item:
                raise ProtocolError(400, f"input {name[:100]!r} has no 'data' (nor binary_data_size)")
            values = _flatten(item["data"])
            if len(values) != size:
                raise ProtocolError(
                    400, f"input {name[:100]!r}: shape {shape} holds {size:,} values, its data has {len(values):,}"
                )
        out.append(_Tensor(name, datatype, shape, values, parameters))
    if offset != len(binary):
        raise ProtocolError(
            400, f"{len(binary) - offset:,} bytes of binary data after the JSON header belong to no input"
        )
    return out


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _from_binary(name: str, datatype: str, data: bytes, size: int) -> list[Any]:
    if datatype != "BYTES":
        dtype = np.dtype(NUMERIC_DATATYPES[datatype])
        if len(data) != size * dtype.itemsize:
            raise ProtocolError(
                400,
                f"input {name[:100]!r}: {len(data):,} bytes of {datatype} data, but its shape holds {size:,} values "
                f"of {dtype.itemsize} bytes",
            )
        values: list[Any] = np.frombuffer(data, dtype=dtype).tolist()
        return values
    out: list[Any] = []
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            raise ProtocolError(400, f"input {name[:100]!r}: its BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", data, position)
        position += 4
        if position + length > len(data):
            raise ProtocolError(400, f"input {name[:100]!r}: element {len(out)} of its BYTES data is cut short")
        out.append(data[position : position + length])
        position += length
    if len(out) != size:
        raise ProtocolError(
            400, f"input {name[:100]!r}: its shape holds {size:,} values, its BYTES data has {len(out):,}"
        )
    return out


def _where(t: _Tensor, i: int) -> str:
    return f"input {t.name!r} ({t.datatype}), element {i}"


def _number(t: _Tensor, value: Any, i: int) -> Any:
    """A numeric input's element as /predict takes it (a float, an int, or None for missing)."""
    if value is None:
        return None
    if t.datatype == "BOOL":
        if not isinstance(value, bool):
            raise ProtocolError(400, f"{_where(t, i)} is {_shown(value)}, not true or false")
        return 1.0 if value else 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(400, f"{_where(t, i)} is {_shown(value)}, not a number")
    if t.datatype in INTEGER_TYPES and not isinstance(value, int):
        raise ProtocolError(400, f"{_where(t, i)} is {_shown(value)}, not a whole number")
    return value


def _integer(t: _Tensor, value: Any, i: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(400, f"{_where(t, i)} is {_shown(value)}, not a whole number")
    return value


def _text(t: _Tensor, value: bytes, i: int) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, f"{_where(t, i)} is not UTF-8 text") from None


def _texts(t: _Tensor) -> list[Any]:
    """A BYTES input's elements as text (binary elements decoded as UTF-8); with content_type
    'pd_json' (MLServer's PandasCodec, for a text column with missing values) each element is JSON."""
    if t.parameters.get("content_type") == "pd_json":
        return [_json_element(t, v, i) for i, v in enumerate(t.values)]
    return [_text(t, v, i) if isinstance(v, bytes) else v for i, v in enumerate(t.values)]


def _json_element(t: _Tensor, value: Any, i: int) -> Any:
    text = _text(t, value, i) if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise ProtocolError(400, f"{_where(t, i)} is {_shown(value)}: content_type 'pd_json' elements are JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(400, f"{_where(t, i)} is {_shown(text)}, not JSON (content_type 'pd_json')") from None


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def _json_value(value: Any) -> Any:
    """A value echoed in JSON: text for bytes, null for NaN."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _binary(datatype: str, values: Any) -> bytes:
    """An output tensor as binary tensor data: little-endian, row-major; BYTES length-prefixed."""
    if datatype == "BYTES":
        parts = []
        for v in values:
            data = str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=NUMERIC_DATATYPES[datatype]).tobytes()


def _integer_classes(classes: Sequence[Any]) -> bool:
    return all(isinstance(c, int) and not isinstance(c, bool) for c in classes)


def _dumps(value: Any) -> bytes:
    # ensure_ascii: names and classes are the data's, any text at all; allow_nan=False: strict JSON.
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
