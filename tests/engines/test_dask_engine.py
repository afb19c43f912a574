"""The dask engine against the pandas engine, on a real LocalCluster (two worker processes, one
thread each, 127.0.0.1): what must be identical is identical (predictions, reference-profile bins
and quantiles, PSI and every drift number, monitoring rows), training writes the pandas products and
is reproducible, and a bad row is named by its row number with nothing written.

The model is the session's tiny registered model (tests/support/models.py): no pipeline build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbops.config.params import ComputeParams, TrainParams
from nbops.data.simulate import simulate_batch, simulate_history
from nbops.engines.dask import profile as dask_profile
from nbops.engines.dask.cluster import describe, get_client, workers_in_order
from nbops.engines.dask.monitor import monitor_batch_dask
from nbops.engines.dask.parquet import frame, plan_pieces
from nbops.engines.dask.score import (
    prediction_summary,
    score_parquet,
    scorer_from_folder,
    scorer_from_wheel,
)
from nbops.engines.dask.train import early_stopping_point, train_model_dask
from nbops.engines.dask.work import model_ref
from nbops.errors import DataError
from nbops.modeling.train import learning_curve
from nbops.monitoring.drift import DriftThresholds, compare
from nbops.monitoring.monitor import AlertRules, monitor_batch
from nbops.monitoring.profile import ReferenceProfile, build_reference_profile
from nbops.registry.store import Registry
from nbops.runtime.batch import score_file
from nbops.runtime.integrity import PROFILE_FILE
from nbops.runtime.model import ScoringModel
from nbops.runtime.transform import FeatureTransform
from tests.support import REPO, TinyModel, train_tiny_booster

NUMERIC = [
    "age",
    "annual_income",
    "debt_to_income",
    "credit_utilization",
    "num_delinquencies_2y",
    "months_since_last_delinquency",
    "interest_rate",
    "loan_amount",
]
CATEGORICAL = ["employment_type", "home_ownership", "loan_purpose", "region", "education"]
pytestmark = pytest.mark.slow  # a LocalCluster of two worker processes
MEAN_STD_RTOL = 1e-12  # the only profile fields summed in another order than numpy's


@pytest.fixture(scope="module")
def client():
    """The engine's own cached client: a LocalCluster of two single-threaded worker processes."""
    c = get_client(ComputeParams(engine="dask", dask_scheduler="local", dask_workers=2))
    info = describe(c)
    assert info["cluster"] == "local" and info["workers"] == 2 and info["threads"] == 2
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers_in_order(c))
    return c


def test_the_local_cluster_listens_on_loopback_only(client) -> None:
    """Scheduler, nannies and workers: every listening socket is on 127.0.0.1 (no dashboard)."""
    import psutil

    me = psutil.Process()
    pids = {int(p) for p in client.run(lambda: __import__("os").getpid()).values()}
    listening = [
        (p.pid, c.laddr)
        for p in [me, *me.children(recursive=True)]
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert pids <= {pid for pid, _ in listening}  # the workers were found among the children
    assert listening and all(addr.ip == "127.0.0.1" for _, addr in listening), listening


def write_parquet(df: pd.DataFrame, path: Path, row_group_size: int) -> Path:
    """Parquet with several row groups, so the table has several partitions."""
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 30,000-row simulated history in 8 row groups, with a small real model trained on it."""
    folder = tmp_path_factory.mktemp("reference")
    df, _ = simulate_history(rows=30_000, seed=3)
    booster, transform = train_tiny_booster(df, NUMERIC, CATEGORICAL, "default", rounds=20)
    path = write_parquet(df, folder / "history.parquet", 4_000)
    predictions = booster.predict(transform.transform(df))
    return {
        "df": df,
        "path": path,
        "booster": booster,
        "transform": transform,
        "profile": build_reference_profile(df, NUMERIC, CATEGORICAL, predictions),
        "folder": folder,
    }


def flatten(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        out: dict[str, object] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}/{k}"))
        return out
    return {prefix: data}


def test_reference_profile_equals_the_pandas_one(client, reference) -> None:
    pieces = plan_pieces(reference["path"])
    assert len(pieces) == 8
    features = frame(reference["path"], pieces, NUMERIC + CATEGORICAL)
    got = dask_profile.reference_profile(
        client, features, NUMERIC, CATEGORICAL, model_ref(reference["booster"], reference["transform"])
    )
    want, have = flatten(reference["profile"].to_dict()), flatten(got.to_dict())
    assert want.keys() == have.keys()
    for key, value in want.items():
        if key.endswith(("/mean", "/std")):
            assert have[key] == pytest.approx(value, rel=MEAN_STD_RTOL, nan_ok=True), key
        else:  # bin edges, shares, quantiles, missing rates, min, max, IQR, levels: exactly
            assert have[key] == value, key


@pytest.mark.parametrize("scenario", ["shock", "gradual", "new-category", "none"])
def test_drift_equals_the_pandas_drift(client, reference, scenario: str, tmp_path: Path) -> None:
    batch, _ = simulate_batch(4, rows=9_000, seed=3, drift=scenario)
    if scenario == "none":  # a column the model needs is missing: reported, not guessed
        batch = batch.drop(columns=["region"])
    path = write_parquet(batch, tmp_path / "batch.parquet", 2_500)
    ref = model_ref(reference["booster"], reference["transform"])
    profile: ReferenceProfile = reference["profile"]
    if scenario == "none":
        want = compare(profile, batch, DriftThresholds(0.2, 1))
        got = dask_profile.compare(client, profile, frame(path, plan_pieces(path)), DriftThresholds(0.2, 1))
        assert got.missing_columns == ["region"]
    else:
        want = compare(
            profile,
            batch,
            DriftThresholds(0.2, 1),
            reference["booster"].predict(reference["transform"].transform(batch)),
        )
        parts = frame(path, plan_pieces(path))
        got = dask_profile.compare(
            client, profile, parts, DriftThresholds(0.2, 1), dask_profile.predictions_of(client, parts, ref)
        )
    assert got.to_dict() == want.to_dict()  # PSI, Wasserstein, Jensen-Shannon, missing rates, decisions
    if scenario == "shock":
        assert got.dataset_drift and len(got.drifted) >= 4


@pytest.fixture(scope="module")
def production(tiny_model: TinyModel) -> dict:
    """The session's tiny registered model: its version, scoring model, reference profile and wheel."""
    version = Registry(tiny_model.version.path.parents[1]).alias("production")
    assert version is not None and version.version == tiny_model.version.version
    return {
        "version": version,
        "model": ScoringModel.from_folder(version.path),
        "profile": ReferenceProfile.load(version.file(PROFILE_FILE)),
        "wheel": tiny_model.wheel,
        "package": tiny_model.package,
        "tiny": tiny_model,
    }


def test_scoring_equals_the_wheels_scorer(client, production, tmp_path: Path) -> None:
    batch, _ = simulate_batch(2, rows=12_345, seed=5, drift="gradual")
    source = write_parquet(batch, tmp_path / "batch.parquet", 3_000)
    score_file(production["model"], source, tmp_path / "pandas.parquet", progress=False)
    result = score_parquet(
        client, scorer_from_wheel(production["wheel"], production["package"]), source, tmp_path / "dask.parquet"
    )
    assert result.rows == 12_345 and result.partitions == 5
    want, got = pd.read_parquet(tmp_path / "pandas.parquet"), pd.read_parquet(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # same model: identical predictions
    summary = prediction_summary(client, tmp_path / "dask.parquet")
    scores = want["prediction"]
    assert summary["rows"] == len(scores)
    assert summary["quantiles"] == {str(q): float(scores.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
    assert summary["mean_prediction"] == pytest.approx(float(scores.mean()), rel=1e-12)
    # a folder destination keeps the parts; the same rows in the same order
    score_parquet(client, scorer_from_folder(production["version"].path), source, tmp_path / "parts")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "parts"), want, check_exact=True)
    assert not list(tmp_path.glob(".*parts-*"))


def test_a_bad_row_is_named_by_its_row_number_and_nothing_is_written(client, production, tmp_path: Path) -> None:
    batch, _ = simulate_batch(2, rows=10_000, seed=5)
    batch["age"] = batch["age"].astype(float)
    batch.loc[7_777, "age"] = -5.0  # below the schema's minimum, in the third of four partitions
    source = write_parquet(batch, tmp_path / "batch.parquet", 2_500)
    dest = tmp_path / "out.parquet"
    with pytest.raises(DataError) as info:
        score_parquet(client, scorer_from_folder(production["version"].path), source, dest)
    message = str(info.value)
    assert "record 7777" in message and "age" in message and "below the minimum" in message and str(source) in message
    assert not dest.exists() and not list(tmp_path.glob(".*parts-*"))


@pytest.mark.parametrize(("scenario", "labelled"), [("shock", False), ("new-category", True), ("none", True)])
def test_monitoring_a_month_equals_the_pandas_monitor(
    client, production, scenario: str, labelled: bool, tmp_path: Path
) -> None:
    model, profile = production["model"], production["profile"]
    metrics = production["version"].metadata["metrics"]
    rules = AlertRules(DriftThresholds(0.2, 1), 0.05, 0.05)
    df, _ = simulate_batch(3, rows=6_000, seed=42, drift=scenario)
    path = write_parquet(df, tmp_path / "month.parquet", 1_500)
    target = "default" if labelled else None
    want = monitor_batch(
        "m",
        df if labelled else df.drop(columns=["default"]),
        model=model,
        profile=profile,
        reference_metrics=metrics,
        rules=rules,
        target=target,
        month="2025-03",
    )
    got = monitor_batch_dask(
        client,
        "m",
        path,
        model=model,
        profile=profile,
        reference_metrics=metrics,
        rules=rules,
        target=target,
        month="2025-03",
        exclude=() if labelled else ("default",),
    )
    for row in (want.row, got.row):
        row.pop("monitored_at")
    assert got.row == want.row
    assert got.alerts == want.alerts
    assert got.quality.to_dict() == want.quality.to_dict()
    assert got.performance == want.performance
    if labelled:
        assert "perf__roc_auc" in got.row


TRAIN_SCRIPT = """
import sys
from pathlib import Path
from nbops.data.schema import TableSchema
from nbops.config.params import TrainParams
from nbops.runtime.transform import FeatureTransform
from nbops.engines.dask.cluster import get_client
from nbops.engines.dask.train import train_model_dask

if __name__ == "__main__":
    inputs, out = Path(sys.argv[1]), Path(sys.argv[2])
    params = TrainParams(num_boost_round=40, early_stopping_rounds=10, engine="dask")
    train_model_dask(
        get_client(params),
        params,
        schema=TableSchema.load(inputs / "schema.yaml"),
        transform=FeatureTransform.load(inputs / "feature_transform.json"),
        train_rows=inputs / "train.parquet",
        valid_rows=inputs / "valid.parquet",
        model_out=out / "model.txt",
        summary_out=out / "summary.json",
    )
"""


def test_training_writes_the_pandas_products_and_is_reproducible(client, production, tmp_path: Path) -> None:
    """Same cluster layout, same model: in this process and in fresh processes whose string hashing
    differs (lightgbm.dask would otherwise rank the workers in a set's order)."""
    import os
    import subprocess

    from nbops.data.schema import TableSchema
    from nbops.modeling.train import train_model

    tiny: TinyModel = production["tiny"]
    transform = FeatureTransform.load(tiny.transform_file)
    schema = TableSchema.load(tiny.schema_file)
    params = TrainParams(num_boost_round=40, early_stopping_rounds=10, engine="dask")
    splits = {name: tiny.splits[name] for name in ("train", "valid")}
    # The pandas engine on the same rows: what the dask engine's products must match.
    pandas_out = tmp_path / "pandas"
    train_model(
        params.model_copy(update={"engine": "pandas"}),
        schema=schema,
        transform=transform,
        train_rows=pd.read_parquet(splits["train"]),
        valid_rows=pd.read_parquet(splits["valid"]),
        model_out=pandas_out / "model.txt",
        summary_out=pandas_out / "summary.json",
    )
    pandas_summary = json.loads((pandas_out / "summary.json").read_text())
    out0 = tmp_path / "here"
    r0 = train_model_dask(
        client,
        params,
        schema=schema,
        transform=transform,
        train_rows=splits["train"],
        valid_rows=splits["valid"],
        model_out=out0 / "model.txt",
        summary_out=out0 / "summary.json",
    )
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    for seed in ("1", "2"):
        out = tmp_path / f"hashseed{seed}"
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, str(script), str(tiny.folder), str(out)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / "model.txt").read_bytes() == (out0 / "model.txt").read_bytes(), (
            f"PYTHONHASHSEED={seed} trained another model"
        )
    text = (out0 / "model.txt").read_text()
    assert "[machines:" not in text and "[local_listen_port:" not in text and "[tree_learner: data]" in text
    saved = json.loads((out0 / "summary.json").read_text())
    assert set(pandas_summary["summary"]) <= set(saved["summary"])
    assert set(pandas_summary["booster_params"]) <= set(saved["booster_params"])
    assert lgb.Booster(model_file=str(out0 / "model.txt")).current_iteration() == r0.best_iteration
    curve = r0.history["valid"]["binary_logloss"]
    # lightgbm.dask cannot stop early: every round is trained, the model is cut at the best one
    assert len(curve) == r0.summary["trees_trained"] == 40 and len(r0.history["train"]["binary_logloss"]) == 40
    assert (r0.best_iteration, r0.summary["early_stopping_round"]) == early_stopping_point(curve, 10, False)
    # the combined curve is the global validation loss: at the best iteration it is the saved model's loss
    assert curve[r0.best_iteration - 1] == pytest.approx(r0.summary["valid_binary_logloss"], rel=1e-9)
    learning_curve(r0.history, r0.best_iteration).savefig(out0 / "curve.png")
    assert r0.summary["valid_auc"] == pytest.approx(pandas_summary["summary"]["valid_auc"], abs=0.03)


def test_partitioned_ingest_and_split_equal_the_pandas_stages(client, tmp_path: Path) -> None:
    """Valid and quarantined rows (with their row numbers), the fingerprint, the split and the
    transform: the same as validate_table + split_rows + FeatureTransform.fit on the whole table."""
    from nbops.config.params import FeaturesParams
    from nbops.data.ingest import simulator_schema
    from nbops.data.profile import fingerprint
    from nbops.data.validate import validate_table

    # The scale benchmark's partitioned ingest (not the library's): here and on the workers.
    sys.path.insert(0, str(REPO / "bench"))
    client.upload_file(str(REPO / "bench" / "dask_ingest.py"))
    from dask_ingest import ingest_partitioned, split_partitioned

    from nbops.features.split import split_rows

    raw, _ = simulate_history(rows=20_000, seed=9)
    raw["age"] = raw["age"].astype(float)
    raw.loc[[10, 7_001, 19_999], "age"] = -1.0  # quarantined, in three partitions
    raw.loc[12_345, "home_ownership"] = "castle"  # an unseen category
    source = write_parquet(raw, tmp_path / "raw.parquet", 3_000)
    schema = simulator_schema()
    want = validate_table(raw, schema, file=str(source))
    got = ingest_partitioned(
        client, source, schema, tmp_path / "valid", tmp_path / "quarantine", max_partition_rows=3_000
    )
    assert (got["rows_read"], got["rows_valid"], got["rows_quarantined"]) == (20_000, 19_996, 4)
    assert got["fingerprint"] == fingerprint(want.valid)
    pd.testing.assert_frame_equal(
        pd.concat(
            [
                pd.read_parquet(p)
                for p in sorted((tmp_path / "valid").glob("*.parquet"), key=lambda p: int(p.name.split(".")[1]))
            ],
            ignore_index=True,
        ),
        want.valid,
    )
    quarantine = pd.concat([pd.read_parquet(p) for p in (tmp_path / "quarantine").glob("*.parquet")]).sort_values(
        "_row", ignore_index=True
    )
    pd.testing.assert_frame_equal(quarantine, want.quarantine)
    assert {(r["column"], r["rows"]) for r in got["quarantine_reasons"]} == {("age", 3), ("home_ownership", 1)}
    assert sorted(r for e in got["quarantine_reasons"] for r in e["first_rows"]) == [11, 7002, 12346, 20000]

    params = FeaturesParams()
    out = {k: tmp_path / k for k in ("train", "valid_split", "test")}
    transform, summary = split_partitioned(
        client,
        tmp_path / "valid",
        schema,
        params,
        {
            "train": out["train"],
            "valid": out["valid_split"],
            "test": out["test"],
            "transform": tmp_path / "transform.json",
        },
    )
    split = split_rows(
        want.valid,
        time_column=schema.time_column,
        valid_fraction=params.valid_fraction,
        test_fraction=params.test_fraction,
        seed=params.seed,
    )
    for name, folder in (("train", out["train"]), ("valid", out["valid_split"]), ("test", out["test"])):
        parts = sorted(folder.glob("*.parquet"), key=lambda p: int(p.name.split(".")[1]))
        pd.testing.assert_frame_equal(
            pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True), getattr(split, name)
        )
        assert summary["splits"][name]["rows"] == len(getattr(split, name))
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    assert transform.to_dict() == FeatureTransform.fit(split.train, numeric, categorical).to_dict()
