"""Register: an immutable version with lineage and a model card; candidate, then the gate."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from nbops.config.params import RegisterParams
from nbops.config.spec import load_env
from nbops.data.io import write_json
from nbops.engines import engine_for
from nbops.files import write_text
from nbops.pipeline.context import Stage, env_file_in_use, run_identity
from nbops.pipeline.runners.common import load_schema, read_json, track
from nbops.registry.card import history_markdown, model_card_html
from nbops.registry.gate import GateDecision
from nbops.registry.publish import register_model, registry_for
from nbops.registry.store import ModelVersion

if TYPE_CHECKING:
    from nbops.data.schema import TableSchema

log = logging.getLogger(__name__)


@dataclass
class Registration:
    """What the register stage did."""

    version: ModelVersion
    created: bool
    promoted: bool
    gate: GateDecision
    aliases: dict[str, Any]


# Values that name this machine's folders, not what the model was built from.
NOT_RECORDED = ("root", "here", "cwd", "user", "data_version")


def recorded_env(stage: Stage[RegisterParams]) -> dict[str, Any]:
    """The env values this build ran with, as ``nbops reproduce`` needs them (paths of this machine left out)."""
    env = load_env(stage.project, env_file_in_use())
    return {k: v for k, v in env.items() if k not in NOT_RECORDED}


def performance_estimator(stage: Stage[RegisterParams], schema: TableSchema) -> bytes | None:
    """The version's performance estimator, fitted on evaluate's test predictions (never the training
    rows), as JSON: CBPE for a binary model (with the model probed on the test split's inputs for
    where the test split stops vouching for a batch), DLE (models of the absolute and squared error
    from the model's inputs) for a regression one; for a multiclass model, each class's probability
    calibrated (and the model probed as for a binary one). The features stage's test split is in the
    order of the predictions. None for a test split too small (then monitoring records realised
    performance only, and the log says why)."""
    import lightgbm as lgb

    from nbops.monitoring.estimate import (
        EstimationError,
        Estimator,
        fit_binary_estimator,
        fit_multiclass_estimator,
        fit_regression_estimator,
    )
    from nbops.runtime.model import probability_column
    from nbops.runtime.transform import FeatureTransform

    predictions = pd.read_parquet(stage.inp("evaluate", "predictions"))
    where = f"{stage.inp('evaluate', 'predictions')} (the test predictions)"
    targets = schema.target_codes(predictions[schema.target])
    transform = FeatureTransform.load(stage.inp("features", "transform"))
    features = transform.transform(pd.read_parquet(stage.inp("features", "test")))
    booster = lgb.Booster(model_file=str(stage.inp("train", "model")))
    names, categorical = transform.feature_names, transform.categorical_indices
    estimator: Estimator
    try:
        if schema.task_type == "multiclass":
            probabilities = predictions[[probability_column(c) for c in schema.classes]].to_numpy(dtype=float)
            estimator = fit_multiclass_estimator(
                probabilities,
                targets,
                schema.classes,
                where=where,
                booster=booster,
                features=features,
                feature_names=names,
                categorical=categorical,
            )
        elif schema.task_type == "binary":
            scores = predictions["prediction"].to_numpy(dtype=float)
            estimator = fit_binary_estimator(
                scores,
                targets,
                where=where,
                booster=booster,
                features=features,
                feature_names=names,
                categorical=categorical,
            )
        else:
            scores = predictions["prediction"].to_numpy(dtype=float)
            estimator = fit_regression_estimator(features, scores, targets, where=where)
    except EstimationError as exc:
        log.warning("no performance estimator for this version: %s", exc)
        return None
    return (json.dumps(estimator.to_dict()) + "\n").encode()


def run_register(stage: Stage[RegisterParams]) -> Registration:
    """Store the trained model as a new version (or find it already there) and apply the gate."""
    schema = load_schema(stage)
    gate = GateDecision(**read_json(stage.inp("evaluate", "gate")))
    registry = registry_for(stage.registry, schema.dataset)
    profile = engine_for(stage.params).reference_profile(
        stage.inp("features", "train"),
        stage.inp("features", "transform"),
        stage.inp("train", "model"),
        schema.classes or None,
    )
    train = read_json(stage.inp("train", "summary"))
    with track(stage) as run:
        version, created, promoted = register_model(
            registry=registry,
            project=stage.project,
            schema=schema,
            model_file=stage.inp("train", "model"),
            transform_file=stage.inp("features", "transform"),
            ingest_summary=read_json(stage.inp("ingest", "summary")),
            split_summary=read_json(stage.inp("features", "summary")),
            train_summary=train["summary"],
            metrics=read_json(stage.inp("evaluate", "metrics"))["metrics"],
            segments=pd.read_parquet(stage.inp("evaluate", "segments")),
            gate=gate,
            params=train["booster_params"],
            reference_profile=(json.dumps(profile.to_dict()) + "\n").encode(),
            performance_estimator=performance_estimator(stage, schema),
            wandb_run_id=run.run_id,
            run_identity=run_identity("train"),  # the training run that made this model
            raw_snapshot=stage.inp("ingest", "raw"),
            build_env=recorded_env(stage),
            keep_data_snapshots=stage.params.keep_data_snapshots,
        )
        aliases = registry.aliases()
        names = [a for a in ("candidate", "production") if aliases.get(a) == version.version]
        run.log_artifact(
            version.metadata["package"],
            "model",
            sorted(p for p in version.path.iterdir() if p.is_file()),
            {"version": version.version, "gate": gate.to_dict()},
            aliases=[version.version, *names],
        )
    card = stage.out("card")
    card.mkdir(parents=True, exist_ok=True)
    # The version's own card is immutable (checksummed); this copy adds what happened to it since.
    events = [e for e in registry.history() if version.version in (e.get("version"), e.get("previous"))]
    markdown = version.file("card.md").read_text() + "\n" + history_markdown(events)
    write_text(markdown, card / "card.md")
    write_text(model_card_html(markdown, f"{version.metadata['package']} {version.version}"), card / "card.html")
    write_json(
        {
            "version": version.version,
            "created": created,
            "promoted": promoted,
            "aliases": {a: aliases.get(a) for a in ("candidate", "production")},
            "registry": str(registry.root),
        },
        stage.out("registration"),
    )
    return Registration(version, created, promoted, gate, aliases)
