"""What nbops knows of each metric, in one place: how it is computed, which way is better, what it
measures in words, which ones a report leads with and which one the promotion gate judges.

Light on purpose (numpy and scikit-learn's metrics only): the monitor, the gate, the card and the
comparison use it without importing the evaluate stage's plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    """A metric's direction and what it measures, for a reader."""

    higher_is_better: bool
    meaning: str


METRICS: dict[str, Metric] = {
    "roc_auc": Metric(True, "chance that a random positive row scores above a random negative one (0.5: no skill)"),
    "pr_auc": Metric(True, "average precision over all recall levels (the positive rate: no skill)"),
    "log_loss": Metric(False, "penalty for confident wrong probabilities (lower is better)"),
    "brier": Metric(False, "mean squared error of the probabilities (lower is better)"),
    "ks": Metric(True, "largest gap between the score distributions of the two classes"),
    "rmse": Metric(False, "root mean squared error (lower is better)"),
    "mae": Metric(False, "mean absolute error (lower is better)"),
    "r2": Metric(True, "share of the target's variance explained (1: perfect, 0: the mean)"),
}
# Whether a higher value is better, per metric (rows and means carry no direction).
HIGHER_IS_BETTER: dict[str, bool] = {name: m.higher_is_better for name, m in METRICS.items()}
# What each headline metric measures, for a reader of the report.
MEANING: dict[str, str] = {name: m.meaning for name, m in METRICS.items()}
# The metrics a report leads with, per task.
HEADLINE: dict[str, list[str]] = {
    "binary": ["roc_auc", "pr_auc", "log_loss", "brier", "ks"],
    "regression": ["rmse", "mae", "r2"],
}
# The metric each task is judged on by the promotion gate, and whether higher is better.
GATE_METRIC: dict[str, tuple[str, bool]] = {
    task: (name, HIGHER_IS_BETTER[name]) for task, name in {"binary": "roc_auc", "regression": "rmse"}.items()
}


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score and the Kolmogorov-Smirnov statistic."""
    if len(np.unique(y)) < 2:
        return {"rows": int(len(y)), "positive_rate": float(np.mean(y)), "mean_prediction": float(np.mean(p))}
    fpr, tpr, _ = skm.roc_curve(y, p)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15))),
        "brier": float(skm.brier_score_loss(y, p)),
        "ks": float(np.max(tpr - fpr)),
        "rows": int(len(y)),  # a count: 967, never 967.0
        "positive_rate": float(np.mean(y)),
        "mean_prediction": float(np.mean(p)),
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R²."""
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
        "mae": float(skm.mean_absolute_error(y, p)),
        "r2": float(skm.r2_score(y, p)) if len(y) > 1 else float("nan"),
        "rows": int(len(y)),
        "mean_target": float(np.mean(y)),
        "mean_prediction": float(np.mean(p)),
    }


def task_metrics(task_type: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The task's metrics of predictions ``p`` against labels ``y``."""
    return binary_metrics(y, p) if task_type == "binary" else regression_metrics(y, p)
