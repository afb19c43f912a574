"""What nbops knows of each metric, in one place: how it is computed, which way is better, what it
measures in words, which ones a report leads with and which one the promotion gate judges.

Light on purpose (numpy and scikit-learn's metrics only): the monitor, the gate, the card and the
comparison use it without importing the evaluate stage's plots. scikit-learn is imported by the
functions that compute a metric, so reading a direction (``nbops runs``) costs no second of imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nbops.errors import ConfigError


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
    "accuracy": Metric(True, "share of rows whose most likely class is the true one"),
    "f1_macro": Metric(True, "F1 score of each class, averaged with equal weight (rare classes count as much)"),
    "f1_weighted": Metric(True, "F1 score of each class, averaged weighted by the class's rows"),
    "roc_auc_ovr": Metric(
        True, "one-vs-rest ROC AUC of each class's probability, averaged over the classes (0.5: no skill)"
    ),
    "rmse": Metric(False, "root mean squared error (lower is better)"),
    "mae": Metric(False, "mean absolute error (lower is better)"),
    "r2": Metric(True, "share of the target's variance explained (1: perfect, 0: the mean)"),
}
# Whether a higher value is better, per metric (rows and means carry no direction).
HIGHER_IS_BETTER: dict[str, bool] = {name: m.higher_is_better for name, m in METRICS.items()}
# LightGBM's evaluation metrics (the train stage's ``valid_<name>`` in its summary and learning curves).
LIGHTGBM_HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "binary_logloss": False,
    "binary_error": False,
    "multi_logloss": False,
    "multi_error": False,
    "l2": False,
    "l1": False,
    "rmse": False,
}
# Prefixes that name where a metric was measured, not what it is.
METRIC_PREFIXES = ("test/", "valid/", "train/", "perf__", "valid_", "train_", "test_")
# What each headline metric measures, for a reader of the report.
MEANING: dict[str, str] = {name: m.meaning for name, m in METRICS.items()}
# The metrics a report leads with, per task.
HEADLINE: dict[str, list[str]] = {
    "binary": ["roc_auc", "pr_auc", "log_loss", "brier", "ks"],
    "multiclass": ["log_loss", "accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr"],
    "regression": ["rmse", "mae", "r2"],
}
# The metric each task is judged on by the promotion gate, and whether higher is better.
GATE_METRIC: dict[str, tuple[str, bool]] = {
    task: (name, HIGHER_IS_BETTER[name])
    for task, name in {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}.items()
}
# The metric a labelled production batch is watched on (its alert rule is in nbops.monitoring.monitor).
MONITORED_METRIC: dict[str, str] = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}


def metric_direction(name: str) -> bool | None:
    """Whether a higher value of the metric ``name`` is better (None: a count or a metric nbops does
    not know, such as ``rows`` or ``best_iteration``). Where it was measured may prefix the name:
    ``valid_auc`` (LightGBM on the validation split), ``test/roc_auc``, ``perf__log_loss``."""
    for candidate in (name, *(name[len(p) :] for p in METRIC_PREFIXES if name.startswith(p))):
        if candidate in HIGHER_IS_BETTER:
            return HIGHER_IS_BETTER[candidate]
        if candidate in LIGHTGBM_HIGHER_IS_BETTER:
            return LIGHTGBM_HIGHER_IS_BETTER[candidate]
    return None


def gate_metric(task_type: str, configured: str = "auto") -> tuple[str, bool]:
    """The promotion gate's metric and whether higher is better: the task's default (``auto``) or
    the one ``gate_metric`` names, which must be one of the task's headline metrics.

    Raises:
        ConfigError: a metric the task's evaluation does not compute.
    """
    if configured == "auto":
        return GATE_METRIC[task_type]
    if configured not in HEADLINE[task_type]:
        raise ConfigError(
            f"gate_metric: expected auto or one of the {task_type} test metrics ({', '.join(HEADLINE[task_type])}), "
            f"found {configured!r}; set gate_metric in env.yaml (or --set gate_metric=...)"
        )
    return configured, HIGHER_IS_BETTER[configured]


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score and the Kolmogorov-Smirnov statistic."""
    from sklearn import metrics as skm

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
    from sklearn import metrics as skm

    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
        "mae": float(skm.mean_absolute_error(y, p)),
        "r2": float(skm.r2_score(y, p)) if len(y) > 1 else float("nan"),
        "rows": int(len(y)),
        "mean_target": float(np.mean(y)),
        "mean_prediction": float(np.mean(p)),
    }


def multiclass_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy, macro and weighted F1 and one-vs-rest macro ROC AUC.

    Args:
        y: each row's class, as its position among the model's classes (0 .. K-1).
        p: the (rows, K) class probabilities.

    The one-vs-rest AUC averages the classes present in ``y`` with rows of other classes too (a
    segment of one class has none: then it is left out, as ranking metrics are for a binary one).
    """
    from sklearn import metrics as skm

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[1]
    predicted = np.argmax(p, axis=1)
    out: dict[str, float] = {
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-15, 1.0), labels=list(range(k)))),
        "accuracy": float(np.mean(predicted == y)),
        "f1_macro": float(skm.f1_score(y, predicted, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(y, predicted, average="weighted", zero_division=0)),
    }
    aucs = one_vs_rest_auc(y, p)
    if aucs:
        out["roc_auc_ovr"] = float(np.mean(list(aucs.values())))
    out["rows"] = int(len(y))
    return out


def one_vs_rest_auc(y: np.ndarray, p: np.ndarray) -> dict[int, float]:
    """ROC AUC of each class's probability against the rest, for the classes ``y`` holds with rows
    of other classes beside them."""
    from sklearn import metrics as skm

    y = np.asarray(y).astype(int)
    out = {}
    for c in range(p.shape[1]):
        positive = y == c
        if positive.any() and not positive.all():
            out[c] = float(skm.roc_auc_score(positive, p[:, c]))
    return out


def per_class_metrics(y: np.ndarray, p: np.ndarray, classes: list[str]) -> list[dict[str, float | str]]:
    """Per class: rows, precision, recall and F1 of predicting it as the most likely class, its
    one-vs-rest ROC AUC, and its observed share against its mean predicted probability."""
    from sklearn import metrics as skm

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    labels = list(range(len(classes)))
    predicted = np.argmax(p, axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    aucs = one_vs_rest_auc(y, p)
    return [
        {
            "class": name,
            "rows": int(support[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "roc_auc_ovr": aucs.get(i, float("nan")),
            "observed_share": float(np.mean(y == i)) if len(y) else float("nan"),
            "mean_probability": float(np.mean(p[:, i])) if len(y) else float("nan"),
        }
        for i, name in enumerate(classes)
    ]


def confusion(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Rows: the true class; columns: the most likely class; cells: row counts."""
    from sklearn import metrics as skm

    counts: np.ndarray = skm.confusion_matrix(np.asarray(y).astype(int), np.argmax(p, axis=1), labels=list(range(k)))
    return counts


def task_metrics(task_type: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The task's metrics of predictions ``p`` against labels ``y`` (for multiclass, ``p`` holds one
    probability column per class and ``y`` each row's class position)."""
    if task_type == "multiclass":
        return multiclass_metrics(y, p)
    return binary_metrics(y, p) if task_type == "binary" else regression_metrics(y, p)
