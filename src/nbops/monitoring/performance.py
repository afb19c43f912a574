"""Model performance on a batch once its labels have arrived: ROC AUC and calibration for binary
models, log loss, accuracy and F1 for multiclass ones, RMSE and MAE for regression."""

from __future__ import annotations

import numpy as np

from nbops.modeling.metrics import task_metrics


def batch_performance(task_type: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float] | None:
    """Metrics on the labelled rows, or None while no label has arrived.

    Args:
        labels: 0/1, the number, or (multiclass) each row's class position; NaN while unknown.
        predictions: one score per row, or a multiclass model's (rows, classes) probabilities.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    known = ~np.isnan(y)
    if known.sum() == 0:
        return None
    y, p = y[known], p[known]
    metrics = task_metrics(task_type, y, p)
    metrics["labelled_rows"] = float(known.sum())
    if task_type == "binary":
        # Expected calibration error over deciles of the score, and observed vs predicted rate.
        order = np.argsort(p)
        bins = np.array_split(order, min(10, len(order)))
        metrics["calibration_error"] = float(
            sum(abs(y[b].mean() - p[b].mean()) * len(b) for b in bins if len(b)) / len(p)
        )
        metrics["observed_rate"] = float(y.mean())
    return metrics
