"""Records as clients send them: rows of the table the model was trained on, with the identifier,
time and target columns (and any ``role: ignore`` column) still in them. Those are accepted; the
pass-through ones are echoed in each prediction (``ids``) so a client can join; the target and the
ignored columns are dropped before scoring and logging; any other field is still refused, named."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import FieldSpec, InputError, InputSchema
from nbops.runtime.serve import create_app
from tests.support import TinyModel

SCHEMA = InputSchema(
    fields=[FieldSpec("age", "numeric", nullable=False, min=18, max=100), FieldSpec("region", "categorical")],
    passthrough=["application_id", "month"],
    ignored=["default", "branch"],
)


@pytest.fixture(scope="module")
def model(tiny_model: TinyModel) -> ScoringModel:
    return ScoringModel.from_folder(tiny_model.version.path)


@pytest.fixture(scope="module")
def table_rows(tiny_model: TinyModel) -> list[dict[str, Any]]:
    """Rows of the test split as JSON records, every column of the training table included."""
    df = pd.read_parquet(tiny_model.splits["test"]).head(15)
    records: list[dict[str, Any]] = json.loads(df.to_json(orient="records", date_format="iso"))
    assert {"application_id", "month", "default"} <= set(records[0]), sorted(records[0])
    return records


def post(app: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-length", str(len(raw)).encode())],
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))
    status = next(m for m in sent if m["type"] == "http.response.start")["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize("value", [0, 1, "yes", None, 2.5, {"any": "thing"}, [1, 2]])
def test_the_target_and_ignored_columns_are_accepted_whatever_they_hold(value: Any) -> None:
    SCHEMA.check_records([{"age": 30, "region": "north", "default": value, "branch": value, "application_id": "A1"}])


def test_a_field_the_schema_does_not_know_is_still_refused_naming_it_and_what_is_known() -> None:
    with pytest.raises(InputError) as caught:
        SCHEMA.check_records(
            [{"age": 30, "region": "north", "default": 1}, {"age": 30, "region": "x", "colour": "red"}]
        )
    assert [(p.record, p.field) for p in caught.value.problems] == [(1, "colour")], caught.value.problems
    message = caught.value.problems[0].message
    assert "unknown field" in message and "age, region" in message and "default, branch" in message, message
    assert "application_id, month" in message, message


def test_an_older_contract_without_ignored_fields_still_accepts_the_target_named_in_its_metadata(
    model: ScoringModel, table_rows: list[dict[str, Any]]
) -> None:
    older = InputSchema.from_dict({k: v for k, v in model.schema.to_dict().items() if k != "ignored"})
    assert older.ignored == []
    m = ScoringModel(model.booster, model.feature_transform, older, dict(model.metadata))
    assert m.schema.ignored == ["default"], "the target's name comes from the metadata"
    record = {k: v for k, v in table_rows[0].items() if k in m.schema.names}
    with_target = m.predict_records([{**record, "default": 1}])  # the strict records path, no allow_extra
    assert np.array_equal(with_target, m.predict_records([record]))


def test_predict_accepts_rows_of_the_training_table_and_echoes_their_ids(
    model: ScoringModel, table_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    app = create_app(model, token="", log_dir=tmp_path)
    status, answer = post(app, {"records": table_rows})
    assert status == 200, answer
    expected = model.predict(pd.DataFrame(table_rows)).tolist()
    assert answer["predictions"] == expected
    assert answer["ids"] == [{"application_id": r["application_id"], "month": r["month"]} for r in table_rows]
    (entry,) = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all("default" not in r for r in entry["records"]), "the target is not logged"
    assert [r["application_id"] for r in entry["records"]] == [r["application_id"] for r in table_rows]


def test_without_pass_through_fields_the_answer_is_unchanged(
    model: ScoringModel, table_rows: list[dict[str, Any]]
) -> None:
    app = create_app(model, token="", log_dir=None)
    features = [{k: v for k, v in r.items() if k in model.schema.names} for r in table_rows]
    status, answer = post(app, {"records": features})
    assert status == 200 and set(answer) == {"model_version", "predictions"}, answer
    some = [dict(features[0], application_id="A-1"), features[1]]
    status, answer = post(app, {"records": some})
    assert answer["ids"] == [{"application_id": "A-1"}, {"application_id": None}], answer


def test_predict_still_refuses_a_field_the_schema_does_not_know(
    model: ScoringModel, table_rows: list[dict[str, Any]]
) -> None:
    app = create_app(model, token="", log_dir=None)
    status, answer = post(app, {"records": [table_rows[0], {**table_rows[1], "colour": "red"}]})
    assert status == 422, answer
    assert [(p["record"], p["field"]) for p in answer["problems"]] == [(1, "colour")], answer["problems"]


def test_the_documented_record_and_answer_name_the_ignored_and_echoed_fields(model: ScoringModel) -> None:
    spec = create_app(model, token="", log_dir=None).openapi()
    op = spec["paths"]["/predict"]["post"]
    record = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["records"]["items"]
    assert "default" in record["properties"] and "default" not in record["required"]
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(answer["properties"]["ids"]["items"]["properties"]) == {"application_id", "month"}
    assert answer["required"] == ["model_version", "predictions"], "ids only when pass-through fields were sent"
