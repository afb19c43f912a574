"""Registered models of each task type (binary, regression, multiclass), trained as the pipeline trains
them, with their default and compiled wheels: the fixtures of the compiled-trees tests.

Compiling a model's trees takes seconds to a minute, so every compiled library of a test session is
cached in one session folder (the same cache `nbops package --compiled` keeps under the products root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("binary", "regression", "multiclass")
# Enough trees and leaves that the compiled code is not trivial (and that sums of many trees in another
# order differ in the last bits), few enough to compile in seconds.
ROUNDS = 150
LEAVES = 15

SCORE_SCRIPT = r"""
import importlib, json, sys, warnings
from pathlib import Path
import numpy as np
import pandas as pd

cfg = json.loads(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pkg = importlib.import_module(cfg["package"])
    m = pkg.load()
out = Path(cfg["out"])
test = pd.read_parquet(cfg["test"])
frame = m.predict(test)
np.save(out / "frame.npy", np.asarray(frame, dtype=np.float64))
records = [{k: v for k, v in r.items() if k in m.schema.names} for r in test.to_dict("records")]
np.save(out / "records.npy", np.asarray(m.predict(records), dtype=np.float64))
np.save(out / "one_record.npy", np.asarray(m.predict(records[:1]), dtype=np.float64))
info = {
    "engine": m.engine,
    "notice": m.engine_notice,
    "warnings": [{"category": w.category.__name__, "message": str(w.message)} for w in caught],
    "package_file": pkg.__file__,
    "modules": sorted(sys.modules),
    "columns": list(frame.columns) if isinstance(frame, pd.DataFrame) else None,
}
(out / "info.json").write_text(json.dumps(info))
"""


@dataclass(frozen=True)
class KindModel:
    """One registered production model of a task type, its raw test rows and LightGBM's scores of them."""

    kind: str
    folder: Path
    version: Any  # nbops.registry.store.ModelVersion
    package: str
    test_file: Path  # the raw test split (Parquet), as a user's batch
    lightgbm: np.ndarray  # booster.predict(transform.transform(test)): what the evaluate stage scores
    num_trees: int


def _table(kind: str, rows: int, seed: int) -> tuple[pd.DataFrame, Any]:
    """A raw table and its schema: the simulator's credit table (binary: default; regression: the
    interest rate, the default left out), or the generated plans table (multiclass)."""
    from nbops.data.ingest import simulator_schema
    from nbops.data.schema import infer_schema
    from nbops.data.simulate import simulate_history
    from tests.support.multiclass import TARGET, multiclass_table

    if kind == "multiclass":
        raw = multiclass_table(rows, seed=seed)
        return raw, infer_schema(raw, dataset="plans", target=TARGET, file="plans.csv")
    raw, _ = simulate_history(rows=rows, seed=seed)
    if kind == "binary":
        return raw, simulator_schema()
    raw = raw.drop(columns=["default"])
    return raw, infer_schema(raw, dataset="rates", target="interest_rate", file="rates.csv")


def registered_kind_model(folder: Path, kind: str, rows: int = 6_000, seed: int = 5) -> KindModel:
    """Validate, split in time, fit the transform and train as the pipeline does (early stopping on the
    validation split), then register the model as production of a registry under ``folder``."""
    from nbops.config.params import TrainParams
    from nbops.data.validate import validate_table
    from nbops.features.split import split_rows
    from nbops.modeling.train import train_model
    from nbops.registry.publish import input_schema, package_name
    from nbops.registry.store import Registry
    from nbops.runtime.integrity import MODEL_FILE, SCHEMA_FILE, TRANSFORM_FILE
    from nbops.runtime.transform import FeatureTransform

    folder.mkdir(parents=True, exist_ok=True)
    raw, schema = _table(kind, rows, seed)
    assert schema.task_type == kind, f"the {kind} table's schema says {schema.task_type}"
    valid = validate_table(raw, schema, file=f"{kind} table").valid
    split = split_rows(valid, time_column=schema.time_column, valid_fraction=0.2, test_fraction=0.2, seed=seed)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    transform = FeatureTransform.fit(split.train, numeric, categorical)
    params = TrainParams(
        num_threads=1, num_boost_round=ROUNDS, early_stopping_rounds=ROUNDS, num_leaves=LEAVES, min_data_in_leaf=10
    )
    result = train_model(
        params,
        schema=schema,
        transform=transform,
        train_rows=split.train,
        valid_rows=split.valid,
        model_out=folder / "model.txt",
        summary_out=folder / "train_summary.json",
    )
    transform_file = transform.save(folder / "feature_transform.json")
    files = {
        MODEL_FILE: (folder / "model.txt").read_bytes(),
        TRANSFORM_FILE: transform_file.read_bytes(),
        SCHEMA_FILE: (json.dumps(input_schema(schema).to_dict(), indent=2) + "\n").encode(),
    }
    metadata = {
        "package": package_name(schema.dataset),
        "dataset": schema.dataset,
        "target": schema.target,
        "task_type": schema.task_type,
        "features": transform.feature_names,
    }
    registry = Registry(folder / "registry" / schema.dataset)
    version, _ = registry.register(files, metadata)
    registry.promote(version.version, f"the {kind} model of the compiled-trees tests")
    test_file = folder / "test.parquet"
    split.test.reset_index(drop=True).to_parquet(test_file, index=False)
    test = pd.read_parquet(test_file)
    lightgbm = np.asarray(result.booster.predict(transform.transform(test)), dtype=np.float64)
    return KindModel(kind, folder, version, metadata["package"], test_file, lightgbm, int(result.booster.num_trees()))


def wheels_of(model: KindModel, cache: Path) -> dict[str, Path]:
    """The version's default wheel and its compiled wheel (trees from ``cache`` or compiled into it)."""
    from nbops.deploy.compiled_trees import compile_trees
    from nbops.deploy.wheel import build_wheel

    trees = compile_trees(model.version.file("model.txt").read_bytes(), cache)
    return {
        "default": build_wheel(model.version, model.folder / "dist-default"),
        "compiled": build_wheel(model.version, model.folder / "dist-compiled", compiled=trees),
    }


def score_from(path: Path, package: str, test_file: Path, out: Path) -> dict[str, Any]:
    """Load ``package`` from ``path`` (a wheel, imported from its zip as the batch-score stage does, or
    a folder holding the unpacked package) in a new interpreter and score the test rows there."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / "score.py"
    script.write_text(SCORE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env["PYTHONPATH"] = str(path)
    cfg = {"package": package, "out": str(out), "test": str(test_file)}
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise AssertionError(f"scoring from {path} failed:\n{proc.stderr[-3000:]}")
    results: dict[str, Any] = json.loads((out / "info.json").read_text())
    for name in ("frame", "records", "one_record"):
        results[name] = np.load(out / f"{name}.npy")
    results["stderr"] = proc.stderr
    return results
