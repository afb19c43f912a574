"""The pandas engine: every step in this process, on DataFrames read from the stage's Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from nbops.config.params import TrainParams
    from nbops.data.schema import TableSchema
    from nbops.modeling.train import TrainResult
    from nbops.monitoring.estimate import Estimator
    from nbops.monitoring.monitor import AlertRules, BatchMonitoring
    from nbops.monitoring.profile import ReferenceProfile
    from nbops.runtime.model import ScoringModel
    from nbops.runtime.transform import FeatureTransform


class PandasEngine:
    """One process, pandas and LightGBM (the default)."""

    name = "pandas"

    def train(
        self,
        params: TrainParams,
        *,
        schema: TableSchema,
        transform: FeatureTransform,
        train_rows: Path,
        valid_rows: Path,
        model_out: Path,
        summary_out: Path,
    ) -> TrainResult:
        from nbops.modeling.train import train_model

        return train_model(
            params,
            schema=schema,
            transform=transform,
            train_rows=pd.read_parquet(train_rows),
            valid_rows=pd.read_parquet(valid_rows),
            model_out=model_out,
            summary_out=summary_out,
        )

    def reference_profile(
        self, train_rows: Path, transform_file: Path, model_file: Path, classes: list[str] | None = None
    ) -> ReferenceProfile:
        import lightgbm as lgb
        import numpy as np

        from nbops.monitoring.profile import build_reference_profile
        from nbops.runtime.transform import FeatureTransform

        transform = FeatureTransform.load(transform_file)
        rows = transform.with_derived(pd.read_parquet(train_rows))  # derived features are profiled too
        booster = lgb.Booster(model_file=str(model_file))
        return build_reference_profile(
            rows,
            transform.numeric,
            list(transform.categorical),
            np.asarray(booster.predict(transform.transform(rows))),
            classes,
        )

    def score_wheel(self, wheel: Path, package: str, source: Path, dest: Path, summary_out: Path) -> dict[str, Any]:
        from nbops.deploy.batch import score_with_wheel

        return score_with_wheel(wheel, package, source, dest, summary_out)

    def monitor_batch(
        self,
        batch_id: str,
        source: Path,
        *,
        labelled: bool,
        month: str | None,
        model: ScoringModel,
        profile: ReferenceProfile,
        reference_metrics: dict[str, float],
        rules: AlertRules,
        target: str,
        estimator: Estimator | None = None,
    ) -> BatchMonitoring:
        from nbops.monitoring.monitor import monitor_batch

        frame = pd.read_parquet(source)
        if not labelled:
            frame = frame.drop(columns=[target], errors="ignore")
        return monitor_batch(
            batch_id,
            frame,
            model=model,
            profile=profile,
            reference_metrics=reference_metrics,
            rules=rules,
            target=target if labelled else None,
            month=month,
            estimator=estimator,
        )
