"""Derived features under the dask engine: the workers run the model's feature code (shipped as text
with the transform, never imported from the project) and give what the pandas engine gives: the same
reference profile, the same monitoring row (drift of the derived features included), the same scores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbops.config.params import ComputeParams
from nbops.data.simulate import simulate_batch
from nbops.engines.dask.cluster import get_client
from nbops.engines.dask.monitor import monitor_batch_dask
from nbops.engines.dask.profile import reference_profile_of_parquet
from nbops.engines.dask.score import score_parquet, scorer_from_folder
from nbops.engines.pandas import PandasEngine
from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.monitor import AlertRules, monitor_batch
from nbops.monitoring.profile import ReferenceProfile
from nbops.runtime.batch import score_file
from nbops.runtime.integrity import PROFILE_FILE
from nbops.runtime.model import ScoringModel
from tests.deploy.test_feature_code_wheel import FEATURES
from tests.support import TinyModel, tiny_registered_model

pytestmark = pytest.mark.slow  # a LocalCluster of two worker processes

PARAMS = ComputeParams(engine="dask", dask_scheduler="local", dask_workers=2)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_registered_model(tmp_path_factory.mktemp("dask-feature-code"), rows=6_000, feature_code=FEATURES)


def write_parquet(df: pd.DataFrame, path: Path, row_group_size: int) -> Path:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return path


def test_the_reference_profile_of_derived_features_equals_the_pandas_one(model: TinyModel, tmp_path: Path):
    raw = pd.read_parquet(model.splits["train"])
    assert "loan_to_income" not in raw.columns
    train = write_parquet(raw, tmp_path / "train.parquet", 800)
    model_file = tmp_path / "model.txt"
    model_file.write_bytes((model.version.path / "model.txt").read_bytes())
    want = PandasEngine().reference_profile(train, model.transform_file, model_file)
    got = reference_profile_of_parquet(PARAMS, train, model.transform_file, model_file)
    assert "loan_to_income" in got.numeric and "age_band" in got.categorical
    assert got.numeric["loan_to_income"].edges == want.numeric["loan_to_income"].edges
    assert vars(got.categorical["age_band"]) == vars(want.categorical["age_band"])
    assert got.prediction == want.prediction


def test_monitoring_and_scoring_a_month_equal_the_pandas_engine(model: TinyModel, tmp_path: Path):
    m = ScoringModel.from_folder(model.version.path)
    profile = ReferenceProfile.from_dict(json.loads((model.version.path / PROFILE_FILE).read_text()))
    df, _ = simulate_batch(3, rows=5_000, seed=42, drift="shock")
    raw = df.drop(columns=["default"])
    path = write_parquet(raw, tmp_path / "month.parquet", 1_250)
    rules = AlertRules(DriftThresholds(0.2, 1), 0.05, 0.05)
    metrics = m.metadata["metrics"]
    want = monitor_batch("m", raw, model=m, profile=profile, reference_metrics=metrics, rules=rules, month="2025-03")
    got = monitor_batch_dask(
        get_client(PARAMS), "m", path, model=m, profile=profile, reference_metrics=metrics, rules=rules, month="2025-03"
    )
    for row in (want.row, got.row):
        row.pop("monitored_at")
    assert "psi__loan_to_income" in got.row and "psi__age_band" in got.row
    assert got.row == want.row
    score_file(m, path, tmp_path / "pandas.parquet", progress=False)
    score_parquet(get_client(PARAMS), scorer_from_folder(model.version.path), path, tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "dask.parquet"), pd.read_parquet(tmp_path / "pandas.parquet"), check_exact=True
    )
