"""The stage runners: what each stage notebook calls, and what a plain-Python run calls in sequence.

Each runner takes a resolved :class:`~nbops.stage.Stage` (typed parameters and product paths), does
the stage's work through the library, logs it to W&B, and returns what the notebook shows. Nothing
here knows the order of the stages: that lives in ``pipeline.yaml`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd

from nbops.data.ingest import IngestResult, ingest
from nbops.data.schema import TableSchema
from nbops.features.build import FeaturesResult, build_features
from nbops.modeling.evaluate import Evaluation, evaluate_model
from nbops.modeling.train import TrainResult, learning_curve, train_model
from nbops.runtime.transform import FeatureTransform
from nbops.stage import Stage
from nbops.tracking import start_run


def _config(stage: Stage) -> dict[str, Any]:
    return stage.params.model_dump()


def run_ingest(stage: Stage) -> IngestResult:
    """Ingest: read or simulate, validate, quarantine, profile, fingerprint."""
    result = ingest(
        stage.params,
        project=stage.project,
        raw=stage.out("raw"),
        valid=stage.out("valid"),
        quarantine=stage.out("quarantine"),
        summary=stage.out("summary"),
        profile=stage.out("profile"),
    )
    result.schema.save(stage.out("schema"))
    with start_run("ingest", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project, private_columns=result.schema.private) as run:
        summary = result.summary()
        run.log_metrics({k: summary[k] for k in ("rows_read", "rows_valid", "rows_quarantined")})
        run.log_artifact(f"{result.schema.dataset}-valid", "dataset", [stage.product["valid"], stage.product["schema"]], {"fingerprint": result.fingerprint, "source_sha256": result.source_sha256})
        if result.validation.n_quarantined:
            run.log_table("quarantine_reasons", result.validation.reasons)
    return result


def load_schema(stage: Stage) -> TableSchema:
    return TableSchema.load(stage.inp("ingest", "schema"))


def run_features(stage: Stage) -> FeaturesResult:
    """Features: time-ordered split and the fitted feature transform."""
    schema = load_schema(stage)
    result = build_features(
        stage.params,
        schema=schema,
        valid_rows=stage.inp("ingest", "valid"),
        out={k: stage.out(k) for k in ("train", "valid", "test", "transform", "summary")},
    )
    with start_run("features", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project) as run:
        run.log_metrics({f"rows_{k}": v for k, v in result.split.sizes().items()})
        run.log_artifact("feature-transform", "transform", [stage.product["transform"]], {"features": result.transform.feature_names})
    return result


def run_train(stage: Stage) -> TrainResult:
    """Train: LightGBM with early stopping, saved as text."""
    schema = load_schema(stage)
    transform = FeatureTransform.load(stage.inp("features", "transform"))
    result = train_model(
        stage.params,
        schema=schema,
        transform=transform,
        train_rows=pd.read_parquet(stage.inp("features", "train")),
        valid_rows=pd.read_parquet(stage.inp("features", "valid")),
        model_out=stage.out("model"),
        summary_out=stage.out("summary"),
    )
    curve = stage.out("learning_curve")
    learning_curve(result.history, result.best_iteration).savefig(curve, dpi=110)
    with start_run("train", config={**_config(stage), "booster": result.params}, mode=stage.params.tracking, project_dir=stage.project) as run:
        run.log_metrics({k: v for k, v in result.summary.items() if isinstance(v, int | float)})
        run.log_images({"learning_curve": curve})
        run.log_artifact("model", "model", [stage.product["model"], stage.inp("features", "transform")], {"best_iteration": result.best_iteration})
    return result


def run_evaluate(stage: Stage) -> Evaluation:
    """Evaluate: test metrics, plots, SHAP and segments."""
    schema = load_schema(stage)
    evaluation = evaluate_model(
        stage.params,
        schema=schema,
        transform=FeatureTransform.load(stage.inp("features", "transform")),
        booster=lgb.Booster(model_file=str(stage.inp("train", "model"))),
        test_rows=pd.read_parquet(stage.inp("features", "test")),
        out={k: stage.out(k) for k in ("metrics", "segments", "importance", "predictions", "plots")},
    )
    with start_run("evaluate", config=_config(stage), mode=stage.params.tracking, project_dir=stage.project, private_columns=schema.private) as run:
        run.log_metrics(evaluation.metrics, prefix="test/")
        run.log_images(evaluation.plots)
        run.log_table("segment_metrics", evaluation.segments)
    return evaluation


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
