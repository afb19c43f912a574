"""Tiny real LightGBM models: a booster for registry tests, and one registered model (with its
reference profile and its scoring wheel) for the engine tests, built in seconds without a pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


def train_tiny_booster(
    df: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    target: str,
    rounds: int,
    seed: int = 0,
    feature_code: str | None = None,
    params: dict[str, Any] | None = None,
    label: Any = None,
) -> tuple[Any, Any]:
    """A tiny real LightGBM binary model and its fitted transform (for registry tests), with the derived
    features of ``feature_code`` (a feature module's source) when given; ``params`` override LightGBM's
    (another objective with ``label``: the target as LightGBM takes it, e.g. class positions)."""
    import lightgbm as lgb

    from nbops.runtime.derived import FeatureCode
    from nbops.runtime.transform import FeatureTransform

    code = FeatureCode.from_source(feature_code.encode()) if feature_code is not None else None
    transform = FeatureTransform.fit(df, numeric, categorical, code=code)
    labels = df[target] if label is None else label
    params = {
        "objective": "binary",
        "num_leaves": 4,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "verbose": -1,
        "seed": seed,
        **(params or {}),
    }
    booster = lgb.train(
        params,
        lgb.Dataset(transform.transform(df), labels, categorical_feature=transform.categorical_indices),
        num_boost_round=rounds,
    )
    return booster, transform


def task_schema(schema: Any, task: str) -> Any:
    """The simulator's schema (a TableSchema) for ``task``: see :func:`tiny_registered_model`."""
    from dataclasses import replace

    if task == "binary":
        return schema
    if task not in ("multiclass", "regression"):
        raise ValueError(f"task {task!r}: expected binary, multiclass or regression")
    target = "home_ownership" if task == "multiclass" else "interest_rate"
    columns = []
    for column in schema.columns:
        role = column.role
        if column.name == target:
            role = "target"
        elif column.name == schema.target or (task == "regression" and column.kind == "categorical"):
            role = "ignore"
        columns.append(replace(column, role=role))
    dataset = "credit_housing" if task == "multiclass" else "credit_rate"
    return replace(schema, dataset=dataset, target=target, task_type=task, columns=columns)


@dataclass(frozen=True)
class TinyModel:
    """A small model of the simulated credit-risk data, registered as production, and its inputs:
    the split it was trained on (Parquet), the dataset schema, the transform and the wheel."""

    folder: Path
    schema_file: Path
    transform_file: Path
    splits: dict[str, Path]
    version: Any  # nbops.registry.store.ModelVersion
    wheel: Path
    package: str

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.version.metadata["metrics"])


def tiny_registered_model(
    folder: Path,
    rows: int = 4_000,
    seed: int = 11,
    rounds: int = 20,
    feature_code: str | None = None,
    wheel: bool = True,
    estimator: bool = False,
    params: dict[str, Any] | None = None,
    task: str = "binary",
) -> TinyModel:
    """Simulate ``rows`` rows, validate them against the simulator's schema, split them in time, train
    a tiny booster on the train split and register it (model, transform, input schema, reference
    profile) as the production version of a registry under ``folder``; then build its wheel (unless
    ``wheel`` is false); with ``estimator``, also its performance estimator (CBPE calibrated on the
    test split, with the model probed on its inputs, as the register stage stores it); ``params``
    override LightGBM's. ``feature_code``: a feature module's source, whose derived features the
    model uses (registered with it, as the pipeline does). ``task``: "binary" (the simulator's schema),
    "multiclass" (the target is ``home_ownership``, dataset ``credit_housing``) or "regression" (the
    target is ``interest_rate`` and the categorical columns are marked ``role: ignore``, so every
    feature is a number; dataset ``credit_rate``); the binary target ``default`` is then an ignored column."""
    from nbops.data.ingest import simulator_schema
    from nbops.data.simulate import simulate_history
    from nbops.data.validate import validate_table
    from nbops.deploy.wheel import build_wheel
    from nbops.features.split import SPLITS, split_rows
    from nbops.modeling.metrics import task_metrics
    from nbops.monitoring.profile import build_reference_profile
    from nbops.registry.publish import input_schema, package_name
    from nbops.registry.store import Registry
    from nbops.runtime.integrity import FEATURE_CODE_FILE, MODEL_FILE, PROFILE_FILE, SCHEMA_FILE, TRANSFORM_FILE

    folder.mkdir(parents=True, exist_ok=True)
    schema = task_schema(simulator_schema(), task)
    raw, _ = simulate_history(rows=rows, seed=seed)
    valid = validate_table(raw, schema, file="simulated history").valid
    split = split_rows(valid, time_column=schema.time_column, valid_fraction=0.2, test_fraction=0.2, seed=seed)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    if task == "multiclass":
        params = {"objective": "multiclass", "num_class": len(schema.classes), **(params or {})}
    elif task == "regression":
        params = {"objective": "regression", **(params or {})}
    booster, transform = train_tiny_booster(
        split.train,
        numeric,
        categorical,
        schema.target,
        rounds,
        seed,
        feature_code=feature_code,
        params=params,
        label=None if task == "binary" else schema.target_codes(split.train[schema.target]),
    )
    splits = {}
    for name in SPLITS:
        splits[name] = folder / f"{name}.parquet"
        getattr(split, name).to_parquet(splits[name], index=False)
    schema_file = schema.save(folder / "schema.yaml")
    transform_file = transform.save(folder / "feature_transform.json")
    profile = build_reference_profile(
        transform.with_derived(split.train),
        transform.numeric,
        list(transform.categorical),
        booster.predict(transform.transform(split.train)),
        classes=schema.classes or None,
    )
    test = split.test
    metrics = task_metrics(
        schema.task_type, schema.target_codes(test[schema.target]), booster.predict(transform.transform(test))
    )
    files = {
        MODEL_FILE: booster.model_to_string().encode(),
        TRANSFORM_FILE: transform_file.read_bytes(),
        SCHEMA_FILE: (json.dumps(input_schema(schema).to_dict(), indent=2) + "\n").encode(),
        PROFILE_FILE: (json.dumps(profile.to_dict()) + "\n").encode(),
    }
    if transform.code is not None:
        files[FEATURE_CODE_FILE] = transform.code.source
    if estimator:
        from nbops.monitoring.estimate import fit_binary_estimator
        from nbops.runtime.integrity import ESTIMATOR_FILE

        inputs = transform.transform(test)
        fitted = fit_binary_estimator(
            booster.predict(inputs),
            test[schema.target].to_numpy(float),
            booster=booster,
            features=inputs,
            feature_names=transform.feature_names,
            categorical=transform.categorical_indices,
        )
        files[ESTIMATOR_FILE] = (json.dumps(fitted.to_dict()) + "\n").encode()
    metadata = {
        "package": package_name(schema.dataset),
        "dataset": schema.dataset,
        "target": schema.target,
        "task_type": schema.task_type,
        "positive_class": schema.positive_class,
        **({"classes": schema.classes} if schema.task_type == "multiclass" else {}),
        "features": transform.feature_names,
        "metrics": metrics,
    }
    if transform.derived:
        metadata["derived_features"] = {"kinds": transform.derived, "feature_code": transform.feature_code}
    registry = Registry(folder / "registry" / schema.dataset)
    version, _ = registry.register(files, metadata)
    registry.promote(version.version, "the tiny model of the test session")
    built = build_wheel(version, folder / "dist") if wheel else folder / "dist" / "(not built)"
    return TinyModel(folder, Path(schema_file), Path(transform_file), splits, version, built, metadata["package"])
