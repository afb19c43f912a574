"""The monitor stage on a Dask cluster: each month's Parquet is checked, scored and compared there.

:func:`monitor_batch_dask` gives what :func:`nbops.monitoring.monitor.monitor_batch` gives for the
same rows (the tests compare them): data quality is counted per partition and summed, drift comes
from :func:`nbops.engines.dask.profile.compare` (identical PSI and distances), and the predictions and labels
come back to the client for the batch's mean score and its labelled performance (eight bytes a row
each: a month that does not fit in memory still has predictions that do). The history row and the
alerts are built by the pandas engine's own :func:`~nbops.monitoring.monitor.summarise_batch`.

``nbops.pipeline.runners.monitor.run_monitor`` calls it for each month when ``engine`` is ``dask``; everything else
in the stage is shared with the pandas engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nbops.engines.dask.parquet import empty_frame, frame, plan_pieces
from nbops.engines.dask.profile import compare, predictions_of
from nbops.engines.dask.work import ModelRef, compute_all, with_derived
from nbops.monitoring.estimate import Estimator
from nbops.monitoring.monitor import AlertRules, BatchMonitoring, summarise_batch
from nbops.monitoring.profile import ReferenceProfile
from nbops.monitoring.quality import ColumnQuality, QualityReport, check_quality
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import InputSchema

if TYPE_CHECKING:
    from distributed import Client


def _labels(part: pd.DataFrame, target: str) -> np.ndarray:
    return part[target].to_numpy(dtype=float, na_value=np.nan)


def merge_quality(reports: list[QualityReport], schema: InputSchema) -> QualityReport:
    """One :class:`QualityReport` from the partitions' reports, as ``check_quality`` gives on the whole."""
    rows = sum(r.rows for r in reports)
    kinds = {f.name: f.kind for f in schema.fields}
    columns: list[ColumnQuality] = []
    for i, first in enumerate(reports[0].columns):
        parts = [r.columns[i] for r in reports]
        null = sum(round(c.missing_rate * r.rows) for c, r in zip(parts, reports, strict=True))
        examples: list[str] = []
        for c in parts:
            for e in c.examples:
                # numeric: the first offending values in row order; categorical: the first distinct ones
                if kinds.get(first.name) == "numeric" or e not in examples:
                    examples.append(e)
        columns.append(
            ColumnQuality(
                first.name,
                float(null / rows) if rows else 0.0,
                sum(c.wrong_type for c in parts),
                sum(c.out_of_range for c in parts),
                sum(c.unseen for c in parts),
                examples[:3],
            )
        )
    return QualityReport(rows, reports[0].missing_columns, columns)


def monitor_batch_dask(
    client: Client,
    batch_id: str,
    source: Path,
    *,
    model: ScoringModel,
    profile: ReferenceProfile,
    reference_metrics: dict[str, float],
    rules: AlertRules,
    target: str | None = None,
    month: str | None = None,
    exclude: tuple[str, ...] = (),
    estimator: Estimator | None = None,
) -> BatchMonitoring:
    """Quality, drift, performance (when ``target`` labels are present) and alerts for the Parquet
    batch at ``source`` (a file or a folder), without ``exclude`` columns."""
    import dask

    from nbops.engines.dask.cluster import workers_in_order

    pieces = plan_pieces(source, min_pieces=len(workers_in_order(client)))
    columns = [c for c in empty_frame(source).columns if c not in exclude]
    batch = frame(source, pieces, columns)
    check = dask.delayed(check_quality, pure=True)
    quality = (
        merge_quality(
            compute_all(client, [check(p, model.schema) for p in batch.to_delayed()], "data quality"), model.schema
        )
        if pieces
        else check_quality(empty_frame(source, columns), model.schema)
    )
    if quality.rows == 0 or quality.missing_columns:
        return summarise_batch(batch_id, month, model, quality, None, None, None, reference_metrics, rules)
    ref = ModelRef(model.booster.model_to_string(), model.feature_transform.to_dict(include_code=True))
    futures = predictions_of(client, batch, ref)
    try:
        drift = compare(client, profile, with_derived(batch, model.feature_transform, ref), rules.drift, futures)
        predictions = np.concatenate(client.gather(futures))
    finally:
        client.cancel(futures)
    labels = None
    if target is not None and target in columns:
        labels = np.concatenate(
            compute_all(
                client,
                [dask.delayed(_labels, pure=True)(p, target) for p in frame(source, pieces, [target]).to_delayed()],
                "labels",
            )
        )
    return summarise_batch(
        batch_id, month, model, quality, drift, predictions, labels, reference_metrics, rules, estimator=estimator
    )
