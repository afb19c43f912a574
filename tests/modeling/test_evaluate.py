"""Evaluation metrics against direct numpy computations, segments, SHAP importance, written products."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.config.params import EvaluateParams
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.modeling.evaluate import (
    PREDICTION,
    class_labels,
    evaluate_model,
    metrics_table,
    segment_metrics,
    segments_table,
    shap_importance,
)
from nbops.modeling.metrics import HEADLINE, binary_metrics, regression_metrics
from nbops.runtime.transform import FeatureTransform

# --- direct computations -----------------------------------------------------------------------


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _ks(y: np.ndarray, p: np.ndarray) -> float:
    """max over thresholds of TPR - FPR, predicting positive when p >= t."""
    best = 0.0
    for t in np.unique(p):
        tpr = np.mean(p[y == 1] >= t)
        fpr = np.mean(p[y == 0] >= t)
        best = max(best, tpr - fpr)
    return float(best)


def _average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Sum over thresholds (high to low) of precision times the recall gained."""
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(p)[::-1]:
        flagged = p >= t
        tp = np.sum(flagged & (y == 1))
        recall = tp / np.sum(y == 1)
        ap += (recall - prev_recall) * tp / np.sum(flagged)
        prev_recall = recall
    return float(ap)


def _example(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(scale=0.2, size=n), 0.01, 0.99)
    p = p.round(2)  # rounded, so there are ties
    return y, p


# --- binary ------------------------------------------------------------------------------------


def test_binary_metrics_match_direct_computation():
    y, p = _example()
    m = binary_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(_auc(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-12)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    assert m["ks"] == pytest.approx(_ks(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(_average_precision(y, p), abs=1e-12)
    assert m["rows"] == len(y)
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert m["mean_prediction"] == pytest.approx(p.mean())


def test_binary_metrics_closed_form_cases():
    # The textbook example: of the four positive/negative pairs, three are ordered right.
    y = np.array([0.0, 0.0, 1.0, 1.0])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["ks"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.65**2 + 0.04) / 4)
    # Perfect separation.
    perfect = binary_metrics(np.array([0, 0, 1, 1.0]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["ks"] == 1.0 and perfect["pr_auc"] == 1.0
    # A constant score carries no information.
    flat = binary_metrics(np.array([0, 1, 0, 1.0]), np.full(4, 0.5))
    assert flat["roc_auc"] == 0.5 and flat["ks"] == 0.0
    assert flat["log_loss"] == pytest.approx(np.log(2))


def test_binary_metrics_survive_probabilities_of_exactly_zero_and_one():
    m = binary_metrics(np.array([0, 1, 1, 0.0]), np.array([0.0, 1.0, 0.0, 1.0]))
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 10  # clipped, very bad, not infinite
    assert m["brier"] == pytest.approx(0.5)


def test_binary_metrics_on_a_single_class_give_only_rates():
    m = binary_metrics(np.zeros(5), np.full(5, 0.2))
    assert "roc_auc" not in m
    assert m == {"rows": 5.0, "positive_rate": 0.0, "mean_prediction": pytest.approx(0.2)}


# --- regression --------------------------------------------------------------------------------


def test_regression_metrics_match_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 200)
    p = y + rng.normal(0, 1, 200)
    m = regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)), rel=1e-12)
    assert m["mae"] == pytest.approx(np.mean(np.abs(y - p)), rel=1e-12)
    assert m["r2"] == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2), rel=1e-12)
    assert m["mean_target"] == pytest.approx(y.mean())


def test_regression_metrics_closed_form():
    y = np.array([1.0, 2.0, 3.0])
    assert regression_metrics(y, y)["rmse"] == 0.0 and regression_metrics(y, y)["r2"] == 1.0
    mean_only = regression_metrics(y, np.full(3, 2.0))
    assert mean_only["r2"] == pytest.approx(0.0)
    assert mean_only["mae"] == pytest.approx(2 / 3)
    assert np.isnan(regression_metrics(np.array([1.0]), np.array([2.0]))["r2"])


def test_metrics_table_lists_the_headline():
    y, p = _example()
    table = metrics_table(binary_metrics(y, p), "binary")
    assert table["metric"].tolist() == HEADLINE["binary"]
    assert table.set_index("metric").loc["roc_auc", "value"] == pytest.approx(round(_auc(y, p), 4))


# --- segments ----------------------------------------------------------------------------------

SCHEMA = TableSchema(
    dataset="toy",
    target="y",
    task_type="binary",
    time_column="month",
    columns=[
        ColumnSpec("uid", "text", "id"),
        ColumnSpec("month", "time", "time"),
        ColumnSpec("signal", "numeric"),
        ColumnSpec("noise", "numeric"),
        ColumnSpec("grade", "categorical", categories=["A", "B", "C"]),
        ColumnSpec("y", "numeric", "target"),
    ],
)


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    grade = rng.choice(["A", "B", "C"], n).astype(object)
    grade[rng.random(n) < 0.05] = None
    y = (rng.random(n) < 1 / (1 + np.exp(-2.5 * signal))).astype(float)
    months = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D")
    return pd.DataFrame(
        {
            "uid": [f"u{i}" for i in range(n)],
            "month": months,
            "signal": signal,
            "noise": rng.normal(size=n),
            "grade": grade,
            "y": y,
        }
    )


def test_segment_metrics_one_row_per_level_and_counts_sum_to_the_rows():
    rows = _rows(400, 0)
    p = np.random.default_rng(1).random(len(rows))
    seg = segment_metrics(SCHEMA, rows, p, EvaluateParams())
    assert set(seg["segment"]) == {"grade", "month"}
    grade = seg[seg["segment"] == "grade"].set_index("level")
    expected_levels = rows["grade"].fillna("(missing)")
    assert sorted(grade.index) == sorted(expected_levels.unique())
    assert grade["rows"].sum() == len(rows)
    for level, entry in grade.iterrows():
        mask = (expected_levels == level).to_numpy()
        assert entry["rows"] == mask.sum()
        assert entry["roc_auc"] == pytest.approx(_auc(rows["y"].to_numpy()[mask], p[mask]))
    month = seg[seg["segment"] == "month"]
    assert sorted(month["level"]) == ["2024-01", "2024-02", "2024-03"]
    assert month["rows"].sum() == len(rows)
    assert not seg.duplicated(["segment", "level"]).any()


def test_segment_metrics_keep_the_largest_levels_and_named_columns():
    rows = _rows(400, 0)
    p = np.full(len(rows), 0.5)
    seg = segment_metrics(SCHEMA, rows, p, EvaluateParams(segment_columns=["grade"], max_segments=2))
    assert set(seg["segment"]) == {"grade"}
    top2 = rows["grade"].fillna("(missing)").value_counts().head(2)
    assert dict(zip(seg["level"], seg["rows"], strict=True)) == top2.to_dict()
    with pytest.raises(KeyError, match="nope"):
        segment_metrics(SCHEMA, rows, p, EvaluateParams(segment_columns=["nope"]))


# --- SHAP and the whole stage ------------------------------------------------------------------


def _fit(train: pd.DataFrame):
    transform = FeatureTransform.fit(train, ["signal", "noise"], ["grade"])
    booster = lgb.train(
        {
            "objective": "binary",
            "num_threads": 1,
            "seed": 0,
            "deterministic": True,
            "verbosity": -1,
            "num_leaves": 7,
            "min_data_in_leaf": 20,
        },
        lgb.Dataset(
            transform.transform(train),
            label=train["y"],
            feature_name=transform.feature_names,
            categorical_feature=transform.categorical_indices,
        ),
        num_boost_round=40,
    )
    return transform, booster


def test_shap_importance_ranks_the_informative_feature_above_noise():
    train = _rows(1000, 2)
    transform, booster = _fit(train)
    x = transform.transform(_rows(300, 3))
    contrib = booster.predict(x, pred_contrib=True)
    assert contrib.shape == (300, len(transform.feature_names) + 1)
    # SHAP values plus the bias add up to the raw score.
    np.testing.assert_allclose(contrib.sum(axis=1), booster.predict(x, raw_score=True), rtol=1e-6, atol=1e-6)
    importance = shap_importance(contrib, transform.feature_names)
    assert importance["feature"].iloc[0] == "signal"
    ranked = importance.set_index("feature")["mean_abs_shap"]
    assert ranked["signal"] > 3 * ranked["noise"]
    np.testing.assert_allclose(ranked["noise"], np.abs(contrib[:, 1]).mean())


def test_shap_importance_is_mean_absolute_value_without_the_bias():
    contrib = np.array([[1.0, -3.0, 0.5, 100.0], [-1.0, 1.0, 0.5, 100.0]])
    importance = shap_importance(contrib, ["a", "b", "c"])
    assert importance["feature"].tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(importance["mean_abs_shap"], [2.0, 1.0, 0.5])


def test_evaluate_model_writes_metrics_products_and_plots(tmp_path):
    transform, booster = _fit(_rows(1000, 4))
    test_rows = _rows(250, 5)
    out = {
        "metrics": tmp_path / "reports" / "metrics.json",
        "segments": tmp_path / "reports" / "segments.parquet",
        "importance": tmp_path / "reports" / "importance.parquet",
        "predictions": tmp_path / "data" / "predictions.parquet",
        "plots": tmp_path / "reports" / "plots",
    }
    result = evaluate_model(
        EvaluateParams(shap_sample=100, tracking="disabled"),
        schema=SCHEMA,
        transform=transform,
        booster=booster,
        test_rows=test_rows,
        out=out,
    )
    y = test_rows["y"].to_numpy()
    p = booster.predict(transform.transform(test_rows))

    metrics = json.loads(out["metrics"].read_text())
    assert metrics["task_type"] == "binary"
    assert metrics["headline"] == HEADLINE["binary"]
    assert metrics["metrics"]["roc_auc"] == pytest.approx(_auc(y, p))
    assert metrics["metrics"]["ks"] == pytest.approx(_ks(y, p))
    assert metrics["metrics"]["rows"] == len(test_rows)
    assert metrics["metrics"]["roc_auc"] > 0.75  # the model learned the signal

    predictions = pd.read_parquet(out["predictions"])
    assert list(predictions.columns) == ["uid", "month", "y", PREDICTION]
    np.testing.assert_allclose(predictions[PREDICTION], p)
    assert predictions["uid"].tolist() == test_rows["uid"].tolist()

    segments = pd.read_parquet(out["segments"])
    assert segments.groupby("segment")["rows"].sum().to_dict() == {
        "grade": len(test_rows),
        "month": len(test_rows),
    }
    importance = pd.read_parquet(out["importance"])
    assert sorted(importance["feature"]) == sorted(transform.feature_names)
    assert importance["feature"].iloc[0] == "signal"
    pd.testing.assert_frame_equal(importance, result.importance)

    expected_plots = {
        "roc",
        "precision_recall",
        "calibration",
        "score_distribution",
        "shap_importance",
        "shap_summary",
    }
    assert set(result.figures) == expected_plots
    pngs = {path.stem: path for path in out["plots"].glob("*.png")}
    assert set(pngs) == expected_plots
    for path in pngs.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_model_regression_writes_regression_plots(tmp_path):
    rng = np.random.default_rng(6)
    train, test_rows = _rows(600, 6), _rows(200, 7)
    for df in (train, test_rows):
        df["y"] = 2 * df["signal"] + rng.normal(scale=0.2, size=len(df))
    transform = FeatureTransform.fit(train, ["signal", "noise"], ["grade"])
    booster = lgb.train(
        {
            "objective": "regression",
            "num_threads": 1,
            "seed": 0,
            "verbosity": -1,
            "min_data_in_leaf": 20,
        },
        lgb.Dataset(
            transform.transform(train),
            label=train["y"],
            categorical_feature=transform.categorical_indices,
        ),
        num_boost_round=50,
    )
    schema = TableSchema("toy", "y", "regression", SCHEMA.columns, time_column="month")
    out = {name: tmp_path / f"{name}.parquet" for name in ("segments", "importance", "predictions")}
    out["metrics"] = tmp_path / "metrics.json"
    out["plots"] = tmp_path / "plots"
    result = evaluate_model(
        EvaluateParams(),
        schema=schema,
        transform=transform,
        booster=booster,
        test_rows=test_rows,
        out=out,
    )
    p = booster.predict(transform.transform(test_rows))
    y = test_rows["y"].to_numpy()
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert json.loads(out["metrics"].read_text())["headline"] == ["rmse", "mae", "r2"]
    assert {p.stem for p in out["plots"].glob("*.png")} == {
        "predicted_vs_actual",
        "residuals",
        "residual_distribution",
        "shap_importance",
        "shap_summary",
    }


# --- wording: the target's name and its positive class, never the built-in data's ------------------


def _evaluate(tmp_path, schema: TableSchema):
    transform, booster = _fit(_rows(800, 8))
    out = {name: tmp_path / f"{name}.parquet" for name in ("segments", "importance", "predictions")}
    out["metrics"] = tmp_path / "metrics.json"
    out["plots"] = tmp_path / "plots"
    return evaluate_model(
        EvaluateParams(shap_sample=100),
        schema=schema,
        transform=transform,
        booster=booster,
        test_rows=_rows(200, 9),
        out=out,
    )


def _labels(fig) -> str:
    ax = fig.axes[0]
    legend = ax.get_legend()
    return " | ".join(
        [
            ax.get_xlabel(),
            ax.get_ylabel(),
            ax.get_title(),
            *([t.get_text() for t in legend.get_texts()] if legend else []),
        ]
    )


def test_class_labels_name_the_target_and_its_positive_class():
    assert class_labels(SCHEMA) == ("y = 0", "y = 1")
    labelled = TableSchema(
        "toy",
        "churned",
        "binary",
        [ColumnSpec("churned", "categorical", "target", categories=["no", "yes"])],
        positive_class="yes",
    )
    assert class_labels(labelled) == ("churned = no", "churned = yes")


def test_calibration_axis_names_the_target_not_defaults(tmp_path):
    result = _evaluate(tmp_path, SCHEMA)
    assert result.figures["calibration"].axes[0].get_ylabel() == "observed rate of y = 1"
    assert "y = 0" in _labels(result.figures["score_distribution"]) and "y = 1" in _labels(
        result.figures["score_distribution"]
    )
    assert result.outcome == "y = 1" and result.target == "y" and result.task_type == "binary"
    for name, fig in result.figures.items():
        assert "default" not in _labels(fig).lower(), f"{name} speaks of the built-in credit data: {_labels(fig)}"
    assert "rate of y = 1" in result.describe()


def test_a_labelled_target_is_named_with_its_positive_label(tmp_path):
    columns = [
        c if c.name != "y" else ColumnSpec("y", "categorical", "target", categories=["stayed", "left"])
        for c in SCHEMA.columns
    ]
    schema = TableSchema("toy", "y", "binary", columns, time_column="month", positive_class="left")
    result = _evaluate(tmp_path, schema)
    assert result.figures["calibration"].axes[0].get_ylabel() == "observed rate of y = left"
    assert "rate of y = left" in list(result.segments_table().columns)


def test_counts_are_integers_in_metrics_and_segments(tmp_path):
    result = _evaluate(tmp_path, SCHEMA)
    assert isinstance(result.metrics["rows"], int)
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["rows"] == 200
    assert '"rows": 200\n' in (tmp_path / "metrics.json").read_text()  # 200, never 200.0
    assert pd.read_parquet(tmp_path / "segments.parquet")["rows"].dtype.kind == "i"


def test_segments_table_puts_the_headline_first_and_names_the_rates():
    y, p = _example()
    rows = _rows(len(y), 0).assign(y=y)
    seg = segment_metrics(SCHEMA, rows, p, EvaluateParams(segment_columns=["grade"]))
    table = segments_table(seg, "binary", "y = 1")
    assert list(table.columns) == ["segment", "level", "rows", *HEADLINE["binary"], "rate of y = 1", "mean prediction"]
    assert table["rows"].dtype.kind == "i"
