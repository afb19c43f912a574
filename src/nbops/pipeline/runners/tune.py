"""Tune: an Optuna study of LightGBM's parameters; its best parameters feed train."""

from __future__ import annotations

from dataclasses import replace

from nbops.config.params import TuneParams
from nbops.data.io import read_table, write_parquet
from nbops.errors import ConfigError
from nbops.files import write_json
from nbops.modeling.train import booster_params
from nbops.modeling.tune import Trial, TuningResult, history_figure, importance_figure, run_study
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import load_schema, read_json, track
from nbops.pipeline.runs import record_stage_run
from nbops.runtime.transform import FeatureTransform

# The studies of a products root, one SQLite file (each study named by what it depends on).
STUDIES = ".nbops/tune/studies.db"


def run_tune(stage: Stage[TuneParams]) -> TuningResult:
    """Run or resume the study (nothing when ``tune_trials`` is 0) and write the best parameters."""
    params = stage.params
    if params.tune_trials and params.engine == "dask":
        raise ConfigError(
            "tune_trials > 0 with engine: dask: the study trains on the pandas engine only; set tune_trials: 0 "
            "for a Dask build, or tune on a pandas build and copy the best parameters into env.yaml"
        )
    schema = load_schema(stage)
    metric_name = "valid_" + booster_params(params, schema.task_type, len(schema.classes))["metric"][0]
    data_key = read_json(stage.inp("ingest", "summary"))["fingerprint"]
    if not params.tune_trials:  # off: nothing to study, nothing to log
        params = params.model_copy(update={"tracking": "disabled"})
        stage = replace(stage, params=params)
    with track(stage) as run:

        def logged(trial: Trial) -> None:
            run.log_metrics({"trial": trial.number, "valid_loss": trial.value or float("nan")})
            # every trial is a run in the index, beside the task's own run
            record_stage_run(
                stage,
                trial=trial.number,
                params=trial.params,
                metrics={} if trial.value is None else {metric_name: trial.value},
                wandb_run_id=run.run_id,
                duration_s=trial.seconds,
                outputs={"state": trial.state.lower(), "best_iteration": trial.best_iteration},
            )

        result = run_study(
            params,
            schema=schema,
            transform=FeatureTransform.load(stage.inp("features", "transform")),
            train_rows=read_table(stage.inp("features", "train")),
            valid_rows=read_table(stage.inp("features", "valid")),
            storage=(stage.root or stage.project) / STUDIES,
            data_key=data_key,
            on_trial=logged,
        )
        if result.tuned:
            run.log_metrics({"best_valid_loss": result.best_value or float("nan"), "trials": len(result.trials)})
    write_json(result.to_dict(), stage.out("best"))
    write_parquet(result.trials_table(), stage.out("trials"))
    figures = stage.out("figures")
    figures.mkdir(parents=True, exist_ok=True)
    if result.tuned:
        history_figure(result).savefig(figures / "history.png", dpi=200)
        importance_figure(result).savefig(figures / "importances.png", dpi=200)
    return result
