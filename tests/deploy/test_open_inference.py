"""The Open Inference Protocol (KServe V2) with real clients against real uvicorn on 127.0.0.1.

Each server is ``python -m <package> serve`` with a tiny model's real wheel on the path (as
``pip install`` would put it): the binary model of the simulated credit-risk data (categorical
features: one input per column), a multiclass one (its target is ``home_ownership``) and a
regression one whose features are all numbers (so one [N, F] tensor also carries the rows).
Clients: tritonclient's HTTP ``InferenceServerClient`` (binary tensor data, its default, and JSON),
MLServer's ``PandasCodec`` run in its own virtualenv under build/ (MLServer pins conflict with the
project's lock, so it is never a dependency), plain httpx for /predict, and the README's example run
exactly as written. Expected values are the wheel's own ``predict`` on the same rows, compared exactly.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.support import REPO, TinyModel, free_port, readme_block, stop_process, tiny_registered_model

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
STARTUP_SECONDS = 60
MLSERVER_VENV = REPO / "build" / "mlserver-venv"
MLSERVER = ["mlserver==1.7.1", "pandas==3.1.1", "numpy==2.4.6", "pyarrow==26.0.1"]


@dataclass
class Served:
    """A running server, the model it serves and that model as its wheel loads it in this process."""

    url: str
    process: subprocess.Popen[bytes]
    output: Path
    model: TinyModel
    loaded: Any  # the wheel's ScoringModel
    token: str | None = None

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> Any:
        return tritonclient_http.InferenceServerClient(self.address, connection_timeout=30, network_timeout=60)

    def rows(self) -> pd.DataFrame:
        """The test split as the training table has it: identifier, month, target and ignored columns too."""
        return pd.read_parquet(self.model.splits["test"]).reset_index(drop=True)


def wheel_model(model: TinyModel) -> Any:
    """``<package>.load()`` imported from the wheel itself (a wheel is a zip), as a user imports it."""
    if str(model.wheel) not in sys.path:
        sys.path.insert(0, str(model.wheel))
    package = importlib.import_module(model.package)
    assert str(model.wheel) in str(package.__file__), package.__file__
    return package.load()


@contextmanager
def serving(model: TinyModel, folder: Path, *, token: str | None = None) -> Iterator[Served]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env["PYTHONPATH"] = str(model.wheel)
    if token:
        env["NBOPS_API_TOKEN"] = token
    command = [sys.executable, "-m", model.package, "serve", "--host", HOST, "--port", str(port)]
    command += ["--prediction-log", str(folder / "log")]
    output = folder / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    served = Served(f"http://{HOST}:{port}", proc, output, model, wheel_model(model), token)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if httpx.get(served.url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no /health (exit {proc.poll()}):\n{output.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield served
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def binary(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tiny_model, tmp_path_factory.mktemp("oip-binary")) as s:
        yield s


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("oip-multiclass")
    with serving(tiny_registered_model(folder / "model", task="multiclass"), folder / "server") as s:
        yield s


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("oip-regression")
    with serving(tiny_registered_model(folder / "model", task="regression"), folder / "server") as s:
        yield s


@pytest.fixture(params=["binary", "multiclass", "regression"])
def server(request: pytest.FixtureRequest) -> Served:
    served: Served = request.getfixturevalue(request.param)
    return served


def column_inputs(
    client: Any, name: str, df: pd.DataFrame, *, binary_data: bool, headers: dict[str, str] | None = None
) -> list[Any]:
    """One tritonclient input per feature column, as the model metadata lists them."""
    inputs = []
    for tensor in client.get_model_metadata(name, headers=headers)["inputs"]:
        column = df[tensor["name"]]
        if tensor["datatype"] == "BYTES":
            values = column.fillna("").to_numpy(dtype=object)
        else:
            values = column.to_numpy(dtype=np.float64)
        inputs.append(tritonclient_http.InferInput(tensor["name"], [len(df)], tensor["datatype"]))
        inputs[-1].set_data_from_numpy(values, binary_data=binary_data)
    return inputs


def expected_outputs(served: Served, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the wheel's own model gives for ``df``, in the protocol's outputs."""
    m = served.loaded
    if m.classes is not None:
        return {"predict": m.predict_label(df).to_numpy(dtype=object), "predict_proba": m.predict(df).to_numpy()}
    p = np.asarray(m.predict(df))
    if m.task_type == "regression":
        return {"predict": p}
    return {"predict": p, "predict_proba": np.column_stack([1.0 - p, p])}


def assert_outputs_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name, value in want.items():
        answer = got[name]
        if value.dtype == object:  # class labels: tritonclient gives bytes for binary BYTES, text for JSON
            answer = np.array([v.decode() if isinstance(v, bytes) else v for v in answer.ravel()], dtype=object)
        assert answer.shape == value.shape, (name, answer.shape, value.shape)
        assert np.array_equal(answer, value), f"{name}: {np.flatnonzero(answer != value)[:5]} differ"


def predict_records(served: Served, df: pd.DataFrame) -> dict[str, Any]:
    records = json.loads(df.to_json(orient="records", date_format="iso"))
    r = httpx.post(served.url + "/predict", json={"records": records}, headers=served.headers(), timeout=60)
    assert r.status_code == 200, r.text[:500]
    answer: dict[str, Any] = r.json()
    return answer


# --- tritonclient -------------------------------------------------------------------------------


@pytest.mark.parametrize("binary_data", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_scores_each_task_as_predict_and_the_wheel_do(server: Served, binary_data: bool) -> None:
    client = server.client()
    name, version = server.model.package, server.model.version.version
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(name) and client.is_model_ready(name, version)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(name, version)
    assert meta["name"] == name and meta["versions"] == [version]
    assert [t["name"] for t in meta["inputs"]] == server.loaded.schema.names
    df = server.rows()
    requested = [tritonclient_http.InferRequestedOutput(o["name"], binary_data=binary_data) for o in meta["outputs"]]
    result = client.infer(
        name, column_inputs(client, name, df, binary_data=binary_data), request_id="june-42", outputs=requested
    )
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("june-42", name, version)
    got = {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}
    assert_outputs_equal(got, expected_outputs(server, df))
    # and POST /predict answers the same rows with the same numbers
    answer = predict_records(server, df)
    if server.loaded.classes is None:
        assert np.array_equal(np.array(answer["predictions"]), got["predict"])
    else:
        labels = [p["label"] for p in answer["predictions"]]
        assert labels == expected_outputs(server, df)["predict"].tolist()
        probabilities = [[p["probabilities"][str(c)] for c in server.loaded.classes] for p in answer["predictions"]]
        assert np.array_equal(np.array(probabilities), got["predict_proba"])
    client.close()


def test_without_requested_outputs_tritonclient_gets_every_output_in_binary(binary: Served) -> None:
    client = binary.client()
    name = binary.model.package
    df = binary.rows().head(50)
    result = client.infer(name, column_inputs(client, name, df, binary_data=True))
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["predict", "predict_proba"]
    assert all("binary_data_size" in o["parameters"] for o in outputs), outputs
    assert np.array_equal(result.as_numpy("predict"), binary.loaded.predict(df))
    client.close()


def test_the_regression_model_takes_one_matrix_of_its_features(regression: Served) -> None:
    client = regression.client()
    name = regression.model.package
    order = [t["name"] for t in client.get_model_metadata(name)["inputs"]]
    df = regression.rows()
    matrix = df[order].to_numpy(dtype=np.float64)
    for binary_data in (True, False):
        tensor = tritonclient_http.InferInput("input-0", list(matrix.shape), "FP64")
        tensor.set_data_from_numpy(matrix, binary_data=binary_data)
        result = client.infer(name, [tensor], outputs=[tritonclient_http.InferRequestedOutput("predict")])
        assert np.array_equal(result.as_numpy("predict"), regression.loaded.predict(df)), binary_data
    client.close()


# --- MLServer's codec ---------------------------------------------------------------------------

ENCODE = """
import sys
import pandas as pd
from mlserver.codecs import PandasCodec

df = pd.read_parquet(sys.argv[1])
df["month"] = df["month"].astype(str)
# MLServer 1.7.1 cannot encode pandas 3's str columns (KeyError 'O') nor text with missing values
# (isnan on text): object columns, "" for a missing category, as the service documents.
for column in df.columns:
    if pd.api.types.is_string_dtype(df[column]):
        df[column] = df[column].fillna("").astype(object)
request = PandasCodec.encode_request(df, use_bytes=False)
request.id = "mlserver-1"
open(sys.argv[2], "w").write(request.model_dump_json(exclude_none=True))
"""


def mlserver_python() -> Path:
    """MLServer's own virtualenv (created once under build/ with the project's uv)."""
    python = MLSERVER_VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).parent / "uv"
        subprocess.run([str(uv), "venv", "--python", sys.executable, str(MLSERVER_VENV)], check=True)
        subprocess.run([str(uv), "pip", "install", "--python", str(python), *MLSERVER], check=True)
    return python


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_table_encoded_by_mlservers_pandas_codec_scores_as_the_wheel(
    task: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    served: Served = request.getfixturevalue(task)
    df = served.rows()
    source, encoded = tmp_path / "rows.parquet", tmp_path / "request.json"
    df.to_parquet(source)
    done = subprocess.run(
        [str(mlserver_python()), "-c", ENCODE, str(source), str(encoded)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    body = json.loads(encoded.read_text())
    sent = {i["name"]: i for i in body["inputs"]}
    assert body["parameters"]["content_type"] == "pd" and set(df.columns) == set(sent), sorted(sent)
    assert sent["age"]["shape"] == [len(df), 1], "PandasCodec sends [N, 1] columns"
    r = httpx.post(f"{served.url}/v2/models/{served.model.package}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text[:500]
    answer = r.json()
    assert answer["id"] == "mlserver-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    want = expected_outputs(served, df)
    got = {
        name: np.array(outputs[name]["data"], dtype=object if want[name].dtype == object else np.float64).reshape(
            outputs[name]["shape"]
        )
        for name in want
    }
    assert_outputs_equal(got, want)
    assert outputs["application_id"]["data"] == df["application_id"].tolist(), "the identifiers are echoed"
    assert served.model.version.metadata["target"] not in outputs, "the target is accepted, never echoed"


# --- client mistakes ----------------------------------------------------------------------------


def refusal(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_client_mistakes_are_4xx_naming_the_input(binary: Served) -> None:
    client = binary.client()
    name = binary.model.package
    df = binary.rows().head(5)
    good = column_inputs(client, name, df, binary_data=True)

    unknown_model = refusal(lambda: client.infer("fraud_model", good))
    assert unknown_model.status() == "404" and "fraud_model" in unknown_model.message(), unknown_model
    assert not client.is_model_ready("fraud_model")
    assert refusal(lambda: client.get_model_metadata(name, "v0999")).status() == "404"

    colour = tritonclient_http.InferInput("colour", [5], "BYTES")
    colour.set_data_from_numpy(np.array(["red"] * 5, dtype=object))
    unknown = refusal(lambda: client.infer(name, [*good, colour]))
    assert unknown.status() == "400" and "'colour'" in unknown.message(), unknown

    wide = tritonclient_http.InferInput("age", [5, 2], "FP64")
    wide.set_data_from_numpy(np.ones((5, 2)))
    shape = refusal(lambda: client.infer(name, [wide if t.name() == "age" else t for t in good]))
    assert shape.status() == "400" and "'age'" in shape.message() and "[5, 2]" in shape.message(), shape

    text = tritonclient_http.InferInput("age", [5], "BYTES")
    text.set_data_from_numpy(np.array(["thirty"] * 5, dtype=object))
    datatype = refusal(lambda: client.infer(name, [text if t.name() == "age" else t for t in good]))
    assert datatype.status() == "400" and "'age'" in datatype.message() and "BYTES" in datatype.message(), datatype

    missing = refusal(lambda: client.infer(name, [t for t in good if t.name() != "region"]))
    assert missing.status() == "400" and "'region'" in missing.message(), missing

    young = tritonclient_http.InferInput("age", [5], "FP64")
    young.set_data_from_numpy(np.array([30.0, 30.0, 3.0, 30.0, 30.0]))
    value = refusal(lambda: client.infer(name, [young if t.name() == "age" else t for t in good]))
    assert value.status() == "400" and "input 'age', row 2" in value.message(), value

    proba = [tritonclient_http.InferRequestedOutput("explain")]
    output = refusal(lambda: client.infer(name, good, outputs=proba))
    assert output.status() == "400" and "'explain'" in output.message(), output
    client.close()


def test_the_token_guards_v2_as_it_guards_predict(tiny_model: TinyModel, tmp_path: Path) -> None:
    token = "tok-" + secrets.token_urlsafe(24)
    with serving(tiny_model, tmp_path, token=token) as served:
        client = served.client()
        name = tiny_model.package
        assert client.is_server_live() and client.is_server_ready(), "the health probes answer without the token"
        df = served.rows().head(20)
        meta = refusal(lambda: client.get_model_metadata(name))
        assert meta.status() == "401" and "token" in meta.message(), meta
        inputs = column_inputs(client, name, df, binary_data=True, headers=served.headers())
        missing = refusal(lambda: client.infer(name, inputs))
        assert missing.status() == "401", missing
        result = client.infer(name, inputs, headers=served.headers())
        assert np.array_equal(result.as_numpy("predict"), served.loaded.predict(df))
        client.close()


def test_v2_requests_are_counted_by_route_and_logged_like_predict(binary: Served) -> None:
    client = binary.client()
    name = binary.model.package
    df = binary.rows().head(7)
    client.infer(name, column_inputs(client, name, df, binary_data=False), request_id="counted")
    refusal(lambda: client.infer("fraud_model", column_inputs(client, name, df, binary_data=False)))
    client.close()
    metrics = httpx.get(binary.url + "/metrics", timeout=30).text
    lines = [ln for ln in metrics.splitlines() if ln.startswith("nbops_requests_total")]
    assert any('path="/v2/models/{name}/infer",status="200"' in ln for ln in lines), lines
    assert any('path="/v2/models/{name}/infer",status="404"' in ln for ln in lines), lines
    assert not any("fraud_model" in ln for ln in lines), "a client's model name is never a label"
    log = binary.output.parent / "log" / "predictions.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [e for e in entries if len(e["records"]) == 7]
    assert ours and ours[-1]["predictions"] == binary.loaded.predict(df).tolist()


# --- /predict with rows of the training table ---------------------------------------------------


def test_predict_takes_rows_of_the_training_table_and_echoes_their_ids(server: Served) -> None:
    df = server.rows().head(40)
    ignored = server.loaded.schema.ignored
    assert server.model.version.metadata["target"] in ignored and set(ignored) <= set(df.columns), ignored
    answer = predict_records(server, df)
    records = json.loads(df.to_json(orient="records", date_format="iso"))
    assert answer["ids"] == [{"application_id": r["application_id"], "month": r["month"]} for r in records]
    want = expected_outputs(server, df)["predict"]
    got = [p["label"] if isinstance(p, dict) else p for p in answer["predictions"]]
    assert got == want.tolist()
    bad = [*records[:2], {**records[2], "colour": "red"}]
    r = httpx.post(server.url + "/predict", json={"records": bad}, timeout=60)
    assert r.status_code == 422 and [(p["record"], p["field"]) for p in r.json()["problems"]] == [(2, "colour")]


# --- the README's example -----------------------------------------------------------------------


def test_the_readme_tritonclient_example_runs_as_written(binary: Served, tmp_path: Path) -> None:
    block = readme_block("tritonclient.http", "python")
    assert '"127.0.0.1:8000"' in block and f'"{binary.model.package}"' in block, block
    binary.rows().to_parquet(tmp_path / "new_month.parquet")  # the test split, every column of the table
    script = block.replace('"127.0.0.1:8000"', f'"{binary.address}"') + '\nnp.save("predict.npy", p)\n'
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    p = np.load(tmp_path / "predict.npy")
    df = pd.read_parquet(tmp_path / "new_month.parquet")
    assert np.array_equal(p, binary.loaded.predict(df))
    assert np.array_equal(p, np.array(predict_records(binary, df)["predictions"]))
