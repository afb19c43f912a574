"""Evaluate: test metrics, plots, SHAP and segments, and the promotion gate against production."""

from __future__ import annotations

import lightgbm as lgb
import pandas as pd

from nbops.config.params import EvaluateParams
from nbops.data.io import write_json
from nbops.modeling.evaluate import Evaluation, evaluate_model
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import load_schema, track
from nbops.registry.gate import GateDecision, decide, production_metrics_on
from nbops.registry.publish import registry_for
from nbops.runtime.model import ScoringModel
from nbops.runtime.transform import FeatureTransform


def run_evaluate(stage: Stage[EvaluateParams]) -> tuple[Evaluation, GateDecision]:
    """Metrics and plots on the test split; the gate compares with production on the same rows."""
    schema = load_schema(stage)
    test_rows = pd.read_parquet(stage.inp("features", "test"))
    evaluation = evaluate_model(
        stage.params,
        schema=schema,
        transform=FeatureTransform.load(stage.inp("features", "transform")),
        booster=lgb.Booster(model_file=str(stage.inp("train", "model"))),
        test_rows=test_rows,
        out={k: stage.out(k) for k in ("metrics", "segments", "importance", "predictions", "plots")},
    )
    # The pipeline's production model, even when this notebook runs in the lab.
    production = registry_for(stage.production_registry, schema.dataset).alias("production")
    production_metrics = None
    if production is not None:
        model = ScoringModel.from_folder(production.path)
        production_metrics = production_metrics_on(model, test_rows, schema.target, schema.task_type)
    gate = decide(
        schema.task_type,
        evaluation.metrics,
        production_metrics,
        production.version if production else None,
        stage.params.promotion_tolerance,
        stage.params.gate_metric,
    )
    write_json(gate.to_dict(), stage.out("gate"))
    with track(stage, private_columns=schema.private) as run:
        run.log_metrics(evaluation.metrics, prefix="test/")
        run.log_metrics({"gate/promote": float(gate.promote)})
        run.log_images(evaluation.plots)
        run.log_table("segment_metrics", evaluation.segments)
    return evaluation, gate
