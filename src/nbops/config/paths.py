"""One project root, from which every path is built.

The root is the folder holding ``pipeline.yaml``. It is found from ``NBOPS_PROJECT`` when set (a
scheduler or a test can point at any copy), otherwise by walking up from the working directory, so a
notebook opened anywhere under the project resolves the same paths as the pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbops.errors import ConfigError

PIPELINE_FILE = "pipeline.yaml"
# Under the products root (``root`` in env.yaml): what nbops itself keeps there.
REGISTRY_DIR = "registry"
STATE_DIR = ".nbops"
LINEAGE_FILE = ".nbops/lineage.json"
RETRAIN_STATE = ".nbops/retrain.json"
LOGS_DIR = ".nbops/logs"
# Held by a build, a retrain or a promotion of this root (nbops.locks): one writer at a time.
BUILD_LOCK = ".nbops/build.lock"
# Held briefly by whoever rewrites the lineage or appends to the build log.
STATE_LOCK = ".nbops/state.lock"
BUILD_LOG = "reports/builds.jsonl"
# Every task run a build ran (and every tuning trial), one JSON line each (nbops.experiments.index),
# appended under its own short lock: single-task runs finish side by side.
RUNS_INDEX = ".nbops/runs.jsonl"
RUNS_LOCK = ".nbops/runs.lock"
# Compiled trees (nbops package --compiled), one shared library per model file, platform and compiler.
COMPILED_CACHE = ".nbops/cache/compiled"


def project_root(start: str | Path | None = None) -> Path:
    """Return the project folder: the nearest ancestor of ``start`` holding ``pipeline.yaml``."""
    env = os.environ.get("NBOPS_PROJECT")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / PIPELINE_FILE).exists():
            raise ConfigError(f"NBOPS_PROJECT={env} has no {PIPELINE_FILE}; point it at the nbops project folder")
        return root
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PIPELINE_FILE).exists():
            return folder
    raise ConfigError(
        f"no {PIPELINE_FILE} in {here} or any folder above it; run from inside the nbops project "
        "or set NBOPS_PROJECT to its folder"
    )


def wandb_home(project: Path) -> Path:
    """The one folder under the project that holds every W&B file (runs, staging, cache, config)."""
    return project / "wandb"


def registry_dir(root: str | Path) -> Path:
    """The model registry of the pipeline whose products are under ``root``."""
    return Path(root) / REGISTRY_DIR
