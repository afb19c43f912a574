"""The Dask engine: the same operations as the pandas engine, on a cluster (one cached client)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

    from nbops.config.params import TrainParams
    from nbops.data.schema import TableSchema
    from nbops.modeling.train import TrainResult
    from nbops.monitoring.estimate import Estimator
    from nbops.monitoring.monitor import AlertRules, BatchMonitoring
    from nbops.monitoring.profile import ReferenceProfile
    from nbops.runtime.model import ScoringModel
    from nbops.runtime.transform import FeatureTransform


class DaskEngine:
    """lightgbm.dask training and dask.dataframe scoring, profiles and drift on a Dask cluster.

    Args:
        params: anything with ``dask_scheduler`` ('local' or an address) and ``dask_workers``.
    """

    name = "dask"

    def __init__(self, params: Any) -> None:
        self.params = params

    @property
    def client(self) -> Client:
        from nbops.engines.dask.cluster import get_client

        return get_client(self.params)

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
        from nbops.engines.dask.train import train_model_dask

        if schema.task_type == "multiclass":
            from nbops.errors import ConfigError

            raise ConfigError(
                f"engine 'dask' cannot train a multiclass model yet: the target '{schema.target}' has "
                f"{len(schema.classes)} classes, and the dask engine's training, scoring and drift handle one score "
                "per row. Use the pandas engine: engine: pandas in env.yaml (or drop ENGINE=dask / --set engine=dask)"
            )
        return train_model_dask(
            self.client,
            params,
            schema=schema,
            transform=transform,
            train_rows=train_rows,
            valid_rows=valid_rows,
            model_out=model_out,
            summary_out=summary_out,
        )

    def reference_profile(
        self, train_rows: Path, transform_file: Path, model_file: Path, classes: list[str] | None = None
    ) -> ReferenceProfile:
        from nbops.engines.dask.profile import reference_profile_of_parquet

        if classes:
            from nbops.errors import ConfigError

            raise ConfigError(
                "engine 'dask' cannot profile a multiclass model's predictions yet (one probability per class); use "
                "the pandas engine: engine: pandas in env.yaml"
            )
        return reference_profile_of_parquet(self.params, train_rows, transform_file, model_file)

    def score_wheel(self, wheel: Path, package: str, source: Path, dest: Path, summary_out: Path) -> dict[str, Any]:
        from nbops.engines.dask.score import score_with_wheel_dask

        return score_with_wheel_dask(self.params, wheel, package, source, dest, summary_out)

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
        from nbops.engines.dask.monitor import monitor_batch_dask

        labels: dict[str, Any] = {"target": target} if labelled else {"exclude": (target,)}
        return monitor_batch_dask(
            self.client,
            batch_id,
            source,
            month=month,
            model=model,
            profile=profile,
            reference_metrics=reference_metrics,
            rules=rules,
            estimator=estimator,
            **labels,
        )
