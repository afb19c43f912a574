"""The operations a compute engine provides: the heavy steps of the stages, on paths.

Both engines take and give the same things (Parquet paths in, the same products and result types
out), so a stage runner asks :func:`nbops.engines.engine_for` once and never branches on the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nbops.config.params import TrainParams
    from nbops.data.schema import TableSchema
    from nbops.modeling.train import TrainResult
    from nbops.monitoring.estimate import Estimator
    from nbops.monitoring.monitor import AlertRules, BatchMonitoring
    from nbops.monitoring.profile import ReferenceProfile
    from nbops.runtime.model import ScoringModel
    from nbops.runtime.transform import FeatureTransform


class Engine(Protocol):
    """Where the train, register, batch-score and monitor stages do their heavy work."""

    name: str

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
        """Train LightGBM with early stopping; write the model (LightGBM text) and its summary."""
        ...

    def reference_profile(
        self, train_rows: Path, transform_file: Path, model_file: Path, classes: list[str] | None = None
    ) -> ReferenceProfile:
        """The monitoring reference: the training rows' distributions and the model's scores on them
        (``classes``: a multiclass model's, in the order of its outputs: each one's probability)."""
        ...

    def score_wheel(self, wheel: Path, package: str, source: Path, dest: Path, summary_out: Path) -> dict[str, Any]:
        """Score a table with the packaged wheel's model, as a deployment would; write a summary."""
        ...

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
        """Quality, drift and (when ``labelled``) performance of one stored batch; without labels the
        target column is left out, as it is when a month is first monitored."""
        ...
