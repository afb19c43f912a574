"""Where the dashboards read from: the products of the latest build, found through pipeline.yaml."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config.paths import project_root
from nbops.config.spec import load_env, load_tasks
from nbops.data.schema import TableSchema
from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.history import read_alerts, read_history
from nbops.monitoring.monitor import AlertRules
from nbops.monitoring.profile import ReferenceProfile
from nbops.registry.store import ModelVersion, Registry
from nbops.runtime.integrity import PROFILE_FILE

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
    rules: AlertRules = field(default_factory=AlertRules)
    schema: TableSchema | None = None

    def batch_path(self, batch_id: str) -> Path | None:
        folder = self.products.get("monitor", {}).get("batches")
        if folder is None:
            return None
        for suffix in (".parquet", ".csv"):
            path = folder / f"{batch_id}{suffix}"
            if path.exists():
                return path
        return None

    def class_labels(self) -> tuple[str, str]:
        """(positive, negative) class of a binary target, as the data names them: the schema's
        ``positive_class`` and the other label when the target is text, else '1' and '0'."""
        meta = self.production.metadata if self.production is not None else {}
        positive = meta.get("positive_class") or (self.schema.positive_class if self.schema else None)
        if positive is None:
            return "1", "0"
        negative = "not " + str(positive)
        if self.schema is not None:
            try:
                labels = self.schema.column(self.schema.target).categories or []
            except KeyError:
                labels = []
            others = [str(c) for c in labels if str(c) != str(positive)]
            if len(others) == 1:
                negative = others[0]
        return str(positive), negative

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
    p = tasks["monitor"].params if "monitor" in tasks else {}
    defaults = AlertRules()
    rules = AlertRules(
        DriftThresholds(
            float(p.get("psi_threshold", defaults.drift.psi)),
            int(p.get("min_drifted_features", defaults.drift.min_drifted_features)),
        ),
        float(p.get("max_auc_drop", defaults.max_auc_drop)),
        float(p.get("max_calibration_error", defaults.max_calibration_error)),
    )
    schema_path = products.get("ingest", {}).get("schema")
    schema = TableSchema.load(schema_path) if schema_path and schema_path.exists() else None
    return DashboardData(
        project, products, history, alerts, registry, production, versions, profile, last_run, rules, schema
    )
