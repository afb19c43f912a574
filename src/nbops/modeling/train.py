"""The train stage: LightGBM with early stopping, deterministic for a seed, saved as text (never pickled)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbops.config.params import TrainParams
from nbops.data.io import write_json
from nbops.data.schema import TableSchema
from nbops.files import write_with
from nbops.progress import Progress
from nbops.runtime.transform import FeatureTransform

log = logging.getLogger(__name__)


def resolve_threads(num_threads: int, parallel_tasks: int) -> int:
    """Threads for LightGBM: as set, or the cores divided by the tasks running at once.

    Oversubscribing the cores makes LightGBM several times slower, not faster, when two tasks train
    at once, so the default never asks for more threads than the task's share of the cores.
    """
    if num_threads > 0:
        return num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // parallel_tasks)


def booster_params(params: TrainParams, task_type: str, num_class: int = 0) -> dict[str, Any]:
    """The full LightGBM parameter set; every source of randomness is seeded.

    Args:
        num_class: the number of classes of a multiclass target (early stopping on multi_logloss).
    """
    objective = {
        "binary": ("binary", ["binary_logloss", "auc"]),
        "multiclass": ("multiclass", ["multi_logloss", "multi_error"]),
        "regression": ("regression", ["l2", "l1"]),
    }[task_type]
    classes = {"num_class": num_class} if task_type == "multiclass" else {}
    return {
        "objective": objective[0],
        **classes,
        "metric": objective[1],
        "first_metric_only": True,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": 1 if params.bagging_fraction < 1 else 0,
        "lambda_l2": params.lambda_l2,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": resolve_threads(params.num_threads, params.parallel_tasks),
        "verbosity": -1,
    }


@dataclass
class TrainResult:
    """The trained booster and how training went."""

    booster: lgb.Booster
    best_iteration: int
    history: dict[str, dict[str, list[float]]]
    params: dict[str, Any]
    summary: dict[str, Any]


def lightgbm_feature_names(names: list[str]) -> list[str]:
    """Feature names as LightGBM stores them: it refuses ``"``, ``,``, ``:``, brackets and braces
    (JSON's special characters) and rewrites spaces. Inside the model file each name is reduced to
    letters, digits and ``_`` (and kept unique); reports, SHAP and the scoring API keep the user's
    names, which follow the transform's ``feature_names`` by position."""
    out: list[str] = []
    for name in names:
        safe = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "feature"
        candidate, n = safe, 1
        while candidate in out:
            n += 1
            candidate = f"{safe}_{n}"
        out.append(candidate)
    return out


def train_model(
    params: TrainParams,
    *,
    schema: TableSchema,
    transform: FeatureTransform,
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    model_out: Path,
    summary_out: Path,
) -> TrainResult:
    """Train with early stopping on the validation split and save the model in LightGBM's text format.

    Returns:
        The booster (trimmed to its best iteration), learning curves and a summary.
    """
    lgb_params = booster_params(params, schema.task_type, len(schema.classes))
    x_train = transform.transform(train_rows)
    x_valid = transform.transform(valid_rows)
    categorical = transform.categorical_indices
    dtrain = lgb.Dataset(
        x_train,
        label=schema.target_codes(train_rows[schema.target]),
        feature_name=lightgbm_feature_names(transform.feature_names),
        categorical_feature=categorical,
        free_raw_data=False,
    )
    dvalid = lgb.Dataset(
        x_valid, label=schema.target_codes(valid_rows[schema.target]), reference=dtrain, categorical_feature=categorical
    )
    history: dict[str, dict[str, list[float]]] = {}
    bar = Progress(params.num_boost_round, "boosting", unit="tree")

    def progress(env: lgb.callback.CallbackEnv) -> None:
        bar.update(1)

    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=params.num_boost_round,
        valid_sets=[dtrain, dvalid],
        valid_names=["train", "valid"],
        callbacks=[
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
            progress,
        ],
    )
    bar.close()
    best = booster.best_iteration or params.num_boost_round
    model_out.parent.mkdir(parents=True, exist_ok=True)
    write_with(lambda tmp: booster.save_model(str(tmp), num_iteration=best), model_out)
    # Reload so callers hold exactly the saved model (trimmed to the best iteration).
    booster = lgb.Booster(model_file=str(model_out))
    valid_scores = {f"valid_{m}": float(v[best - 1]) for m, v in history["valid"].items()}
    summary = {
        "best_iteration": int(best),
        "trees_trained": int(len(next(iter(history["valid"].values())))),
        "num_threads": lgb_params["num_threads"],
        "train_rows": len(train_rows),
        "valid_rows": len(valid_rows),
        "features": transform.feature_names,
        **valid_scores,
    }
    write_json({"summary": summary, "booster_params": lgb_params}, summary_out)
    log.info("trained %d trees (best iteration %d)", summary["trees_trained"], best)
    return TrainResult(booster, int(best), history, lgb_params, summary)


def learning_curves(history: dict[str, dict[str, list[float]]], best_iteration: int) -> dict[str, Any]:
    """The learning curves as data (the runs index keeps them, so runs can be overlaid later): per split
    the first metric's value per boosting round, rounded to 6 significant digits."""
    metric = next(iter(history["valid"]))
    return {
        "metric": metric,
        "best_iteration": int(best_iteration),
        **{
            split: [float(f"{v:.6g}") for v in history[split][metric]]
            for split in ("train", "valid")
            if split in history
        },
    }


def learning_curve(history: dict[str, dict[str, list[float]]], best_iteration: int) -> Figure:
    """Training and validation loss per boosting round, with the early-stopping point marked."""
    metric = next(iter(history["valid"]))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for split in ("train", "valid"):
        ax.plot(np.arange(1, len(history[split][metric]) + 1), history[split][metric], label=split)
    ax.axvline(best_iteration, color="grey", linestyle="--", label=f"best iteration {best_iteration}")
    ax.set_xlabel("boosting round")
    ax.set_ylabel(metric)
    ax.set_title("Learning curve")
    ax.legend()
    fig.tight_layout()
    return fig
