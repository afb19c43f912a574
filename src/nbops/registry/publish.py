"""Assemble a registry version from the pipeline's products: model, transform, schema, lineage, card."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.data.schema import TableSchema
from nbops.registry.card import model_card_html, model_card_markdown
from nbops.registry.gate import GateDecision
from nbops.registry.store import ModelVersion, Registry
from nbops.runtime.integrity import (
    ESTIMATOR_FILE,
    FEATURE_CODE_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    SCHEMA_FILE,
    TRANSFORM_FILE,
)
from nbops.runtime.schema import FieldSpec, InputSchema


def input_schema(schema: TableSchema) -> InputSchema:
    """The scoring contract: feature fields as declared (types, ranges, categories, nullability);
    identifiers and the time column may be sent along and are echoed, never modelled; the target and
    the ``ignore`` columns may be sent along and are dropped (personal-data columns stay unknown: the
    service never takes them). A multiclass contract carries the classes in the order of the model's
    outputs (whole numbers as integers)."""
    fields = [
        FieldSpec(c.name, "numeric" if c.kind == "numeric" else "categorical", c.nullable, c.min, c.max, c.categories)
        for c in schema.features
    ]
    passthrough = [c.name for c in schema.by_role("id", "time")]
    classes: list[Any] | None = None
    if schema.task_type == "multiclass":
        classes = [int(c) for c in schema.classes] if schema.integer_classes else list(schema.classes)
    ignored = [schema.target, *(c.name for c in schema.by_role("ignore"))]
    return InputSchema(fields, passthrough, classes=classes, ignored=ignored)


def git_commit(project: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(project: Path) -> bool | None:
    """Whether tracked files of the project differ from its commit (None outside a git repository):
    a version registered from uncommitted changes cannot be rebuilt from its commit alone."""
    try:
        out = subprocess.run(
            ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def lock_sha256(project: Path) -> str | None:
    lock = project / "requirements.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None


def package_name(dataset: str) -> str:
    """The import name of a version's scoring wheel (recorded in its metadata as ``package``), valid
    Python for any dataset name: 'credit_risk' -> 'credit_risk_model'."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", dataset).strip("_").lower() or "dataset"
    if name[0].isdigit():
        name = "m_" + name
    return f"{name}_model"


def registry_for(registry_root: str | Path, dataset: str) -> Registry:
    return Registry(Path(registry_root) / dataset)


def register_model(
    *,
    registry: Registry,
    project: Path,
    schema: TableSchema,
    model_file: Path,
    transform_file: Path,
    ingest_summary: dict[str, Any],
    split_summary: dict[str, Any],
    train_summary: dict[str, Any],
    metrics: dict[str, Any],
    segments: pd.DataFrame,
    gate: GateDecision,
    params: dict[str, Any],
    reference_profile: bytes | None = None,
    performance_estimator: bytes | None = None,
    wandb_run_id: str | None = None,
    run_identity: str | None = None,
    raw_snapshot: Path | None = None,
    build_env: dict[str, Any] | None = None,
    keep_data_snapshots: int = 0,
) -> tuple[ModelVersion, bool, bool]:
    """Register the model as a new version, set ``candidate``, and promote it if the gate allows.

    ``raw_snapshot`` (ingest's raw table) is kept content-addressed in the registry and
    ``build_env`` (the values the build ran with) recorded, so that ``nbops reproduce`` can rebuild
    the version from what it recorded. ``performance_estimator`` (JSON, see
    :mod:`nbops.monitoring.estimate`) is stored as ``performance_estimator.json``, checksummed with
    the other files, so every batch is estimated against the version that scores it.

    Returns:
        (version, newly created, promoted to production).
    """
    files = {
        MODEL_FILE: model_file.read_bytes(),
        TRANSFORM_FILE: transform_file.read_bytes(),
        SCHEMA_FILE: (json.dumps(input_schema(schema).to_dict(), indent=2) + "\n").encode(),
        "metrics.json": (
            json.dumps({"metrics": metrics, "segments": segments.to_dict(orient="records")}, indent=2, default=float)
            + "\n"
        ).encode(),
    }
    if reference_profile is not None:
        files[PROFILE_FILE] = reference_profile
    if performance_estimator is not None:
        files[ESTIMATOR_FILE] = performance_estimator
    transform = json.loads(transform_file.read_text())
    if transform.get("derived"):
        # The project's feature code, as the features stage copied it beside the transform: checksummed
        # with the other files, and carried unchanged into the wheel.
        files[FEATURE_CODE_FILE] = (transform_file.parent / transform["feature_code"]["file"]).read_bytes()
    metadata = {
        "package": package_name(schema.dataset),
        "dataset": schema.dataset,
        "target": schema.target,
        "task_type": schema.task_type,
        "positive_class": schema.positive_class,
        **({"classes": schema.classes} if schema.task_type == "multiclass" else {}),
        "features": transform["feature_names"],
        "excluded_columns": [c.name for c in schema.by_role("id", "pii", "ignore")],
        "metrics": metrics,
        "gate": gate.to_dict(),
        "params": params,
        "train": train_summary,
        "split": split_summary,
        "data": {
            k: ingest_summary[k]
            for k in ("source", "source_sha256", "fingerprint", "rows_read", "rows_valid", "rows_quarantined")
        },
        "git_commit": git_commit(project),
        "git_dirty": git_dirty(project),
        "lock_sha256": lock_sha256(project),
        "build_env": build_env,
        "wandb_run_id": wandb_run_id,
        "run_identity": run_identity,
    }
    if transform.get("derived"):
        metadata["derived_features"] = {"kinds": transform["derived"], "feature_code": transform["feature_code"]}

    def card(meta: dict[str, Any]) -> dict[str, bytes]:
        md = model_card_markdown(meta, segments)
        return {
            "card.md": md.encode(),
            "card.html": model_card_html(md, f"{meta['package']} {meta['version']}").encode(),
        }

    if raw_snapshot is not None:
        metadata["data"]["snapshot"] = registry.keep_data(raw_snapshot, ingest_summary["source_sha256"])
    version, created = registry.register(files, metadata, derived=card)
    registry.prune_data(keep_data_snapshots)
    registry.set_candidate(
        version.version, "registered by the pipeline" if created else "re-registered (identical model)"
    )
    promoted = False
    current = registry.aliases().get("production")
    if gate.promote and current != version.version:
        if gate.production_version != current:
            # Production changed after evaluate compared with it (an operator's promote or rollback):
            # a gate decided against another model is stale, and the operator's choice stands.
            registry.record(
                "gate-not-applied",
                version.version,
                f"the gate compared with {gate.production_version or 'no production model'}, but production "
                f"is {current or 'none'} now; production kept (promote by hand to change it)",
                gate_production=gate.production_version,
                production=current,
            )
        else:
            registry.promote(version.version, f"promotion gate: {gate.reason}")
            promoted = True
    return version, created, promoted
