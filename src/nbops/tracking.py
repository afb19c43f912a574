"""Experiment tracking in Weights & Biases: offline by default, every file inside the project.

Each stage opens one run; runs of one pipeline build share a group (``NBOPS_BUILD_ID``, set by
``nbops build``). Offline runs need no account and no network and can be uploaded later with
``wandb sync``. With ``tracking: disabled`` W&B is not even imported.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nbops import progress as events
from nbops.config.paths import wandb_home

log = logging.getLogger(__name__)
PROJECT = "nbops"


def configure_wandb_dirs(project_dir: Path) -> Path:
    """Point every W&B folder (runs, artifact staging, cache, config) inside the project."""
    home = wandb_home(project_dir)
    for var, sub in (
        ("WANDB_DIR", ""),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(var, str(path))
    return home


def build_group() -> str:
    """The run group: one per pipeline build, or 'interactive' for a notebook run by hand."""
    return os.environ.get("NBOPS_BUILD_ID", "interactive")


class Tracker:
    """A stage's W&B run, or a no-op when tracking is disabled; private columns never leave."""

    def __init__(self, run: Any | None, private_columns: Iterable[str] = ()) -> None:
        self.run = run
        self.private = set(private_columns)

    @property
    def enabled(self) -> bool:
        return self.run is not None

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log_metrics(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        if self.run is None:
            return
        values = {f"{prefix}{k}": v for k, v in metrics.items()}
        self.run.log(values)
        self.run.summary.update(values)

    def log_images(self, paths: Mapping[str, Path]) -> None:
        if self.run is None:
            return
        import wandb

        self.run.log({name: wandb.Image(str(path)) for name, path in paths.items()})

    def log_table(self, name: str, df: pd.DataFrame, max_rows: int = 1000) -> None:
        if self.run is None:
            return
        import wandb

        safe = df.drop(columns=[c for c in df.columns if c in self.private])
        self.run.log({name: wandb.Table(dataframe=safe.head(max_rows).astype(str))})

    def log_artifact(
        self,
        name: str,
        kind: str,
        paths: Iterable[Path],
        metadata: Mapping[str, Any] | None = None,
        aliases: Iterable[str] = (),
    ) -> None:
        if self.run is None:
            return
        import wandb

        artifact = wandb.Artifact(name=artifact_name(name), type=kind, metadata=dict(metadata or {}))
        for path in paths:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=list(aliases) or None)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def artifact_name(name: str) -> str:
    """``name`` as W&B accepts an artifact name (letters, digits, ``-``, ``_``, ``.``; at most 128
    characters): a data file called ``loans 2024 (final).csv`` logs as ``loans-2024-final-.csv``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:128]
    return cleaned or "artifact"


def start_run(
    stage: str,
    *,
    config: Mapping[str, Any],
    mode: str,
    project_dir: Path,
    private_columns: Iterable[str] = (),
    identity: str | None = None,
) -> Tracker:
    """Open the W&B run of one stage.

    Args:
        stage: the stage name (the run's job type).
        config: the stage's parameters.
        mode: 'offline', 'online' or 'disabled'; the WANDB_MODE environment variable wins when set.
        project_dir: the project folder; W&B files go under its ``wandb/``.
        private_columns: column names never logged.
        identity: the task run's identity (see nbops.pipeline.lineage): names and tags the run, so a
            report, a product's metadata, a model version and its W&B run are matched by one id.
    """
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "disabled":
        return Tracker(None, private_columns)
    configure_wandb_dirs(project_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    group = build_group()
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", PROJECT),
        group=group,
        job_type=stage,
        name=f"{stage}-{identity or group}",
        tags=[f"identity:{identity}"] if identity else None,
        config={**dict(config), "nbops_run_identity": identity, "nbops_build_id": group},
        mode=mode,  # type: ignore[arg-type]  # WANDB_MODE is the user's text: wandb.init checks it
        dir=os.environ["WANDB_DIR"],
        reinit="finish_previous",
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )
    log.info("W&B %s run %s (group %s)", mode, run.id, group)
    # The build records the run id with the task run (nbops.pipeline.runs): W&B's offline files
    # cannot be read back.
    events.emit("tracked", wandb_run_id=run.id, identity=identity, job_type=stage)
    return Tracker(run, private_columns)
