"""The metrics a report leads with, per task (a module of its own: the card and the CLI need the names
without importing scikit-learn)."""

HEADLINE: dict[str, list[str]] = {
    "binary": ["roc_auc", "pr_auc", "log_loss", "brier", "ks"],
    "regression": ["rmse", "mae", "r2"],
}
