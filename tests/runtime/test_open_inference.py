"""The Open Inference Protocol (KServe V2) in process: routes, the two tabular shapes a request carries
(JSON or binary tensor data), client mistakes named by input, and the service's token, limits and
metrics on /v2 as on /predict. (Real clients on real uvicorn: tests/deploy/test_open_inference.py.)

Expected predictions are always the model's own ``predict`` on the same rows, never copied numbers."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbops.runtime import oip
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import FieldSpec, InputSchema
from nbops.runtime.serve import Limits, create_app
from tests.support import TinyModel, train_tiny_booster
from tests.support.asgi import asgi_request
from tests.support.multiclass import MulticlassModel, train_multiclass_model

NAME = "credit_risk_model"
INFER = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def model(tiny_model: TinyModel) -> ScoringModel:
    return ScoringModel.from_folder(tiny_model.version.path)


@pytest.fixture(scope="module")
def rows(tiny_model: TinyModel) -> pd.DataFrame:
    """Test rows as the training table has them (identifier, month and target included)."""
    return pd.read_parquet(tiny_model.splits["test"]).head(12).reset_index(drop=True)


@pytest.fixture(scope="module")
def numeric_model(tiny_model: TinyModel) -> ScoringModel:
    """A binary model whose features are all numbers (so an [N, F] tensor can carry a row)."""
    from nbops.data.ingest import simulator_schema

    train = pd.read_parquet(tiny_model.splits["train"])
    numeric = [c for c in simulator_schema().features if c.kind == "numeric"]
    booster, transform = train_tiny_booster(train, [c.name for c in numeric], [], "default", 5)
    fields = [FieldSpec(c.name, "numeric", c.nullable, c.min, c.max) for c in numeric]
    schema = InputSchema(fields, ["application_id", "month"], ignored=["default"])
    return ScoringModel(booster, transform, schema, {"version": "v0007", "package": "numbers_model"})


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("oip-multiclass"), 1200)


def column_inputs(model: ScoringModel, df: pd.DataFrame, *, with_extra: bool = False) -> list[dict[str, Any]]:
    """One JSON input per feature column, as the model metadata describes them (null: missing)."""
    names = [f.name for f in model.schema.fields]
    if with_extra:
        names += [n for n in [*model.schema.passthrough, *model.schema.ignored] if n in df.columns]
    out = []
    for name in names:
        spec = next((f for f in model.schema.fields if f.name == name), None)
        column = df[name].astype(str) if pd.api.types.is_datetime64_any_dtype(df[name]) else df[name]
        values = [None if pd.isna(v) else v for v in column.astype(object).tolist()]
        if spec is not None and spec.kind == "numeric":
            datatype = "FP64"
        elif pd.api.types.is_numeric_dtype(column):
            datatype = "INT64"
            values = [None if v is None else int(v) for v in values]
        else:
            datatype = "BYTES"
        out.append({"name": name, "datatype": datatype, "shape": [len(df)], "data": values})
    return out


def infer(model: ScoringModel, request: dict[str, Any] | bytes, header: int | None = None) -> oip.Inference:
    raw = request if isinstance(request, bytes) else json.dumps(request).encode()
    name = str(model.metadata.get("package") or "model")
    return oip.OpenInference(model, 1000).infer(
        raw, None if header is None else str(header).encode(), oip.Route("infer", "POST", name)
    )


def outputs(done: oip.Inference) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in json.loads(done.body)["outputs"]}


def refused(model: ScoringModel, request: dict[str, Any] | bytes, header: int | None = None) -> oip.ProtocolError:
    with pytest.raises(oip.ProtocolError) as caught:
        infer(model, request, header)
    return caught.value


# --- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "method", "label"),
    [
        ("/v2", "server", "GET", "/v2"),
        ("/v2/", "server", "GET", "/v2"),
        ("/v2/health/live", "live", "GET", "/v2/health/live"),
        ("/v2/health/ready", "ready", "GET", "/v2/health/ready"),
        ("/v2/models/m", "model", "GET", "/v2/models/{name}"),
        ("/v2/models/m/ready", "model_ready", "GET", "/v2/models/{name}/ready"),
        ("/v2/models/m/infer", "infer", "POST", "/v2/models/{name}/infer"),
        ("/v2/models/m/versions/3", "model", "GET", "/v2/models/{name}/versions/{version}"),
        ("/v2/models/m/versions/3/ready", "model_ready", "GET", "/v2/models/{name}/versions/{version}/ready"),
        ("/v2/models/m/versions/3/infer", "infer", "POST", "/v2/models/{name}/versions/{version}/infer"),
        ("/v2/models/m/explain", "unknown", "", "other"),
        ("/v2/repository/index", "unknown", "", "other"),
    ],
)
def test_every_path_of_the_protocol_is_routed_and_counted_by_its_template(
    path: str, kind: str, method: str, label: str
) -> None:
    r = oip.route(path)
    assert (r.kind, r.method, r.label) == (kind, method, label), r
    assert oip.is_v2(path) and not oip.is_v2("/v2x") and not oip.is_v2("/predict")


# --- the column shape ----------------------------------------------------------------------------


def test_one_json_input_per_column_scores_as_predict_with_the_request_id_echoed(
    model: ScoringModel, rows: pd.DataFrame
) -> None:
    done = infer(model, {"id": "req-7", "inputs": column_inputs(model, rows)})
    answer = json.loads(done.body)
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (NAME, model.version, "req-7")
    got = outputs(done)
    expected = model.predict(rows)
    assert got["predict"]["datatype"] == "FP64" and got["predict"]["shape"] == [len(rows)]
    assert np.array_equal(np.array(got["predict"]["data"]), expected)
    proba = np.array(got["predict_proba"]["data"]).reshape(got["predict_proba"]["shape"])
    assert proba.shape == (len(rows), 2) and np.array_equal(proba[:, 1], expected)
    assert np.array_equal(proba[:, 0], 1.0 - expected)
    assert done.headers == [], "a JSON request without binary outputs is answered in JSON"


def test_columns_of_the_training_table_are_accepted_and_the_identifiers_echoed(
    model: ScoringModel, rows: pd.DataFrame
) -> None:
    inputs = column_inputs(model, rows, with_extra=True)
    sent = {i["name"] for i in inputs}
    assert {"application_id", "month", "default"} <= sent, sent
    for tensor in inputs:  # MLServer's PandasCodec sends [N, 1] columns
        tensor["shape"] = [len(rows), 1]
    done = infer(model, {"inputs": inputs, "parameters": {"content_type": "pd"}})
    got = outputs(done)
    assert np.array_equal(np.array(got["predict"]["data"]), model.predict(rows))
    assert got["application_id"]["data"] == rows["application_id"].tolist()
    assert "default" not in got, "the target is accepted and ignored, never echoed"
    assert all("default" not in r for r in done.records), "the target never reaches the logged records"


def test_nested_data_and_binary_tensor_data_give_the_same_predictions(model: ScoringModel, rows: pd.DataFrame) -> None:
    expected = model.predict(rows)
    inputs = column_inputs(model, rows)
    nested = [{**t, "shape": [len(rows), 1], "data": [[v] for v in t["data"]]} for t in inputs]
    assert np.array_equal(np.array(outputs(infer(model, {"inputs": nested}))["predict"]["data"]), expected)
    header: list[dict[str, Any]] = []
    buffers = []
    for t in inputs:  # Triton's binary tensor data: little-endian numbers; BYTES length-prefixed, "" missing
        if t["datatype"] == "BYTES":
            data = b"".join(struct.pack("<I", len(s)) + s for s in ((v or "").encode() for v in t["data"]))
        else:
            data = np.array([np.nan if v is None else v for v in t["data"]], dtype="<f8").tobytes()
        header.append(
            {k: t[k] for k in ("name", "datatype", "shape")} | {"parameters": {"binary_data_size": len(data)}}
        )
        buffers.append(data)
    head = json.dumps({"inputs": header, "parameters": {"binary_data_output": True}}).encode()
    done = infer(model, head + b"".join(buffers), header=len(head))
    answer_head = int(dict(done.headers)[b"inference-header-content-length"])
    meta = json.loads(done.body[:answer_head])
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    predict = np.frombuffer(done.body[answer_head : answer_head + sizes[0]], dtype="<f8")
    assert np.array_equal(predict, expected), "binary in, binary out: the same doubles"
    assert dict(done.headers)[b"content-type"] == b"application/octet-stream"
    assert answer_head + sum(sizes) == len(done.body)


def test_mlserver_pd_json_elements_and_integer_levels_are_decoded() -> None:
    """MLServer marks a text column with missing values 'pd_json' (each element JSON); a category
    of whole-number levels may come as INT64."""
    fields = [FieldSpec("x", "numeric"), FieldSpec("grade", "categorical", categories=["1", "2"])]
    schema = InputSchema(fields)
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "grade": ["1", "2", None, "1"]})
    booster, transform = train_tiny_booster(
        pd.concat([df] * 20, ignore_index=True).assign(y=[0, 1] * 40), ["x"], ["grade"], "y", 3
    )
    m = ScoringModel(booster, transform, schema, {"version": "v0001", "package": "grades_model"})
    expected = m.predict(df)
    x = {"name": "x", "datatype": "FP64", "shape": [4], "data": [1.0, 2.0, 3.0, 4.0]}
    as_json = ['"1"', '"2"', "null", '"1"']
    grade = {
        "name": "grade",
        "datatype": "BYTES",
        "shape": [4],
        "data": as_json,
        "parameters": {"content_type": "pd_json"},
    }
    assert np.array_equal(outputs(infer(m, {"inputs": [x, grade]}))["predict"]["data"], expected)
    whole = {"name": "grade", "datatype": "INT64", "shape": [4], "data": [1, 2, None, 1]}
    assert np.array_equal(outputs(infer(m, {"inputs": [x, whole]}))["predict"]["data"], expected)


def test_a_multiclass_model_answers_its_most_likely_class_and_a_probability_per_class(
    multiclass: MulticlassModel,
) -> None:
    m = multiclass.scoring_model()
    rows = multiclass.test.head(30).reset_index(drop=True)
    got = outputs(infer(m, {"inputs": column_inputs(m, rows)}))
    assert got["predict"]["datatype"] == "BYTES" and got["predict"]["data"] == m.predict_label(rows).tolist()
    proba = np.array(got["predict_proba"]["data"]).reshape(got["predict_proba"]["shape"])
    assert proba.shape == (len(rows), len(m.classes or [])) and np.array_equal(proba, m.predict(rows).to_numpy())
    meta = oip.OpenInference(m, 10).model_metadata()
    assert meta["outputs"][1]["parameters"]["classes"] == m.classes


# --- the [N, F] shape ----------------------------------------------------------------------------


def test_one_matrix_of_the_features_in_the_metadata_order_scores_as_predict(
    numeric_model: ScoringModel, rows: pd.DataFrame
) -> None:
    meta = oip.OpenInference(numeric_model, 10).model_metadata()
    order = [t["name"] for t in meta["inputs"]]
    assert order == numeric_model.schema.names
    matrix = rows[order].to_numpy(dtype=np.float64)
    expected = numeric_model.predict(rows)
    data = [[None if np.isnan(v) else v for v in row] for row in matrix.tolist()]
    for request in (
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(matrix.shape), "data": data}]},
        {
            "parameters": {"content_type": "np"},
            "inputs": [{"name": "features", "datatype": "FP64", "shape": list(matrix.shape), "data": data}],
        },
    ):
        assert np.array_equal(outputs(infer(numeric_model, request))["predict"]["data"], expected)


def test_a_matrix_for_a_model_with_categories_is_refused_saying_what_to_send(
    model: ScoringModel, rows: pd.DataFrame
) -> None:
    matrix = {"name": "input-0", "datatype": "FP64", "shape": [2, len(model.schema.fields)], "data": [0.0] * 40}
    exc = refused(model, {"inputs": [matrix]})
    assert exc.status == 400 and "input-0" in exc.message and "one input per column" in exc.message, exc.message
    assert "education" in exc.message, "the categorical features are named"


# --- client mistakes -----------------------------------------------------------------------------


def mistakes(model: ScoringModel, rows: pd.DataFrame) -> dict[str, tuple[Any, int, list[str]]]:
    """Each mistake: (request, status, what the error must name)."""
    good = column_inputs(model, rows.head(3))

    def change(name: str, **values: Any) -> list[dict[str, Any]]:
        return [{**t, **values} if t["name"] == name else t for t in good]

    unknown = [*good, {"name": "colour", "datatype": "BYTES", "shape": [3], "data": ["red"] * 3}]
    return {
        "unknown-input": ({"inputs": unknown}, 400, ["'colour'", "age"]),
        "missing-input": ({"inputs": [t for t in good if t["name"] != "age"]}, 400, ["'age'", "missing"]),
        "number-as-text": ({"inputs": change("age", datatype="BYTES", data=["30"] * 3)}, 400, ["'age'", "BYTES"]),
        "category-as-number": ({"inputs": change("region", datatype="FP64", data=[1.0] * 3)}, 400, ["'region'"]),
        "unknown-datatype": ({"inputs": change("age", datatype="FLOAT")}, 400, ["'age'", "FLOAT"]),
        "wrong-shape": ({"inputs": change("age", shape=[3, 2], data=[30.0] * 6)}, 400, ["'age'", "[3, 2]"]),
        "data-not-shape": ({"inputs": change("age", data=[30.0, 31.0])}, 400, ["'age'", "[3]"]),
        "rows-differ": ({"inputs": change("age", shape=[2], data=[30.0, 31.0])}, 400, ["'age'", "rows"]),
        "text-in-fp64": ({"inputs": change("age", data=["x", 30, 31])}, 400, ["'age'", "element 0"]),
        "float-in-int64": ({"inputs": change("age", datatype="INT64", data=[30.5, 30, 31])}, 400, ["'age'"]),
        "out-of-range": ({"inputs": change("age", data=[5.0, 30.0, 31.0])}, 400, ["input 'age', row 0", "minimum"]),
        "unseen-category": ({"inputs": change("region", data=["mars"] * 3)}, 400, ["input 'region'", "mars"]),
        "twice": ({"inputs": [*good, good[0]]}, 400, ["'age'", "twice"]),
        "no-inputs": ({"inputs": []}, 400, ["inputs"]),
        "unknown-output": ({"inputs": good, "outputs": [{"name": "explain"}]}, 400, ["'explain'", "predict_proba"]),
        "content-type": ({"inputs": good, "parameters": {"content_type": "str"}}, 400, ["'str'", "pd"]),
        "id-not-text": ({"id": 7, "inputs": good}, 400, ["'id'"]),
        "not-json": (b"{inputs", 400, ["not valid JSON"]),
        "too-many-rows": ({"inputs": change("age", shape=[2000], data=[30.0] * 2000)}, 413, ["2,000", "1,000"]),
    }


MISTAKES = [
    "unknown-input",
    "missing-input",
    "number-as-text",
    "category-as-number",
    "unknown-datatype",
    "wrong-shape",
    "data-not-shape",
    "rows-differ",
    "text-in-fp64",
    "float-in-int64",
    "out-of-range",
    "unseen-category",
    "twice",
    "no-inputs",
    "unknown-output",
    "content-type",
    "id-not-text",
    "not-json",
    "too-many-rows",
]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_client_mistake_is_a_4xx_naming_the_input(model: ScoringModel, rows: pd.DataFrame, mistake: str) -> None:
    request, status, named = mistakes(model, rows)[mistake]
    exc = refused(model, request)
    assert exc.status == status, (exc.status, exc.message)
    assert all(n in exc.message for n in named), f"{named} not all in: {exc.message}"


def test_refused_values_list_each_row_and_input(model: ScoringModel, rows: pd.DataFrame) -> None:
    request, _, _ = mistakes(model, rows)["out-of-range"]
    exc = refused(model, request)
    assert exc.problems and exc.problems[0]["input"] == "age" and exc.problems[0]["row"] == 0, exc.problems


def test_binary_tensor_data_that_does_not_add_up_is_refused(model: ScoringModel) -> None:
    head = json.dumps(
        {"inputs": [{"name": "age", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}]}
    ).encode()
    short = refused(model, head + b"\0" * 8, header=len(head))
    assert short.status == 400 and "'age'" in short.message and "binary_data_size" in short.message
    wrong = refused(model, head + b"\0" * 16, header=len(head) + 99)
    assert wrong.status == 400 and "Inference-Header-Content-Length" in wrong.message
    extra = refused(model, head + b"\0" * 24, header=len(head))
    assert extra.status == 400 and "belong to no input" in extra.message


def test_a_regression_model_has_no_predict_proba(tiny_model: TinyModel, rows: pd.DataFrame) -> None:
    base = ScoringModel.from_folder(tiny_model.version.path)
    m = ScoringModel(base.booster, base.feature_transform, base.schema, {**base.metadata, "task_type": "regression"})
    assert [o["name"] for o in oip.OpenInference(m, 10).model_metadata()["outputs"]] == ["predict"]
    exc = refused(m, {"inputs": column_inputs(m, rows), "outputs": [{"name": "predict_proba"}]})
    assert exc.status == 400 and "regression model has no predict_proba" in exc.message, exc.message


# --- the service's guards, on /v2 as on /predict --------------------------------------------------


def call(app: Any, method: str, path: str, body: bytes = b"", token: str | None = None) -> tuple[int, Any, int]:
    """One request through the ASGI app: (status, answer, how often the app read the body)."""
    headers = [(b"content-length", str(len(body)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    status, answer, _, reads = asgi_request(app, method, path, headers, body)
    return status, answer, reads


def test_the_token_guards_v2_and_its_health_probes_answer_without_it(model: ScoringModel, rows: pd.DataFrame) -> None:
    app = create_app(model, token="s3cret", log_dir=None)
    body = json.dumps({"inputs": column_inputs(model, rows)}).encode()
    for method, path in [("POST", INFER), ("GET", f"/v2/models/{NAME}"), ("GET", "/v2"), ("GET", "/v2/models/x/ready")]:
        status, answer, reads = call(app, method, path, body if method == "POST" else b"")
        assert status == 401 and "token" in answer["error"] and reads == 0, (path, status, answer, reads)
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert call(app, "GET", path)[0] == 200, path
    status, answer, _ = call(app, "POST", INFER, body, token="s3cret")
    assert status == 200 and np.array_equal(answer["outputs"][0]["data"], model.predict(rows))


def test_v2_bodies_have_the_body_limit_and_answers_are_counted_in_the_metrics(
    model: ScoringModel, rows: pd.DataFrame, tmp_path: Path
) -> None:
    app = create_app(model, token="", log_dir=tmp_path, limits=Limits(max_body_bytes=2000))
    big = json.dumps({"inputs": column_inputs(model, rows)}).encode()
    assert len(big) > 2000
    status, answer, reads = call(app, "POST", INFER, big)
    assert status == 413 and "2,000" in answer["error"] and reads == 0, answer
    small = json.dumps({"inputs": column_inputs(model, rows.head(1))}).encode()
    assert call(app, "POST", INFER, small)[0] == 200
    assert call(app, "POST", "/v2/models/other_model/infer", small)[0] == 404
    assert call(app, "GET", INFER)[0] == 405
    assert call(app, "GET", "/v2/models/x/explain")[0] == 404
    text = call_text(app, "/metrics")
    for status_code in ("200", "404", "405", "413"):
        assert any(
            'path="/v2/models/{name}/infer"' in line and f'status="{status_code}"' in line for line in text.splitlines()
        ), (status_code, text[:1500])
    assert "other_model" not in text, "a client's model name never becomes a metric label"
    (entry,) = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert entry["predictions"] == model.predict(rows.head(1)).tolist() and len(entry["records"]) == 1


def call_text(app: Any, path: str) -> str:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}, receive, send))
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()


def test_unknown_models_and_versions_are_404_and_the_version_number_is_accepted(model: ScoringModel) -> None:
    app = create_app(model, token="", log_dir=None)
    assert call(app, "GET", "/v2/models/nope")[0] == 404
    status, answer, _ = call(app, "GET", f"/v2/models/{NAME}/versions/v9999/ready")
    assert status == 404 and model.version in answer["error"], answer
    number = str(int(model.version.lstrip("v")))
    for version in (model.version, number):
        status, answer, _ = call(app, "GET", f"/v2/models/{NAME}/versions/{version}/ready")
        assert status == 200 and answer == {"name": NAME, "ready": True}
    status, meta, _ = call(app, "GET", f"/v2/models/{NAME}")
    assert meta["versions"] == [model.version] and [t["name"] for t in meta["inputs"]] == model.schema.names
    kinds = {f.name: f.kind for f in model.schema.fields}
    assert all(t["datatype"] == ("FP64" if kinds[t["name"]] == "numeric" else "BYTES") for t in meta["inputs"])
    status, server, _ = call(app, "GET", "/v2")
    assert status == 200 and "binary_tensor_data" in server["extensions"]
