"""The tune stage: an Optuna study of LightGBM's parameters on the validation split.

- Seeded: a TPE sampler with the pipeline's seed and one trial at a time, so the same study
  proposes the same trials; LightGBM itself is deterministic (see nbops.modeling.train).
- The first trial is the train parameters as set, so the best is never worse than them on the
  validation loss the study minimises.
- Bad trials are pruned on the validation loss as boosting goes (a median pruner).
- The study lives in SQLite under the products root, named by what it depends on (the data, the
  space, the fixed parameters): an interrupted study resumes; a finished one runs no new trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbops.config.params import TUNABLE, TrainParams, TuneParams
from nbops.data.schema import TableSchema
from nbops.modeling.train import booster_params, lightgbm_feature_names
from nbops.progress import Progress
from nbops.runtime.transform import FeatureTransform

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One trial of the study: its number, parameters, validation loss, state and duration."""

    number: int
    params: dict[str, Any]
    value: float | None
    state: str
    seconds: float
    best_iteration: int | None = None


@dataclass
class TuningResult:
    """What the study found (``tuned`` False when ``tune_trials`` is 0)."""

    tuned: bool
    metric: str = ""
    best: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    default_value: float | None = None
    trials: list[Trial] = field(default_factory=list)
    ran_now: int = 0
    study: str = ""
    importances: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tuned": self.tuned,
            "metric": self.metric,
            "best": self.best,
            "best_value": self.best_value,
            "default_value": self.default_value,
            "trials": len(self.trials),
            "ran_now": self.ran_now,
            "study": self.study,
            "importances": self.importances,
        }

    def describe(self) -> str:
        if not self.tuned:
            return "No tuning: `tune_trials` is 0, so train uses its parameters as set in env.yaml."
        gain = (
            f"{self.default_value - self.best_value:.5f}"
            if self.default_value is not None and self.best_value is not None
            else "n/a"
        )
        resumed = f"{self.ran_now} run now, {len(self.trials) - self.ran_now} from earlier runs of the same study"
        pruned = sum(t.state == "PRUNED" for t in self.trials)
        return (
            f"**{len(self.trials)} trials** ({resumed}; {pruned} pruned). Best validation {self.metric} "
            f"**{self.best_value:.5f}** against {self.default_value:.5f} with the parameters as set "
            f"(lower is better: {gain} less). Train uses the best parameters."
        )

    def trials_table(self) -> pd.DataFrame:
        rows = [
            {"trial": t.number, "state": t.state.lower(), self.metric: t.value, **t.params, "seconds": t.seconds}
            for t in self.trials
        ]
        return pd.DataFrame(rows)


def tuned_params(params: TrainParams, tuning: dict[str, Any]) -> TrainParams:
    """The train parameters with a study's best values in place (unchanged without tuning)."""
    if not tuning.get("tuned"):
        return params
    return params.model_copy(update={k: v for k, v in tuning["best"].items() if k in TUNABLE})


def study_name(params: TuneParams, schema: TableSchema, data_key: str) -> str:
    """Named by what the study depends on: a changed input starts a new study, the same one resumes."""
    fixed = params.model_dump(exclude={"tune_trials", "tracking", "num_threads", "parallel_tasks", "engine"})
    blob = json.dumps({"params": fixed, "task": schema.task_type, "data": data_key}, sort_keys=True, default=str)
    return "nbops-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_study(
    params: TuneParams,
    *,
    schema: TableSchema,
    transform: FeatureTransform,
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    storage: Path,
    data_key: str,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Run (or resume) the study until it has ``tune_trials`` finished trials."""
    if params.tune_trials == 0:
        return TuningResult(tuned=False)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage.parent.mkdir(parents=True, exist_ok=True)
    name = study_name(params, schema, data_key)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{storage}",
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
    )
    defaults = {k: getattr(params, k) for k in params.tune_space}
    if not study.trials:
        study.enqueue_trial(defaults)  # trial 0: the parameters as set
    x_train, x_valid = transform.transform(train_rows), transform.transform(valid_rows)
    names = lightgbm_feature_names(transform.feature_names)
    base = booster_params(params, schema.task_type, len(schema.classes))
    metric = base["metric"][0]
    dataset_params = {"feature_pre_filter": False, "verbosity": -1}  # min_data_in_leaf varies by trial
    dtrain = lgb.Dataset(
        x_train,
        label=schema.target_codes(train_rows[schema.target]),
        feature_name=names,
        categorical_feature=transform.categorical_indices,
        free_raw_data=False,
        params=dataset_params,
    )
    dvalid = lgb.Dataset(
        x_valid, label=schema.target_codes(valid_rows[schema.target]), reference=dtrain, params=dataset_params
    )
    done = [t for t in study.trials if t.state.is_finished()]
    remaining = max(0, params.tune_trials - len(done))
    bar = Progress(remaining, "tuning", unit="trial")

    def objective(trial: optuna.Trial) -> float:
        chosen: dict[str, Any] = {}
        for key, dim in params.tune_space.items():
            if TUNABLE[key] is int:
                chosen[key] = trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
            else:
                chosen[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
        trial_params = booster_params(params.model_copy(update=chosen), schema.task_type, len(schema.classes))

        def prune(env: lgb.callback.CallbackEnv) -> None:
            value = next(r[2] for r in env.evaluation_result_list or [] if r[0] == "valid" and r[1] == metric)
            trial.report(float(value), env.iteration)
            if trial.should_prune():
                raise optuna.TrialPruned()

        history: dict[str, dict[str, list[float]]] = {}
        booster = lgb.train(
            trial_params,
            dtrain,
            num_boost_round=params.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False),
                lgb.record_evaluation(history),
                prune,
            ],
        )
        best = booster.best_iteration or params.num_boost_round
        trial.set_user_attr("best_iteration", int(best))
        return float(history["valid"][metric][best - 1])

    def finished(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        if on_trial is not None:
            on_trial(_trial(frozen))

    started = time.perf_counter()
    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[finished], gc_after_trial=False)
    bar.close()
    log.info("tuning: %d trials run in %.1f s", remaining, time.perf_counter() - started)
    trials = [_trial(t) for t in study.trials if t.state.is_finished()]
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    best = min(complete, key=lambda t: (t.value, t.number))
    first = next((t for t in complete if t.number == 0), None)
    importances: dict[str, float] = {}
    if len(complete) >= 3 and len(params.tune_space) > 1:
        try:
            importances = {
                k: float(v)
                for k, v in optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=params.seed)
                ).items()
            }
        except (RuntimeError, ValueError) as exc:  # e.g. every trial proposed the same values
            log.warning("parameter importances not computed: %s", exc)
    return TuningResult(
        tuned=True,
        metric=f"valid_{metric}",
        best={k: best.params[k] for k in params.tune_space},
        best_value=best.value,
        default_value=first.value if first else None,
        trials=trials,
        ran_now=remaining,
        study=name,
        importances=importances,
    )


def _trial(frozen: Any) -> Trial:
    start, end = frozen.datetime_start, frozen.datetime_complete
    return Trial(
        number=int(frozen.number),
        params=dict(frozen.params),
        value=None if frozen.value is None else float(frozen.value),
        state=frozen.state.name,
        seconds=round((end - start).total_seconds(), 3) if start and end else 0.0,
        best_iteration=frozen.user_attrs.get("best_iteration"),
    )


def history_figure(result: TuningResult) -> Figure:
    """Each trial's validation loss (pruned trials at their last reported value are left out) and
    the best so far: the optimisation history, drawn offline."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    done = [t for t in result.trials if t.state == "COMPLETE" and t.value is not None]
    xs = np.array([t.number for t in done])
    ys = np.array([t.value for t in done], dtype=float)
    if len(done):
        ax.scatter(xs, ys, s=14, color="#4c72b0", label="trial")
        ax.step(xs, np.minimum.accumulate(ys), where="post", color="#c0392b", label="best so far")
    if result.default_value is not None:
        ax.axhline(result.default_value, color="grey", linestyle="--", linewidth=1, label="parameters as set")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.metric)
    ax.set_title("Optimisation history")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(result: TuningResult) -> Figure:
    """How much of the loss's variation each searched parameter explains (fANOVA)."""
    fig = Figure(figsize=(6, 0.6 + 0.4 * max(len(result.importances), 1)))
    ax = fig.subplots()
    items = sorted(result.importances.items(), key=lambda kv: kv[1])
    if items:
        ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_xlabel("importance (share of the loss's variance)")
    else:
        ax.text(0.5, 0.5, "too few trials for importances", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Parameter importances")
    fig.tight_layout()
    return fig
