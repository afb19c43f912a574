"""Train: LightGBM with early stopping on the chosen engine, saved as text."""

from __future__ import annotations

from nbops.config.params import TrainParams
from nbops.data.io import write_json
from nbops.engines import engine_for
from nbops.modeling.train import TrainResult, learning_curve, learning_curves
from nbops.modeling.tune import tuned_params
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import load_schema, read_json, track
from nbops.runtime.transform import FeatureTransform


def run_train(stage: Stage[TrainParams]) -> TrainResult:
    """Train on the train split, stop early on the validation split, save the learning curve.

    With a tune task upstream that tuned, its best parameters replace the ones set in env.yaml."""
    params = stage.params
    if "tune" in stage.upstream:
        params = tuned_params(params, read_json(stage.inp("tune", "best")))
    result = engine_for(params).train(
        params,
        schema=load_schema(stage),
        transform=FeatureTransform.load(stage.inp("features", "transform")),
        train_rows=stage.inp("features", "train"),
        valid_rows=stage.inp("features", "valid"),
        model_out=stage.out("model"),
        summary_out=stage.out("summary"),
    )
    # The curves as data beside the summary, which the runs index records after the build.
    summary = stage.out("summary")
    write_json(
        {**read_json(summary), "learning_curves": learning_curves(result.history, result.best_iteration)}, summary
    )
    curve = stage.out("learning_curve")
    learning_curve(result.history, result.best_iteration).savefig(curve, dpi=200)
    with track(stage, config={"booster": result.params}) as run:
        run.log_metrics({k: v for k, v in result.summary.items() if isinstance(v, int | float)})
        run.log_images({"learning_curve": curve})
        run.log_artifact(
            "model",
            "model",
            [stage.product["model"], stage.inp("features", "transform")],
            {"best_iteration": result.best_iteration},
        )
    return result
