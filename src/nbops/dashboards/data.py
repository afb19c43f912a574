"""Where the dashboards read from: the products of the latest build, found through pipeline.yaml."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.monitoring.history import read_alerts, read_history
from nbops.monitoring.profile import ReferenceProfile
from nbops.paths import project_root
from nbops.pipeline_spec import load_env, load_tasks
from nbops.registry.store import PROFILE_FILE, ModelVersion, Registry

ENV_VAR = "NBOPS_ENV"


@dataclass
class DashboardData:
    """Everything the dashboards show, loaded once per page view."""

    project: Path
    products: dict[str, dict[str, Path]]
    history: pd.DataFrame
    alerts: list[dict[str, Any]]
    registry: Registry | None
    production: ModelVersion | None
    versions: list[ModelVersion]
    profile: ReferenceProfile | None
    last_run: float | None

    def batch_path(self, batch_id: str) -> Path | None:
        folder = self.products.get("monitor", {}).get("batches")
        if folder is None:
            return None
        for suffix in (".parquet", ".csv"):
            path = folder / f"{batch_id}{suffix}"
            if path.exists():
                return path
        return None

    @property
    def last_run_text(self) -> str:
        if self.last_run is None:
            return "never"
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.last_run))


def load_dashboard_data(env_file: str | None = None) -> DashboardData:
    """Read the latest outputs of the pipeline built with ``env_file`` (default: $NBOPS_ENV or env.yaml)."""
    project = project_root()
    env = load_env(project, env_file or os.environ.get(ENV_VAR, "env.yaml"))
    tasks = {t.name: t for t in load_tasks(project, env)}
    products = {name: {k: Path(v) for k, v in t.product.items()} for name, t in tasks.items()}
    history_path = products.get("monitor", {}).get("history")
    history = read_history(history_path) if history_path else pd.DataFrame()
    alerts = read_alerts(products["monitor"]["alerts"]) if "monitor" in products else []
    registry = production = profile = None
    versions: list[ModelVersion] = []
    registration = products.get("register", {}).get("registration")
    if registration and registration.exists():
        registry = Registry(json.loads(registration.read_text())["registry"])
        versions = registry.versions()
        production = registry.alias("production")
        if production is not None and production.file(PROFILE_FILE).exists():
            profile = ReferenceProfile.load(production.file(PROFILE_FILE))
    last_run = None
    if history_path and history_path.exists():
        last_run = history_path.stat().st_mtime
    return DashboardData(project, products, history, alerts, registry, production, versions, profile, last_run)
