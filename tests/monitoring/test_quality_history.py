"""Data quality counts, the idempotent history and alerts log, and monitor_batch on bad and labelled batches."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nbops.data.ingest import simulator_schema
from nbops.data.simulate import EDUCATION_LEVELS, simulate_batch, simulate_history
from nbops.monitoring.history import read_alerts, read_history, replace_alerts, upsert_history
from nbops.monitoring.monitor import AlertRules, monitor_batch
from nbops.monitoring.profile import build_reference_profile
from nbops.monitoring.quality import check_quality
from nbops.registry.publish import input_schema
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import FieldSpec, InputSchema
from nbops.runtime.transform import FeatureTransform

TABLE_SCHEMA = simulator_schema()
NUMERIC = [c.name for c in TABLE_SCHEMA.features if c.kind == "numeric"]
CATEGORICAL = [c.name for c in TABLE_SCHEMA.features if c.kind == "categorical"]
TARGET = TABLE_SCHEMA.target


# --------------------------------------------------------------------------- check_quality


@pytest.fixture
def small_schema() -> InputSchema:
    return InputSchema(
        [
            FieldSpec("age", "numeric", nullable=False, min=18, max=100),
            FieldSpec("income", "numeric", min=0),
            FieldSpec("grade", "categorical", categories=["A", "B", "C"]),
            FieldSpec("region", "categorical", categories=["north", "south"]),
        ]
    )


def test_check_quality_counts_every_kind_of_problem(small_schema):
    batch = pd.DataFrame(
        {
            "age": pd.Series(
                [30, "abc", 17, 101, None, "45", "x?"], dtype=object
            ),  # 2 not numbers, 2 out of range, 1 missing
            "income": [1.0, -5.0, 2.0, np.nan, 3.0, 4.0, 1e9],  # 1 below the minimum, no maximum
            "grade": pd.Series(["A", "D", "B", "E", "D", None, "C"], dtype="str"),  # 3 rows unseen (D, E, D)
            # "region" is missing
        }
    )
    report = check_quality(batch, small_schema)
    assert report.rows == 7
    assert report.missing_columns == ["region"]
    cols = {c.name: c for c in report.columns}
    assert set(cols) == {"age", "income", "grade"}
    assert (cols["age"].wrong_type, cols["age"].out_of_range, cols["age"].unseen) == (2, 2, 0)
    assert cols["age"].missing_rate == pytest.approx(1 / 7)
    assert (cols["income"].wrong_type, cols["income"].out_of_range) == (0, 1)
    assert cols["income"].missing_rate == pytest.approx(1 / 7)
    assert (cols["grade"].unseen, cols["grade"].wrong_type, cols["grade"].out_of_range) == (3, 0, 0)
    assert {"'D'", "'E'"} <= set(cols["grade"].examples)
    issues = "\n".join(report.issues)
    assert "column 'region' is missing" in issues
    assert "'age': 2 values are not numbers" in issues and "'abc'" in issues
    assert "'age': 2 values outside the declared range" in issues
    assert "'income': 1 values outside the declared range" in issues
    assert "'grade': 3 rows with categories not in the schema" in issues
    json.dumps(report.to_dict())


def test_numbers_read_as_text_are_checked_as_numbers(small_schema):
    # A CSV column with one typo comes back as text: the parsable values still count as numbers.
    batch = pd.DataFrame(
        {
            "age": pd.Series(["30", "40", "forty", "150"], dtype="str"),
            "income": [1.0, 2.0, 3.0, 4.0],
            "grade": pd.Series(["A", "B", "C", "A"], dtype="str"),
            "region": pd.Series(["north", "south", None, "north"], dtype="str"),
        }
    )
    cols = {c.name: c for c in check_quality(batch, small_schema).columns}
    assert (cols["age"].wrong_type, cols["age"].out_of_range) == (1, 1)
    assert cols["region"].unseen == 0 and cols["region"].missing_rate == pytest.approx(0.25)


def test_clean_batch_has_no_issues():
    batch, _ = simulate_batch(1, rows=2_000, seed=4)
    report = check_quality(batch, input_schema(TABLE_SCHEMA))
    assert report.issues == []
    assert all(c.examples == [] for c in report.columns)
    missing = {c.name: c.missing_rate for c in report.columns}
    assert missing["education"] == pytest.approx(batch["education"].isna().mean())
    assert missing["age"] == 0.0


def test_new_category_batch_reports_the_unseen_purpose():
    batch, _ = simulate_batch(1, rows=2_000, seed=4, drift="new-category")
    report = check_quality(batch, input_schema(TABLE_SCHEMA))
    purpose = next(c for c in report.columns if c.name == "loan_purpose")
    assert purpose.unseen == int((batch["loan_purpose"] == "buy_now_pay_later").sum()) > 0
    assert any("loan_purpose" in issue and "buy_now_pay_later" in issue for issue in report.issues)


def test_zero_row_batch_says_so(small_schema):
    empty = pd.DataFrame(
        {
            "age": pd.Series([], dtype=float),
            "income": [],
            "grade": pd.Series([], dtype="str"),
            "region": pd.Series([], dtype="str"),
        }
    )
    report = check_quality(empty, small_schema)
    assert report.rows == 0
    assert report.issues == ["the batch has no rows"]
    assert all(c.missing_rate == 0.0 for c in report.columns)
    # A file with no columns at all: no rows, and every column missing.
    bare = check_quality(pd.DataFrame(), small_schema)
    assert bare.issues[0] == "the batch has no rows"
    assert bare.missing_columns == ["age", "income", "grade", "region"]


# --------------------------------------------------------------------------- history and alerts


def test_upsert_history_replaces_a_batch_row_and_appends_new_ones(tmp_path):
    path = tmp_path / "monitoring" / "history.parquet"
    upsert_history(path, [{"batch_id": "2025-02", "month": "2025-02", "status": "ok", "rows": 10, "psi__age": 0.01}])
    upsert_history(path, [{"batch_id": "2025-01", "month": "2025-01", "status": "ok", "rows": 7}])
    # The same batch again (labels arrived): later values win, fields not sent are kept, new fields added.
    returned = upsert_history(
        path, [{"batch_id": "2025-02", "month": "2025-02", "rows": 12, "perf__roc_auc": 0.71, "psi__age": None}]
    )
    history = read_history(path)
    assert list(returned["batch_id"]) == list(history["batch_id"])
    assert list(history["batch_id"]) == ["2025-01", "2025-02"]  # one row per batch, in month order
    row = history.set_index("batch_id").loc["2025-02"]
    assert row["rows"] == 12
    assert row["status"] == "ok"
    assert row["psi__age"] == pytest.approx(0.01)  # a missing value never erases a known one
    assert row["perf__roc_auc"] == pytest.approx(0.71)
    assert pd.isna(history.set_index("batch_id").loc["2025-01", "perf__roc_auc"])
    # Running the same update again changes nothing.
    upsert_history(path, [{"batch_id": "2025-02", "month": "2025-02", "rows": 12, "perf__roc_auc": 0.71}])
    pd.testing.assert_frame_equal(read_history(path), history)
    assert not list(path.parent.glob("*.tmp"))


def test_upsert_history_without_rows_leaves_the_file_alone(tmp_path):
    path = tmp_path / "history.parquet"
    assert upsert_history(path, []).empty and not path.exists()
    upsert_history(path, [{"batch_id": "a", "rows": 1}])
    assert len(upsert_history(path, [])) == 1


def test_replace_alerts_replaces_only_that_batch(tmp_path):
    path = tmp_path / "alerts.jsonl"
    replace_alerts(path, "2025-01", [{"kind": "drift", "message": "m1"}, {"kind": "data_quality", "message": "m2"}])
    replace_alerts(path, "2025-02", [{"kind": "drift", "message": "m3"}])
    everything = replace_alerts(path, "2025-01", [{"kind": "performance", "message": "m4"}])
    assert everything == read_alerts(path)
    by_batch = {}
    for a in read_alerts(path):
        by_batch.setdefault(a["batch_id"], []).append(a["message"])
    assert by_batch == {"2025-02": ["m3"], "2025-01": ["m4"]}
    replace_alerts(path, "2025-01", [])
    assert [a["message"] for a in read_alerts(path)] == ["m3"]
    assert read_alerts(tmp_path / "absent.jsonl") == []


# --------------------------------------------------------------------------- monitor_batch


@pytest.fixture(scope="module")
def model_and_profile():
    """A small LightGBM model on the simulator's features, wrapped as the registry would load it."""
    history, _ = simulate_history(rows=20_000, seed=3)
    transform = FeatureTransform.fit(history, NUMERIC, CATEGORICAL)
    x = transform.transform(history)
    data = lgb.Dataset(
        x, history[TARGET].to_numpy(), categorical_feature=transform.categorical_indices, free_raw_data=False
    )
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "num_threads": 1, "verbose": -1, "seed": 0},
        data,
        num_boost_round=60,
    )
    model = ScoringModel(booster, transform, input_schema(TABLE_SCHEMA), {"version": "vtest", "task_type": "binary"})
    profile = build_reference_profile(history, NUMERIC, CATEGORICAL, booster.predict(x))
    return model, profile


@pytest.fixture(scope="module")
def labelled_batch() -> pd.DataFrame:
    batch, _ = simulate_batch(1, rows=5_000, seed=3)
    return batch


def test_monitor_batch_missing_columns_is_an_alert_not_comparable(model_and_profile, labelled_batch):
    model, profile = model_and_profile
    batch = labelled_batch.drop(columns=["annual_income", "region"])
    result = monitor_batch(
        "b-missing",
        batch,
        model=model,
        profile=profile,
        reference_metrics={"roc_auc": 0.8},
        rules=AlertRules(),
        target=TARGET,
    )
    assert result.row["status"] == "alert"
    assert result.row["status_reason"] == "critical: not comparable: 2 columns are missing ('annual_income', 'region')"
    assert result.drift is None and result.performance is None
    quality = [a for a in result.alerts if a["kind"] == "data_quality"]
    assert {a["message"] for a in quality} >= {"column 'annual_income' is missing", "column 'region' is missing"}
    assert all(a["severity"] == "critical" for a in quality if "missing" in a["message"])
    assert result.quality.missing_columns == ["annual_income", "region"]


def test_monitor_zero_row_batch_is_an_alert(model_and_profile, labelled_batch):
    model, profile = model_and_profile
    result = monitor_batch(
        "b-empty", labelled_batch.iloc[:0], model=model, profile=profile, reference_metrics={}, rules=AlertRules()
    )
    assert result.row["status"] == "alert" and result.row["rows"] == 0
    assert "not comparable" in result.row["status_reason"]
    assert any(
        a["kind"] == "data_quality" and "no rows" in a["message"] and a["severity"] == "critical" for a in result.alerts
    )


def test_monitor_batch_with_bad_values_reports_them_and_still_monitors(model_and_profile, labelled_batch):
    model, profile = model_and_profile
    batch = labelled_batch.copy()
    batch["age"] = batch["age"].astype(object)
    batch.loc[batch.index[:5], "age"] = "unknown"
    batch.loc[batch.index[5:8], "region"] = "atlantis"
    result = monitor_batch("b-bad", batch, model=model, profile=profile, reference_metrics={}, rules=AlertRules())
    # 5 and 3 bad rows of 5,000: a small share, worth watching, not an alert.
    assert result.row["status"] == "watch" and result.drift is not None
    quality = {a["message"]: a["severity"] for a in result.alerts if a["kind"] == "data_quality"}
    assert any("'age': 5 values are not numbers (0.1% of 5,000 rows" in m for m in quality)
    assert any("'region': 3 rows with categories not in the schema (0.1% of 5,000 rows" in m for m in quality)
    assert set(quality.values()) == {"info"}


def test_monitor_batch_with_labels_reports_sklearn_auc(model_and_profile, labelled_batch):
    model, profile = model_and_profile
    predictions = model.booster.predict(model.transform(labelled_batch))
    auc = roc_auc_score(labelled_batch[TARGET], predictions)
    assert 0.6 < auc < 1.0  # the model learned something: a meaningful reference for the next test
    result = monitor_batch(
        "2025-01",
        labelled_batch,
        model=model,
        profile=profile,
        reference_metrics={"roc_auc": auc},
        rules=AlertRules(),
        target=TARGET,
        month="2025-01",
    )
    assert result.row["status"] == "ok" and result.row["labels"] == "arrived"
    assert result.row["perf__roc_auc"] == pytest.approx(auc, rel=1e-12)
    assert result.row["perf__labelled_rows"] == len(labelled_batch)
    assert result.row["mean_prediction"] == pytest.approx(predictions.mean())
    assert not [a for a in result.alerts if a["kind"] == "performance"]
    # Given predictions are used as they are.
    given = np.clip(predictions + np.random.default_rng(0).normal(0, 0.05, len(predictions)), 0, 1)
    other = monitor_batch(
        "2025-01",
        labelled_batch,
        model=model,
        profile=profile,
        reference_metrics={"roc_auc": auc},
        rules=AlertRules(),
        target=TARGET,
        predictions=given,
    )
    assert other.row["perf__roc_auc"] == pytest.approx(roc_auc_score(labelled_batch[TARGET], given), rel=1e-12)
    # Without labels there is no performance, and no performance alert.
    unlabelled = monitor_batch(
        "2025-01",
        labelled_batch.drop(columns=[TARGET]),
        model=model,
        profile=profile,
        reference_metrics={"roc_auc": auc},
        rules=AlertRules(),
        target=TARGET,
    )
    assert unlabelled.performance is None and not any(k.startswith("perf__") for k in unlabelled.row)
    assert unlabelled.row["labels"] == "pending"


def test_performance_alert_fires_when_auc_falls_far_below_the_reference(model_and_profile, labelled_batch):
    model, profile = model_and_profile
    predictions = model.booster.predict(model.transform(labelled_batch))
    reference_auc = roc_auc_score(labelled_batch[TARGET], predictions)
    shuffled = labelled_batch.assign(
        **{TARGET: np.random.default_rng(1).permutation(labelled_batch[TARGET].to_numpy())}
    )
    shuffled_auc = roc_auc_score(shuffled[TARGET], predictions)
    assert shuffled_auc < reference_auc - AlertRules().max_auc_drop  # labels unrelated to the scores
    result = monitor_batch(
        "2025-02",
        shuffled,
        model=model,
        profile=profile,
        reference_metrics={"roc_auc": reference_auc},
        rules=AlertRules(),
        target=TARGET,
    )
    assert result.row["perf__roc_auc"] == pytest.approx(shuffled_auc, rel=1e-12)
    perf = [a for a in result.alerts if a["kind"] == "performance"]
    # The drop is far more than twice the allowed 0.05: critical.
    assert len(perf) == 1 and perf[0]["severity"] == "critical" and result.row["status"] == "alert"
    assert f"{shuffled_auc:.3f}" in perf[0]["message"]
    assert result.row["alerts"] == len(result.alerts)


def test_monitoring_rows_and_alerts_are_idempotent_per_batch(model_and_profile, labelled_batch, tmp_path):
    model, profile = model_and_profile
    history, alerts = tmp_path / "history.parquet", tmp_path / "alerts.jsonl"
    batch = labelled_batch.assign(loan_amount=labelled_batch["loan_amount"] * 3)  # drifts: one drift alert
    for _ in range(2):  # a retried job
        result = monitor_batch(
            "2025-03", batch, model=model, profile=profile, reference_metrics={}, rules=AlertRules(), month="2025-03"
        )
        upsert_history(history, [result.row])
        replace_alerts(alerts, "2025-03", result.alerts)
    rows = read_history(history)
    assert list(rows["batch_id"]) == ["2025-03"]
    assert rows.loc[0, "dataset_drift"] and "loan_amount" in rows.loc[0, "drifted_features"].split(",")
    logged = read_alerts(alerts)
    assert [a["kind"] for a in logged].count("drift") == 1
    assert len(logged) == len(result.alerts)


def test_education_levels_match_the_schema():
    # The quality check reads categories from the declared schema; guard the fixture's assumption.
    spec = next(f for f in input_schema(TABLE_SCHEMA).fields if f.name == "education")
    assert spec.categories == list(EDUCATION_LEVELS) and spec.nullable
