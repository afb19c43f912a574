"""Typed parameters: one model per stage, and the env file as the union of them.

Every value a stage takes is declared here once, with its type and bounds. ``nbops check`` validates
``env.yaml`` and ``pipeline.yaml`` against these models before any kernel starts, and each stage
notebook turns its parameters cell into the same model, so a wrong value fails the same way
everywhere: naming the key, what was expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nbops.errors import ConfigError

TaskType = Literal["auto", "binary", "multiclass", "regression"]


class StageParams(BaseModel):
    """Base for stage parameters: unknown keys are errors, values are coerced only when lossless."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=StageParams)


class ComputeParams(StageParams):
    """Where the heavy stages compute: pandas in-process (default) or a Dask cluster."""

    engine: Literal["pandas", "dask"] = Field(
        "pandas",
        description="pandas: one process; dask: lightgbm.dask training, dask.dataframe scoring, profiles and drift",
    )
    dask_scheduler: str = Field(
        "local",
        min_length=1,
        description="'local' starts a LocalCluster on 127.0.0.1; or a scheduler address such as tcp://10.0.0.5:8786",
    )
    dask_workers: int = Field(2, ge=1, description="workers of the local cluster (ignored for a remote scheduler)")


class IngestParams(StageParams):
    """Parameters of the ingest stage: where the raw table comes from and how to read it."""

    data: str = Field("simulate", description="'simulate' for the built-in credit-risk table, or a CSV/Parquet path")
    # 50 million simulated rows take ~20 GB in memory; more is refused before a kernel starts
    rows: int = Field(100_000, ge=100, le=50_000_000, description="rows to simulate when data is 'simulate'")
    seed: int = Field(42, ge=0, description="random seed for simulation, splits and training")
    target: str = Field("default", min_length=1, description="name of the target column")
    task_type: TaskType = Field(
        "auto", description="binary, multiclass (3 to 50 classes) or regression; auto infers it from the target"
    )
    time_column: str | None = Field(
        "auto", description="column ordering the rows in time; 'auto' detects one, 'none' (or null) for a random split"
    )
    id_columns: list[str] = Field(
        default_factory=list, description="identifier columns: kept in the data, never a feature"
    )
    pii_columns: list[str] = Field(
        default_factory=list, description="personal data: never reaches the model, reports or W&B"
    )
    data_version: str = Field(
        "",
        description="size and modification time of the data file; set by nbops build so a changed file reruns ingest",
    )
    schema_file: str = Field(
        "auto", description="schema YAML; 'auto' uses schemas/<dataset>.schema.yaml, inferred on first use"
    )
    max_quarantine_fraction: float = Field(0.2, ge=0, le=1, description="fail when more rows than this are quarantined")
    labelled_through: str | None = Field(
        None,
        description="production months with arrived labels up to this one (YYYY-MM) join the training data; set by "
        "`nbops retrain`",
    )
    labelled_batches: str = Field(
        "build/interactive/data/production",
        description="folder of monitored production batches (derived from root in pipeline.yaml)",
    )
    tracking: Literal["offline", "online", "disabled"] = Field("offline", description="W&B mode")


class FeaturesParams(StageParams):
    """Parameters of the features stage: the split, and the project's feature code."""

    feature_code: str | None = Field(
        None,
        min_length=1,
        description="your feature module, relative to the project folder (e.g. features.py): each public function "
        "`name(df) -> Series` is a derived feature; none: no derived features",
    )
    valid_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of rows for early stopping")
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of rows held out for evaluation")
    seed: int = Field(42, ge=0)
    tracking: Literal["offline", "online", "disabled"] = "offline"

    @field_validator("feature_code", mode="before")
    @classmethod
    def _no_feature_code(cls, value: Any) -> Any:
        # env.yaml's `none` reaches the check as text; Ploomber hands the notebook None for it.
        return None if isinstance(value, str) and value.strip().lower() in ("none", "null") else value


class TrainParams(ComputeParams):
    """LightGBM hyper-parameters and resources."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=131_072)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    num_boost_round: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    num_threads: int = Field(0, ge=0, description="0: cores divided by the tasks that run at once")
    parallel_tasks: int = Field(1, ge=1, description="tasks the executor runs at once (for num_threads=0)")
    seed: int = Field(42, ge=0)
    tracking: Literal["offline", "online", "disabled"] = "offline"


# The LightGBM parameters a study may search, with their type.
TUNABLE: dict[str, type] = {
    "learning_rate": float,
    "num_leaves": int,
    "min_data_in_leaf": int,
    "feature_fraction": float,
    "bagging_fraction": float,
    "lambda_l2": float,
}


class SearchRange(StageParams):
    """One dimension of the search space: from ``low`` to ``high``, on a log scale if ``log``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"a search range needs low < high, found low {self.low:g} and high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, found {self.low:g}")
        return self


def default_space() -> dict[str, SearchRange]:
    return {
        "learning_rate": SearchRange(low=0.01, high=0.2, log=True),
        "num_leaves": SearchRange(low=8, high=128, log=True),
        "min_data_in_leaf": SearchRange(low=10, high=200, log=True),
        "feature_fraction": SearchRange(low=0.5, high=1.0),
        "lambda_l2": SearchRange(low=0.001, high=10.0, log=True),
    }


class TuneParams(TrainParams):
    """The tune stage: an Optuna study over LightGBM's parameters (the train parameters are its
    first trial and the values of every dimension it does not search)."""

    tune_trials: int = Field(0, ge=0, le=10_000, description="trials of the study; 0: no tuning (train as set)")
    tune_space: dict[str, SearchRange] = Field(
        default_factory=default_space, description="the parameters searched and their ranges"
    )

    @model_validator(mode="after")
    def _known_dimensions(self) -> TuneParams:
        problems = []
        for name, dim in self.tune_space.items():
            if name not in TUNABLE:
                close = difflib.get_close_matches(name, list(TUNABLE), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(
                    f"tune_space: '{name}' is not a parameter a study can search{hint} "
                    f"(searchable: {', '.join(TUNABLE)})"
                )
                continue
            for bound in (dim.low, dim.high):
                try:
                    TrainParams.model_validate({name: bound})
                except ValidationError as exc:
                    problems.append(
                        f"tune_space: {name} range {dim.low:g}..{dim.high:g} leaves what {name} allows "
                        f"({exc.errors()[0]['msg']})"
                    )
                    break
            if TUNABLE[name] is int and (dim.low != int(dim.low) or dim.high != int(dim.high)):
                problems.append(f"tune_space: {name} takes whole numbers, found {dim.low:g}..{dim.high:g}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class EvaluateParams(StageParams):
    """Parameters of the evaluate stage (which also applies the promotion gate)."""

    promotion_tolerance: float = Field(
        0.005,
        ge=0,
        description="how much worse than production a candidate may be on the gate metric and still be promoted",
    )
    gate_metric: str = Field(
        "auto",
        min_length=1,
        description="the test metric the promotion gate compares; auto: roc_auc (binary), log_loss (multiclass), "
        "rmse (regression)",
    )

    segment_columns: list[str] = Field(
        default_factory=list, description="columns to break metrics down by; empty: the categorical features and time"
    )
    max_segments: int = Field(12, ge=1, description="levels shown per segment column")
    shap_sample: int = Field(2000, ge=10, description="rows explained in the SHAP summary")
    tracking: Literal["offline", "online", "disabled"] = "offline"


class RegisterParams(ComputeParams):
    """Parameters of the register stage."""

    tracking: Literal["offline", "online", "disabled"] = "offline"
    keep_data_snapshots: int = Field(
        0,
        ge=0,
        description="training-data snapshots the registry keeps for `nbops reproduce` (those of the newest N "
        "versions, production and candidate always); 0 keeps every one",
    )


class PackageParams(StageParams):
    """Parameters of the package stage."""

    package_alias: Literal["production", "candidate"] = Field(
        "production", description="which version the wheel carries"
    )


class BatchScoreParams(ComputeParams):
    """Parameters of the batch-score stage: which new batch to score with the packaged model."""

    data: str = Field(
        "simulate", description="'simulate' scores a simulated monthly batch; otherwise the test split is scored"
    )
    batch: int = Field(1, ge=1, description="which month after the training history to simulate")
    batch_rows: int = Field(10_000, ge=1, le=50_000_000)
    # Ploomber renders "none" as None; both mean no drift.
    batch_drift: Literal["none", "shock", "gradual", "new-category", "concept"] | None = "none"
    seed: int = Field(42, ge=0)


Scenario = Literal["none", "shock", "gradual", "new-category", "concept"]


class MonitorParams(ComputeParams):
    """Parameters of the monitor stage: the production months to simulate and the alert thresholds."""

    data: str = Field(
        "simulate", description="'simulate' monitors simulated production months; otherwise the test split"
    )
    production_months: int = Field(
        12, ge=1, le=120, description="months after the training history to simulate and monitor"
    )
    production_rows: int = Field(5000, ge=1, le=50_000_000, description="rows per simulated month")
    drift_schedule: list[Scenario | None] = Field(
        default_factory=list,
        description="the drift scenario of each production month, in order; missing months have none",
    )
    label_delay: int = Field(2, ge=0, description="months before a batch's labels arrive")
    psi_threshold: float = Field(
        0.2, gt=0, description="PSI at or above which a feature has drifted (0.1 watch, 0.25 act)"
    )
    min_drifted_features: int = Field(1, ge=1, description="drifted features that make the whole batch drifted")
    max_auc_drop: float = Field(0.05, ge=0, description="alert when a batch's ROC AUC is this far below the test AUC")
    max_calibration_error: float = Field(0.05, ge=0)
    seed: int = Field(42, ge=0)
    tracking: Literal["offline", "online", "disabled"] = "offline"


STAGES: dict[str, type[StageParams]] = {
    "ingest": IngestParams,
    "features": FeaturesParams,
    "tune": TuneParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "package": PackageParams,
    "batch_score": BatchScoreParams,
    "monitor": MonitorParams,
}


class EnvSettings(
    IngestParams,
    FeaturesParams,
    TuneParams,
    EvaluateParams,
    RegisterParams,
    PackageParams,
    BatchScoreParams,
    MonitorParams,
):
    """Every key ``env.yaml`` may hold: the stage parameters plus where and how the pipeline runs.

    ``labelled_batches`` is not an env key: pipeline.yaml derives it from ``root``. The model registry
    is ``<root>/registry`` (:func:`nbops.config.paths.registry_dir`).
    """

    root: str = Field(".", description="folder under which data/, models/ and reports/ are written")
    executor: Literal["papermill", "ploomber-engine"] = Field(
        "ploomber-engine",
        description="how Ploomber runs each notebook: ploomber-engine in its own process (fast), papermill a kernel "
        "each",
    )
    schedule: str = Field(
        "0 6 * * *", description="cron expression (5 fields) for `nbops schedule install` and `nbops export airflow`"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from nbops.config.cron import validate_cron

        try:
            return validate_cron(value, where="schedule")
        except ConfigError as exc:  # pydantic wants ValueError; the message names field, expected, found
            raise ValueError(str(exc)) from None


def describe_expected(model: type[BaseModel], key: str) -> str:
    """Say in words what a field accepts, from its annotation and bounds."""
    field = model.model_fields[key]
    text = _annotation_text(field.annotation)
    bounds = []
    for meta in field.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sym} {getattr(meta, attr)}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _annotation_text(annotation: Any) -> str:
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in annotation.__args__)
    if origin is list:
        inner = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return "a list of " + inner.get(annotation.__args__[0], str(annotation.__args__[0]))
    if type(annotation).__name__ == "UnionType" or origin is Union:
        return " or ".join(_annotation_text(a) for a in annotation.__args__)
    if annotation is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, str(annotation)
    )


def validate_params(model: type[M], values: Mapping[str, Any], *, where: str) -> M:
    """Build ``model`` from ``values``; on failure raise one ConfigError listing every bad key.

    Args:
        model: the parameter model to validate against.
        values: raw values (from YAML, a command line or a notebook namespace).
        where: what to name in the message, e.g. "env.yaml" or "task 'train' in pipeline.yaml".

    Returns:
        The validated parameters, an instance of ``model``.
    """
    unknown = [k for k in values if k not in model.model_fields]
    problems = [unknown_key_message(k, list(model.model_fields), where=where) for k in unknown]
    known = {k: v for k, v in values.items() if k in model.model_fields}
    params: M | None = None
    try:
        params = model(**known)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            top = str(err["loc"][0]) if err["loc"] else ""  # a model-level check has no field
            if err["type"] == "value_error":  # our own validators already say expected / found
                problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
                continue
            expected = describe_expected(model, top) if top in model.model_fields else err["msg"]
            if err["type"] == "missing":
                problems.append(f"{where}: '{key}' is required ({expected}) and was not given; add '{key}: ...'")
                continue
            problems.append(
                f"{where}: '{key}' expected {expected}, found {err['input']!r} "
                f"({type(err['input']).__name__}): {err['msg']}"
            )
    if problems:
        raise ConfigError("\n".join(problems))
    assert params is not None
    return params


def unknown_key_message(key: str, known: list[str], *, where: str) -> str:
    """'unknown key' with the closest known names, so a typo is fixed in one look."""
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{where}: unknown key '{key}'.{hint} Known keys: {', '.join(sorted(known))}"
