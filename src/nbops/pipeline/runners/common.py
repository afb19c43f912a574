"""What every runner needs: the schema from ingest, JSON products, and the stage's W&B run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nbops.data.schema import TableSchema
from nbops.pipeline.context import Stage
from nbops.tracking import Tracker, start_run


def load_schema(stage: Stage[Any]) -> TableSchema:
    """The dataset's schema as ingest stored it (the contract every later stage works to)."""
    return TableSchema.load(stage.inp("ingest", "schema"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def track(stage: Stage[Any], config: Mapping[str, Any] | None = None, private_columns: Iterable[str] = ()) -> Tracker:
    """The stage's W&B run, named by its run identity (its parameters are the run's config)."""
    return start_run(
        stage.name,
        config={**stage.params.model_dump(), **(config or {})},
        mode=getattr(stage.params, "tracking", "disabled"),
        project_dir=stage.project,
        private_columns=private_columns,
        identity=stage.identity,
    )
