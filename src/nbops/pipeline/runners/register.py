"""Register: an immutable version with lineage and a model card; candidate, then the gate."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd

from nbops.config.params import RegisterParams
from nbops.data.io import write_json
from nbops.engines import engine_for
from nbops.pipeline.context import Stage, run_identity
from nbops.pipeline.runners.common import load_schema, read_json, track
from nbops.registry.gate import GateDecision
from nbops.registry.publish import register_model, registry_for
from nbops.registry.store import ModelVersion


@dataclass
class Registration:
    """What the register stage did."""

    version: ModelVersion
    created: bool
    promoted: bool
    gate: GateDecision
    aliases: dict[str, Any]


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
            wandb_run_id=run.run_id,
            run_identity=run_identity("train"),  # the training run that made this model
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
    for name in ("card.md", "card.html"):
        shutil.copyfile(version.file(name), card / name)
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
