"""``nbops estimate`` on a table the model already scored: the batch-scoring output (its ``prediction``
and ``model_version`` columns, as the wheel writes them) is estimated from the scores it carries,
without loading the model or scoring a row again, so the command starts in a fraction of a second and
imports neither LightGBM nor the monitoring stage. Any other table goes to
:func:`nbops.pipeline.runners.monitor.estimate_table`, which scores it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from nbops.monitoring.estimate import PerformanceEstimate
    from nbops.registry.store import ModelVersion, Registry

SCORE_COLUMN = "prediction"  # the columns the wheel's batch scoring writes (nbops.runtime.batch)
VERSION_COLUMN = "model_version"


@dataclass
class ScoredEstimate:
    """A batch-scored table's performance estimated from the scores it carries (the same fields and
    JSON as :class:`nbops.pipeline.runners.monitor.BatchEstimate`)."""

    version: ModelVersion
    estimate: PerformanceEstimate
    realised: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        metrics = self.version.metadata.get("metrics", {})
        return {
            "version": self.version.version,
            **self.estimate.to_dict(),
            **{f"test_{k}": metrics.get(k) for k in self.estimate.metrics if k in ("roc_auc", "rmse", "mae")},
            "realised": self.realised,
            "scores": f"the table's '{SCORE_COLUMN}' column",
        }


def scored_columns(table: Path) -> list[str] | None:
    """The columns of a Parquet table when it is a batch-scoring output (it has the score and version
    columns), read from its footer alone; None for anything else (CSV included: it is read whole)."""
    if table.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        names = list(pq.read_schema(table).names)
    except (OSError, ValueError):
        return None  # not readable as Parquet here: the full path says why
    return names if SCORE_COLUMN in names and VERSION_COLUMN in names else None


def estimate_batch(registry: Registry, table: Path, version: str | None = None) -> Any:
    """``nbops estimate TABLE``: from the scores a batch-scored table carries (when they were made by the
    chosen version), else by scoring the table with the model (``estimate_table``)."""
    columns = scored_columns(table)
    if columns is not None:
        chosen = registry.get(version) if version else registry.alias("production")
        if chosen is not None and chosen.metadata.get("task_type") == "binary" and not _reads_inputs(chosen, columns):
            return estimate_scores(chosen, table, columns)
    from nbops.pipeline.runners.monitor import estimate_table

    return estimate_table(registry, table, version)


def _reads_inputs(chosen: ModelVersion, columns: list[str]) -> bool:
    """True when the version's estimator reads the model's inputs (it knows where its reference stops
    vouching) and the scored table still carries them: then the estimate scores the inputs, so a
    scored file and its unscored table get the same estimate. A table with only the scores gets the
    estimate from its scores (no widening for inputs the reference lacks)."""
    from nbops.monitoring.estimate import BinaryEstimator, EstimationError, load_estimator

    try:
        estimator = load_estimator(chosen.path)
    except EstimationError:
        return False  # estimate_scores says what is wrong
    if not isinstance(estimator, BinaryEstimator) or estimator.gaps is None:
        return False
    return set(estimator.gaps.feature_names) <= set(columns)


def estimate_scores(chosen: ModelVersion, table: Path, columns: list[str]) -> ScoredEstimate:
    """A binary model's estimate from a batch-scored table's ``prediction`` column.

    Raises:
        EstimationError: the version has no estimator, or the table was scored by another version.
    """
    import pandas as pd

    from nbops.monitoring.estimate import BinaryEstimator, EstimationError, load_estimator
    from nbops.runtime.integrity import ESTIMATOR_FILE

    estimator = load_estimator(chosen.path)
    if not isinstance(estimator, BinaryEstimator):
        raise EstimationError(
            f"version {chosen.version} has no {ESTIMATOR_FILE}: it was registered before nbops stored an estimator "
            "with each version; register it again (`make run`, or `nbops build --force --task register`)"
        )
    target = str(chosen.metadata.get("target"))
    frame: pd.DataFrame = pd.read_parquet(
        table, columns=[SCORE_COLUMN, VERSION_COLUMN, *([target] if target in columns else [])]
    )
    if frame.empty:
        raise EstimationError(f"{table} has no rows: there is nothing to estimate; check the batch file")
    versions = frame[VERSION_COLUMN].astype("string").unique().tolist()
    if versions != [chosen.version]:
        raise EstimationError(
            f"{table}: scored by {', '.join(str(v) for v in versions[:3])}, not {chosen.version}; "
            f"pass --version {versions[0]} or estimate the unscored table (its input columns) with {chosen.version}"
        )
    scores = frame[SCORE_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
    scores = scores[np.isfinite(scores)]
    realised = None
    if target in frame.columns:
        from nbops.monitoring.estimate import confusion_metrics
        from nbops.monitoring.performance import batch_performance

        labels = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(labels)
        all_scores = frame[SCORE_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
        realised = batch_performance("binary", labels, all_scores)
        if realised is not None:
            flagged = all_scores[known] >= estimator.threshold
            realised.update({k: float(v) for k, v in confusion_metrics(flagged, labels[known]).items()})
    return ScoredEstimate(chosen, estimator.estimate(scores), realised)
