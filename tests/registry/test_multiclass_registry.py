"""A multiclass model in the registry: the scoring contract carries the classes, the gate judges
log loss (lower is better) on production's own scores of the same rows, the card names the metrics;
and the Dask engine refuses a multiclass model with a message naming the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nbops.config.params import ComputeParams, TrainParams
from nbops.engines.dask.engine import DaskEngine
from nbops.errors import ConfigError
from nbops.modeling.metrics import HEADLINE, task_metrics
from nbops.registry.card import model_card_markdown
from nbops.registry.gate import decide, production_metrics_on
from nbops.registry.publish import input_schema
from nbops.registry.store import Registry
from nbops.runtime.integrity import MODEL_FILE, SCHEMA_FILE, TRANSFORM_FILE
from nbops.runtime.model import ScoringModel
from tests.support.multiclass import MulticlassModel, train_multiclass_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("multiclass-registry"), 1200)


def _register(model: MulticlassModel, folder: Path) -> ScoringModel:
    files = {
        MODEL_FILE: model.booster.model_to_string().encode(),
        TRANSFORM_FILE: json.dumps(model.transform.to_dict()).encode(),
        SCHEMA_FILE: json.dumps(input_schema(model.schema).to_dict()).encode(),
    }
    registry = Registry(folder)
    version, _ = registry.register(files, {"task_type": "multiclass", "target": "plan", "metrics": {}})
    return ScoringModel.from_folder(version.path)


def test_the_registered_contract_carries_the_classes_and_production_scores_the_holdout(trained, tmp_path):
    production = _register(trained, tmp_path / "registry")
    assert production.classes == trained.schema.classes
    holdout = trained.test.assign(extra=1.0)  # the raw labels stay text; extra columns are ignored
    got = production_metrics_on(production, holdout, "plan", "multiclass")
    p = trained.booster.predict(trained.transform.transform(trained.test))
    expected = task_metrics("multiclass", trained.schema.target_codes(trained.test["plan"]), p)
    assert got == pytest.approx(expected, rel=1e-12)


def test_the_gate_promotes_a_lower_log_loss_and_keeps_a_higher_one():
    better = decide("multiclass", {"log_loss": 0.80}, {"log_loss": 0.85}, "v0001", 0.005)
    assert better.promote and better.metric == "log_loss"
    assert "lower is better; change +0.0500" in better.reason
    worse = decide("multiclass", {"log_loss": 0.90}, {"log_loss": 0.85}, "v0001", 0.005)
    assert not worse.promote and "worse beyond the tolerance, keep production" in worse.reason
    by_f1 = decide(
        "multiclass", {"log_loss": 0.9, "f1_macro": 0.7}, {"log_loss": 0.8, "f1_macro": 0.6}, "v1", 0, "f1_macro"
    )
    assert by_f1.promote and by_f1.metric == "f1_macro" and "higher is better" in by_f1.reason
    with pytest.raises(ConfigError, match="gate_metric: expected auto or one of the multiclass test metrics"):
        decide("multiclass", {"log_loss": 0.8}, None, None, 0.0, "rmse")


def test_the_card_names_the_classes_and_the_multiclass_metrics():
    metrics = {"log_loss": 0.8123, "accuracy": 0.64, "f1_macro": 0.63, "f1_weighted": 0.635, "roc_auc_ovr": 0.86}
    metadata = {
        "package": "plans_model",
        "version": "v0003",
        "dataset": "plans",
        "target": "plan",
        "task_type": "multiclass",
        "classes": ["basic", "plus", "premium"],
        "metrics": {**metrics, "rows": 500},
        "gate": {"reason": "no production model yet: the first model is promoted"},
        "data": {
            "source": "plans.csv",
            "rows_valid": 3000,
            "rows_read": 3000,
            "rows_quarantined": 0,
            "fingerprint": "f",
        },
        "split": {"method": "time", "splits": {"test": {"rows": 500}}},
        "features": ["usage_hours", "region"],
        "created_at": "2026-12-01T00:00:00Z",
        "model_sha256": "0" * 64,
    }
    segments = pd.DataFrame(
        [
            {"segment": "region", "level": "north", "rows": 200, "log_loss": 0.7, "accuracy": 0.7, "f1_macro": 0.7},
            {"segment": "region", "level": "east", "rows": 90, "log_loss": 1.1, "accuracy": 0.5, "f1_macro": 0.5},
        ]
    )
    card = model_card_markdown(metadata, segments)
    assert (
        "It returns a probability for each of its 3 classes (`basic`, `plus`, `premium`) and the most likely one"
        in card
    )
    for name in HEADLINE["multiclass"]:
        assert f"| {name} | {metrics[name]:.4f} |" in card, name
    weakest = card.split("## Weakest segments")[1]
    assert weakest.index("east") < weakest.index("north")  # the highest log loss is the weakest


def test_a_class_name_from_the_data_reaches_the_card_escaped():
    from nbops.dashboards.widgets import card_html
    from nbops.registry.card import model_card_html

    hostile = "a`<img src=x onerror=alert(1)>"
    metadata = {
        "package": "p",
        "version": "v1",
        "dataset": "d",
        "target": "t",
        "task_type": "multiclass",
        "classes": [hostile, "b"],
        "metrics": {},
        "data": {"source": "d.csv", "rows_valid": 1, "rows_read": 1, "rows_quarantined": 0, "fingerprint": "f"},
        "split": {"method": "random", "splits": {}},
        "features": [],
        "created_at": "now",
        "model_sha256": "0",
    }
    card = model_card_markdown(metadata, pd.DataFrame())
    for page in (model_card_html(card, "p v1"), card_html(card)):
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_dask_engine_refuses_a_multiclass_model_naming_the_engine(trained, tmp_path):
    engine = DaskEngine(ComputeParams(engine="dask"))
    with pytest.raises(ConfigError) as info:
        engine.train(
            TrainParams(engine="dask"),
            schema=trained.schema,
            transform=trained.transform,
            train_rows=tmp_path / "train.parquet",
            valid_rows=tmp_path / "valid.parquet",
            model_out=tmp_path / "model.txt",
            summary_out=tmp_path / "summary.json",
        )
    text = str(info.value)
    assert "engine 'dask' cannot train a multiclass model yet" in text and "4 classes" in text
    assert text.rstrip().endswith("(or drop ENGINE=dask / --set engine=dask)")
    assert not (tmp_path / "model.txt").exists()
