"""The promotion gate: a candidate replaces production only if it is not worse on the same holdout.

Both models score the same test rows (the production model with its own transform), so the
comparison is like for like; "not worse" allows a tolerance set in env.yaml
(``promotion_tolerance``), because two trainings on slightly different data differ by noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nbops.modeling.metrics import gate_metric

if TYPE_CHECKING:  # scoring needs LightGBM; the gate's decision does not
    from nbops.runtime.model import ScoringModel


@dataclass
class GateDecision:
    """Whether the candidate may be promoted, and the numbers behind it."""

    promote: bool
    reason: str
    metric: str
    candidate: float
    production: float | None
    production_version: str | None
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"model": "candidate (this build)", self.metric: self.candidate},
                {
                    "model": f"production ({self.production_version})"
                    if self.production_version
                    else "production (none yet)",
                    self.metric: self.production,
                },
            ]
        )


def decide(
    task_type: str,
    candidate_metrics: dict[str, float],
    production_metrics: dict[str, float] | None,
    production_version: str | None,
    tolerance: float,
    metric_name: str = "auto",
) -> GateDecision:
    """Apply the gate to metrics computed on the same rows.

    Args:
        metric_name: the metric compared (``gate_metric``): ``auto`` is the task's own, ROC AUC
            (binary), log loss (multiclass) or RMSE (regression).
    """
    metric, higher_is_better = gate_metric(task_type, metric_name)
    cand = float(candidate_metrics[metric])
    if production_metrics is None:
        return GateDecision(
            True, "no production model yet: the first model is promoted", metric, cand, None, None, tolerance
        )
    prod = float(production_metrics[metric])
    delta = cand - prod if higher_is_better else prod - cand  # > 0: the candidate is better
    # Metrics are floats: 0.795 - 0.800 is -0.0050000000000000044, which must count as within 0.005.
    ok = delta >= -tolerance - 1e-12
    word = "higher" if higher_is_better else "lower"
    reason = (
        f"candidate {metric} {cand:.4f} vs production {prod:.4f} ({word} is better; change {delta:+.4f}, tolerance "
        f"{tolerance:g}): "
        + ("not worse beyond the tolerance, promote" if ok else "worse beyond the tolerance, keep production")
    )
    return GateDecision(ok, reason, metric, cand, prod, production_version, tolerance)


def production_metrics_on(
    production: ScoringModel, test_rows: pd.DataFrame, target: str, task_type: str
) -> dict[str, float]:
    """Score the holdout with the production model (its own transform) and compute its metrics."""
    from nbops.modeling.metrics import task_metrics

    p = production.booster.predict(production.transform(test_rows))
    return task_metrics(task_type, production.label_codes(test_rows[target]), np.asarray(p))
