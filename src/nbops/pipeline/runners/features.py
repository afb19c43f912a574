"""Features: the split and the one fitted feature transform."""

from __future__ import annotations

from nbops.config.params import FeaturesParams
from nbops.features.build import FeaturesResult, build_features
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import load_schema, track
from nbops.runtime.integrity import FEATURE_CODE_FILE


def run_features(stage: Stage[FeaturesParams]) -> FeaturesResult:
    """Split the valid rows (in time, or stratified at random) and fit the transform on train."""
    schema = load_schema(stage)
    result = build_features(
        stage.params,
        schema=schema,
        valid_rows=stage.inp("ingest", "valid"),
        out={
            k: stage.out(k)
            for k in ("train", "valid", "test", "transform", "summary", "feature_code")
            if k in stage.product or k != "feature_code"
        },
        project=stage.project,
    )
    with track(stage) as run:
        run.log_metrics({f"rows_{k}": v for k, v in result.split.sizes().items()})
        transform = stage.product["transform"]
        files = [transform] + ([transform.parent / FEATURE_CODE_FILE] if result.transform.derived else [])
        run.log_artifact(
            "feature-transform",
            "transform",
            files,
            {"features": result.transform.feature_names, "derived": result.transform.derived},
        )
    return result
