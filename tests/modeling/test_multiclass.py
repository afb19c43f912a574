"""Multiclass models: the metrics against scikit-learn and direct computations, training with
LightGBM's multiclass objective, and what the evaluate stage writes and shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from nbops.config.params import EvaluateParams, TrainParams
from nbops.errors import ConfigError
from nbops.modeling.evaluate import evaluate_model, metrics_table, segment_metrics
from nbops.modeling.metrics import HEADLINE, gate_metric, multiclass_metrics, per_class_metrics, task_metrics
from nbops.modeling.train import booster_params
from tests.support.multiclass import MulticlassModel, train_multiclass_model

# --- metrics -------------------------------------------------------------------------------------


def _example(n: int = 400, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y.astype(float), p


def test_multiclass_metrics_match_direct_computation_and_scikit_learn():
    y, p = _example()
    m = multiclass_metrics(y, p)
    yi = y.astype(int)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), yi])), rel=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == yi))
    predicted = p.argmax(axis=1)
    f1 = []
    for c in range(4):
        tp = np.sum((predicted == c) & (yi == c))
        precision, recall = tp / np.sum(predicted == c), tp / np.sum(yi == c)
        f1.append(2 * precision * recall / (precision + recall))
    assert m["f1_macro"] == pytest.approx(np.mean(f1), rel=1e-12)
    assert m["f1_weighted"] == pytest.approx(np.average(f1, weights=np.bincount(yi)), rel=1e-12)
    assert m["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(yi, p, multi_class="ovr", average="macro"), rel=1e-12)
    assert m["rows"] == len(y) and isinstance(m["rows"], int)
    assert set(HEADLINE["multiclass"]) <= set(m)


def test_a_segment_of_one_class_has_no_auc_but_keeps_its_loss_and_accuracy():
    y, p = _example()
    only = y == 2
    m = task_metrics("multiclass", y[only], p[only])
    assert "roc_auc_ovr" not in m
    assert m["accuracy"] == pytest.approx(np.mean(p[only].argmax(axis=1) == 2))
    assert np.isfinite(m["log_loss"])


def test_per_class_metrics_match_scikit_learn():
    y, p = _example()
    rows = per_class_metrics(y, p, ["a", "b", "c", "d"])
    precision, recall, f1, support = skm.precision_recall_fscore_support(y.astype(int), p.argmax(axis=1))
    assert [r["class"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["rows"] for r in rows] == support.tolist()
    assert np.allclose([r["precision"] for r in rows], precision)
    assert np.allclose([r["recall"] for r in rows], recall)
    assert np.allclose([r["f1"] for r in rows], f1)
    assert rows[1]["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y == 1, p[:, 1]))
    assert rows[3]["mean_probability"] == pytest.approx(p[:, 3].mean())


def test_the_gate_compares_log_loss_lower_is_better_or_a_configured_metric():
    assert gate_metric("multiclass") == ("log_loss", False)
    assert gate_metric("multiclass", "f1_macro") == ("f1_macro", True)
    assert gate_metric("binary", "log_loss") == ("log_loss", False)
    with pytest.raises(ConfigError) as info:
        gate_metric("multiclass", "roc_auc")
    text = str(info.value)
    assert "gate_metric: expected auto or one of the multiclass test metrics (log_loss, accuracy" in text
    assert "found 'roc_auc'" in text and "env.yaml" in text


# --- training ------------------------------------------------------------------------------------


def test_booster_params_use_the_multiclass_objective_and_stop_on_multi_logloss():
    params = booster_params(TrainParams(), "multiclass", 4)
    assert params["objective"] == "multiclass" and params["num_class"] == 4
    assert params["metric"][0] == "multi_logloss" and params["first_metric_only"] is True
    assert "num_class" not in booster_params(TrainParams(), "binary")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> MulticlassModel:
    return train_multiclass_model(tmp_path_factory.mktemp("multiclass"), 1500)


def test_training_gives_one_tree_per_class_per_round_and_probabilities_summing_to_one(model):
    k = len(model.schema.classes)
    assert model.booster.num_model_per_iteration() == k == 4
    p = model.booster.predict(model.transform.transform(model.test))
    assert p.shape == (len(model.test), k)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-12)
    y = model.schema.target_codes(model.test[model.schema.target])
    assert multiclass_metrics(y, p)["accuracy"] > 0.45  # four classes: 0.25 by chance


def test_training_is_deterministic_for_a_seed(tmp_path):
    a = train_multiclass_model(tmp_path / "a", 600, rounds=10)
    b = train_multiclass_model(tmp_path / "b", 600, rounds=10)
    assert (tmp_path / "a/model.txt").read_bytes() == (tmp_path / "b/model.txt").read_bytes()
    assert a.booster.num_trees() == b.booster.num_trees() > 0
    summary = json.loads((tmp_path / "a/train_summary.json").read_text())
    assert "valid_multi_logloss" in summary["summary"]


# --- evaluation ----------------------------------------------------------------------------------


def _evaluate(model: MulticlassModel, folder: Path):
    out = {
        "metrics": folder / "metrics.json",
        "segments": folder / "segments.parquet",
        "importance": folder / "importance.parquet",
        "predictions": folder / "predictions.parquet",
        "plots": folder / "plots",
    }
    evaluation = evaluate_model(
        EvaluateParams(shap_sample=200),
        schema=model.schema,
        transform=model.transform,
        booster=model.booster,
        test_rows=model.test,
        out=out,
    )
    return evaluation, out


@pytest.fixture(scope="module")
def evaluated(model: MulticlassModel, tmp_path_factory: pytest.TempPathFactory):
    return _evaluate(model, tmp_path_factory.mktemp("evaluate"))


def test_evaluate_writes_the_multiclass_metrics_per_class_table_and_confusion_matrix(model, evaluated):
    evaluation, out = evaluated
    classes = model.schema.classes
    report = json.loads(out["metrics"].read_text())
    assert report["task_type"] == "multiclass" and report["headline"] == HEADLINE["multiclass"]
    assert report["classes"] == classes
    p = model.booster.predict(model.transform.transform(model.test))
    y = model.schema.target_codes(model.test[model.schema.target])
    for name, value in multiclass_metrics(y, p).items():
        assert report["metrics"][name] == pytest.approx(value, rel=1e-12)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == len(model.test)
    assert confusion.sum(axis=1).tolist() == [int(np.sum(y == i)) for i in range(4)]
    assert [r["class"] for r in report["per_class"]] == classes
    table = evaluation.per_class_table()
    assert list(table.columns[:5]) == ["plan", "rows", "precision", "recall", "f1"]
    assert evaluation.confusion_table().columns[0] == "true plan"
    assert "4 classes of plan" in evaluation.describe()
    assert metrics_table(evaluation.metrics, "multiclass")["metric"].tolist() == HEADLINE["multiclass"]


def test_evaluate_predictions_hold_each_class_probability_and_the_most_likely_class(model, evaluated):
    _, out = evaluated
    predictions = pd.read_parquet(out["predictions"])
    columns = [f"proba_{c}" for c in model.schema.classes]
    assert set(columns) <= set(predictions.columns) and "prediction" not in predictions.columns
    probabilities = predictions[columns].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    best = np.asarray(model.schema.classes)[probabilities.argmax(axis=1)]
    assert predictions["predicted_label"].tolist() == best.tolist()
    assert predictions["customer_id"].tolist() == model.test["customer_id"].tolist()


def test_evaluate_draws_the_multiclass_plots_and_shap_per_class(model, evaluated):
    _, out = evaluated
    for name in ("confusion_matrix", "roc_per_class", "calibration_per_class", "shap_importance", "shap_summary"):
        assert (out["plots"] / f"{name}.png").stat().st_size > 1000, name
    importance = pd.read_parquet(out["importance"])
    per_class = [f"mean_abs_shap__{c}" for c in model.schema.classes]
    assert set(per_class) <= set(importance.columns)
    assert np.allclose(importance[per_class].sum(axis=1), importance["mean_abs_shap"])


def test_shap_values_per_class_add_up_to_each_class_raw_score(model):
    """The per-class layout of pred_contrib is read right: features plus bias give the class's score."""
    x = model.transform.transform(model.test.head(50))
    k = len(model.schema.classes)
    contrib = np.asarray(model.booster.predict(x, pred_contrib=True)).reshape(len(x), k, -1)
    raw = model.booster.predict(x, raw_score=True)
    assert np.allclose(contrib.sum(axis=2), raw, atol=1e-9)


def test_segment_metrics_work_for_a_multiclass_model(model):
    p = model.booster.predict(model.transform.transform(model.test))
    segments = segment_metrics(model.schema, model.test, p, EvaluateParams())
    assert set(segments["segment"]) == {"region", "month"}
    north = segments[(segments["segment"] == "region") & (segments["level"] == "north")].iloc[0]
    mask = (model.test["region"] == "north").to_numpy()
    y = model.schema.target_codes(model.test[model.schema.target])
    assert north["rows"] == mask.sum()
    assert north["accuracy"] == pytest.approx(np.mean(p[mask].argmax(axis=1) == y[mask]))
