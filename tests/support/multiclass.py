"""A generated multiclass table, as a user would bring one: an identifier, a month column, a few
numeric features, a categorical one, and a target of 3 or 4 classes drawn from a softmax of the
features (so a model can learn it, and cannot learn it perfectly)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The plan each customer chose (text labels), or a 1..3 satisfaction score (integer labels).
PLANS = ("basic", "plus", "premium", "business")
SCORES = (1, 2, 3)
TARGET = "plan"
SCORE_TARGET = "satisfaction"


def multiclass_table(
    rows: int,
    *,
    seed: int = 7,
    start: str = "2024-01",
    months: int = 12,
    integer_labels: bool = False,
    shift: float = 0.0,
) -> pd.DataFrame:
    """``rows`` customers spread over ``months`` months from ``start``, each with a class.

    Args:
        integer_labels: the target is ``satisfaction`` in 1..3 instead of ``plan`` in :data:`PLANS`.
        shift: a covariate shift (the classes follow from the features as ever): customers use more
            (usage scaled by 1 + shift / 2) and spend more (log spend + 0.5 shift), partly past the
            ranges of an unshifted table; 0 draws the same table as before.
    """
    rng = np.random.default_rng(seed)
    month = pd.period_range(start, periods=months, freq="M").astype(str)
    usage = rng.gamma(2.0, 10.0 * (1 + shift / 2), size=rows)
    tenure = rng.integers(1, 120, size=rows).astype(float)
    spend = np.round(rng.lognormal(3.5 + 0.5 * shift, 0.6, size=rows), 2)
    region = rng.choice(["north", "south", "east", "west"], size=rows, p=[0.4, 0.3, 0.2, 0.1])
    u, t, s = (usage - 20) / 14, (tenure - 60) / 35, (np.log(spend) - 3.5) / 0.6
    east, west = (region == "east").astype(float), (region == "west").astype(float)
    labels: tuple[object, ...] = SCORES if integer_labels else PLANS
    logits = np.column_stack(
        [
            np.zeros(rows),
            1.2 * u + 0.3 * t + 0.4 * east,
            1.5 * s + 0.8 * u - 0.5 * west,
            2.0 * s + 1.0 * t + 0.8 * west - 0.5,
        ]
    )[:, : len(labels)]
    logits = 1.6 * logits  # a clear signal, short of a perfect one
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    drawn = (probabilities.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
    usage[rng.random(rows) < 0.03] = np.nan  # some missing values, as real tables have
    return pd.DataFrame(
        {
            "customer_id": [f"C{seed:02d}{i:06d}" for i in range(rows)],
            "month": month[np.sort(rng.integers(0, months, size=rows))],
            "usage_hours": np.round(usage, 2),
            "tenure_months": tenure,
            "monthly_spend": spend,
            "region": region,
            SCORE_TARGET if integer_labels else TARGET: np.asarray(labels, dtype=object)[drawn],
        }
    )


@dataclass(frozen=True)
class MulticlassModel:
    """A small multiclass model of :func:`multiclass_table`, trained as the pipeline trains (schema
    inferred, rows validated, split in time, the transform fitted on train, LightGBM with early stopping)."""

    schema: Any  # nbops.data.schema.TableSchema
    transform: Any  # nbops.runtime.transform.FeatureTransform
    booster: Any  # lightgbm.Booster
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    raw: pd.DataFrame  # the table as generated, before validation

    def scoring_model(self, version: str = "v0001") -> Any:
        """The model as the wheel loads it (its input schema carries the classes)."""
        from nbops.registry.publish import input_schema
        from nbops.runtime.model import ScoringModel

        metadata = {"version": version, "task_type": "multiclass", "target": self.schema.target}
        return ScoringModel(self.booster, self.transform, input_schema(self.schema), metadata)


def train_multiclass_model(
    folder: Path, rows: int = 1500, *, seed: int = 7, integer_labels: bool = False, rounds: int = 40
) -> MulticlassModel:
    """Generate, validate, split and train a multiclass model in ``folder`` in a second or two."""
    from nbops.config.params import TrainParams
    from nbops.data.schema import infer_schema
    from nbops.data.validate import validate_table
    from nbops.features.split import split_rows
    from nbops.modeling.train import train_model
    from nbops.runtime.transform import FeatureTransform

    folder.mkdir(parents=True, exist_ok=True)
    raw = multiclass_table(rows, seed=seed, integer_labels=integer_labels)
    target = SCORE_TARGET if integer_labels else TARGET
    schema = infer_schema(raw, dataset="plans", target=target, file="plans.csv")
    valid = validate_table(raw, schema, file="plans.csv").valid
    split = split_rows(valid, time_column=schema.time_column, valid_fraction=0.2, test_fraction=0.2, seed=seed)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    transform = FeatureTransform.fit(split.train, numeric, categorical)
    params = TrainParams(
        num_threads=1, num_boost_round=rounds, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20
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
    return MulticlassModel(schema, transform, result.booster, split.train, split.valid, split.test, raw)
