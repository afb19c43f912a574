"""The scoring runtime with a multiclass model: ``predict`` gives a probability column per class,
named by the class, ``predict_label`` the most likely class; the batch scorer writes both; the REST
answer keys each record's probabilities by class name. (The installed wheel, real uvicorn and the
parity with the evaluate stage are tested end to end in tests/e2e/test_multiclass.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.runtime.batch import score_file
from tests.support.multiclass import MulticlassModel, train_multiclass_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("multiclass-runtime"), 1200)


@pytest.fixture(scope="module")
def scored_by_numbers(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("multiclass-int"), 1200, integer_labels=True)


def _features(model: MulticlassModel, rows: pd.DataFrame) -> pd.DataFrame:
    return rows[[f.name for f in model.scoring_model().schema.fields]]


def test_predict_gives_one_probability_column_per_class_named_by_the_class(trained):
    m = trained.scoring_model()
    rows = trained.test.head(200)
    got = m.predict(rows)
    assert isinstance(got, pd.DataFrame)
    assert list(got.columns) == trained.schema.classes == ["basic", "business", "plus", "premium"]
    assert got.index.equals(rows.index)
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(got.to_numpy(), trained.booster.predict(trained.transform.transform(rows)))


def test_predict_label_is_the_most_likely_class(trained):
    m = trained.scoring_model()
    rows = trained.test.head(200)
    labels = m.predict_label(rows)
    probabilities = m.predict(rows)
    assert labels.tolist() == probabilities.idxmax(axis=1).tolist()
    assert labels.index.equals(rows.index) and set(labels) <= set(trained.schema.classes)


def test_records_and_one_record_at_a_time_give_the_frames_probabilities(trained):
    m = trained.scoring_model()
    rows = _features(trained, trained.test.head(40))
    expected = m.predict(rows).to_numpy()
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    assert np.allclose(m.predict(records).to_numpy(), expected, rtol=0, atol=1e-12)
    for i in range(0, 40, 7):  # LightGBM's single-row fast path, one output per class
        one = m.predict_records([records[i]])
        assert one.shape == (1, 4)
        assert np.allclose(one[0], expected[i], rtol=0, atol=1e-12)


def test_whole_number_classes_come_back_as_numbers(scored_by_numbers):
    m = scored_by_numbers.scoring_model()
    assert m.classes == [1, 2, 3]
    rows = scored_by_numbers.test.head(50)
    assert list(m.predict(rows).columns) == ["1", "2", "3"]
    labels = m.predict_label(rows)
    assert labels.dtype == np.int64 and set(labels) <= {1, 2, 3}
    truth = m.label_codes(rows["satisfaction"])
    assert truth.tolist() == (rows["satisfaction"].astype(int) - 1).astype(float).tolist()


def test_predict_label_on_a_binary_model_says_what_predict_returns(tiny_model):
    from nbops.runtime.model import ScoringModel

    m = ScoringModel.from_folder(tiny_model.version.path)
    rows = pd.read_parquet(tiny_model.splits["test"]).head(5)
    assert isinstance(m.predict(rows), np.ndarray)  # binary outputs unchanged
    with pytest.raises(ValueError, match="predict_label is for multiclass models; model v0001 is binary"):
        m.predict_label(rows)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_batch_scoring_writes_the_label_and_each_class_probability(trained, tmp_path, suffix):
    m = trained.scoring_model()
    source = tmp_path / "month.parquet"
    trained.raw.head(300).drop(columns=["plan"]).to_parquet(source, index=False)
    dest = tmp_path / f"scored{suffix}"
    assert score_file(m, source, dest, chunk_rows=120, progress=False) == 300
    out = pd.read_parquet(dest) if suffix == ".parquet" else pd.read_csv(dest)
    columns = [f"proba_{c}" for c in trained.schema.classes]
    assert list(out.columns) == ["customer_id", "month", "predicted_label", *columns, "model_version"]
    expected = m.predict(trained.raw.head(300))
    assert np.allclose(
        out[columns].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12 if suffix == ".parquet" else 1e-9
    )
    assert out["predicted_label"].tolist() == expected.idxmax(axis=1).tolist()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_rest_predict_keys_each_records_probabilities_by_class_name(trained, tmp_path):
    from fastapi.testclient import TestClient

    from nbops.monitoring.batches import read_prediction_log
    from nbops.runtime.serve import create_app

    m = trained.scoring_model()
    rows = _features(trained, trained.test.head(5))
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    with TestClient(create_app(m, log_dir=tmp_path / "log")) as client:
        answer = client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        spec = client.get("/openapi.json").json()
        metrics = client.get("/metrics").text
    expected = m.predict(rows)
    assert body["model_version"] == "v0001" and len(body["predictions"]) == 5
    for got, (_, want) in zip(body["predictions"], expected.iterrows(), strict=True):
        assert list(got) == ["label", "probabilities"]
        assert list(got["probabilities"]) == trained.schema.classes
        assert np.allclose(list(got["probabilities"].values()), want.to_numpy(), rtol=0, atol=1e-12)
        assert got["label"] == want.idxmax()
    item = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    prediction = item["properties"]["predictions"]["items"]
    assert prediction["properties"]["label"]["enum"] == trained.schema.classes
    assert prediction["properties"]["probabilities"]["required"] == trained.schema.classes
    assert "nbops_prediction_score_count 5" in metrics
    logged = read_prediction_log(tmp_path / "log" / "predictions.jsonl")
    assert logged["predicted_label"].tolist() == [p["label"] for p in body["predictions"]]
    assert np.allclose(logged[[f"proba_{c}" for c in trained.schema.classes]].to_numpy(), expected.to_numpy())
    assert (
        json.loads((tmp_path / "log" / "predictions.jsonl").read_text().splitlines()[0])["predictions"]
        == (body["predictions"])
    )


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_binary_rest_answers_are_unchanged_numbers(tiny_model):
    from fastapi.testclient import TestClient

    from nbops.runtime.model import ScoringModel
    from nbops.runtime.serve import create_app

    m = ScoringModel.from_folder(tiny_model.version.path)
    rows = pd.read_parquet(tiny_model.splits["test"]).head(3)[m.schema.names]
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    with TestClient(create_app(m)) as client:
        body = client.post("/predict", json={"records": records}).json()
    assert all(isinstance(p, float) for p in body["predictions"])
    assert np.allclose(body["predictions"], m.predict(rows), rtol=0, atol=1e-12)


def test_the_scoring_contract_round_trips_its_classes(trained, tmp_path: Path):
    from nbops.runtime.schema import InputSchema

    schema = trained.scoring_model().schema
    again = InputSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again.classes == ["basic", "business", "plus", "premium"]
    binary = InputSchema(schema.fields)
    assert "classes" not in binary.to_dict()  # a binary model's contract is as it was
