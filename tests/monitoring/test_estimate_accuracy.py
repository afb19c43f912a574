"""Estimated against realised ROC AUC on the simulator's covariate-shift months (shock, gradual,
new-category), 5,000 rows a month, labels held back: each month goes through the monitor with no
target column (as it does when it first arrives), and its estimate is then compared with the ROC
AUC its labels give. The model is a real LightGBM with the pipeline's values, registered with its
estimator as the register stage stores it (calibrated on the test split, the model probed on its
inputs for where the test split stops vouching for a batch).

The goal: mean absolute error at most 0.015 in every scenario and 0.01 over all of them, and the
realised AUC inside the band in at least 90% of every scenario's months, with a band that is not
vague (median half-width under 0.03). Measured when this was written (these seeds): MAE 0.0076
shock, 0.0083 gradual, 0.0128 new-category, 0.0096 over all; coverage 100%, 100%, 96%. On five
seeds the test does not use: 0.0086-0.0098 over all, coverage at least 94% (bench/bench_estimate.py
for other batch sizes and NannyML). At 5,000 rows chance alone puts the realised AUC about 0.0075
from its expectation on average, so 0.01 is close to the floor.

And the alert on the estimate: it never fires on clean months (from 50 rows to 5,000), and fires
on a month whose AUC really dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from nbops.data.simulate import TARGET, simulate_batch
from nbops.monitoring.estimate import Estimator, load_estimator
from nbops.monitoring.monitor import AlertRules, BatchMonitoring, monitor_batch
from nbops.monitoring.profile import ReferenceProfile
from nbops.runtime.integrity import PROFILE_FILE
from nbops.runtime.model import ScoringModel
from tests.support.models import tiny_registered_model

pytestmark = pytest.mark.slow

ROWS = 5_000
MONTHS = 12
SEEDS = (101, 202)
COVARIATE = ("shock", "gradual", "new-category")
# The model the pipeline trains (env.yaml's LightGBM values), not the 4-leaf tiny one: how far the
# estimate holds under shift depends on how the model extrapolates.
PIPELINE = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 2,
}


@dataclass(frozen=True)
class Registered:
    model: ScoringModel
    profile: ReferenceProfile
    estimator: Estimator
    metrics: dict[str, float]

    def monitor(self, batch_id: str, batch: pd.DataFrame) -> tuple[BatchMonitoring, float]:
        """The batch through the monitor with its labels held back, and the ROC AUC its labels give."""
        result = monitor_batch(
            batch_id,
            batch.drop(columns=[TARGET]),
            model=self.model,
            profile=self.profile,
            reference_metrics=self.metrics,
            rules=AlertRules(),
            estimator=self.estimator,
        )
        assert result.row["labels"] == "pending" and "perf__roc_auc" not in result.row
        return result, float(roc_auc_score(batch[TARGET], self.model.booster.predict(self.model.transform(batch))))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    tiny = tiny_registered_model(
        tmp_path_factory.mktemp("accuracy"), rows=100_000, rounds=300, wheel=False, estimator=True, params=PIPELINE
    )
    estimator = load_estimator(tiny.version.path)
    assert estimator is not None
    model = ScoringModel.from_folder(tiny.version.path)
    return Registered(model, ReferenceProfile.load(tiny.version.file(PROFILE_FILE)), estimator, tiny.metrics)


@pytest.fixture(scope="module")
def months(registered: Registered) -> pd.DataFrame:
    """One row per (scenario, seed, month): the estimate recorded by the monitor and the realised AUC."""
    rows = []
    for scenario in COVARIATE:
        for seed in SEEDS:
            for k in range(1, MONTHS + 1):
                batch, _ = simulate_batch(k, rows=ROWS, seed=seed, drift=scenario)
                result, realised = registered.monitor(f"{scenario}-{seed}-{k}", batch)
                rows.append(
                    {
                        "scenario": scenario,
                        "estimated": result.row["est__roc_auc"],
                        "low": result.row["est__roc_auc_low"],
                        "high": result.row["est__roc_auc_high"],
                        "realised": realised,
                    }
                )
    frame = pd.DataFrame(rows)
    frame["error"] = (frame["estimated"] - frame["realised"]).abs()
    frame["covered"] = (frame["low"] <= frame["realised"]) & (frame["realised"] <= frame["high"])
    return frame


@pytest.mark.parametrize("scenario", COVARIATE)
def test_mean_absolute_error_is_at_most_0015(months: pd.DataFrame, scenario: str) -> None:
    m = months[months["scenario"] == scenario]
    assert len(m) == len(SEEDS) * MONTHS
    assert m["error"].mean() <= 0.015, m.to_string()


@pytest.mark.parametrize("scenario", COVARIATE)
def test_band_covers_the_realised_auc_in_90_percent_of_months(months: pd.DataFrame, scenario: str) -> None:
    m = months[months["scenario"] == scenario]
    assert m["covered"].mean() >= 0.9, m.to_string()


def test_coverage_and_error_over_all_covariate_months(months: pd.DataFrame) -> None:
    """Over every covariate-shift month: the error the goal allows, and a band that is not so wide
    that it covers by being vague (half-width under 0.03 at 5,000 rows)."""
    assert months["error"].mean() <= 0.01, months.groupby("scenario")["error"].mean()
    assert float(np.median((months["high"] - months["low"]) / 2)) < 0.03


@pytest.mark.parametrize("rows", [50, 100, 5_000])
def test_clean_months_raise_no_estimated_alert(registered: Registered, rows: int) -> None:
    """Later months with no drift (the `none` scenario), from a slow week's 50 rows to a full month:
    the estimate never alerts. Its value can fall below the alert level by chance on a few dozen
    rows; the band then reaches above it, and the rule asks for the whole band below."""
    alerted = []
    for seed in (*SEEDS, 303):
        for k in range(1, MONTHS + 1):
            batch, _ = simulate_batch(k, rows=rows, seed=seed, drift="none")
            result, _ = registered.monitor(f"none-{rows}-{seed}-{k}", batch)
            alerted += [a["message"] for a in result.alerts if a["kind"] == "estimated_performance"]
    assert not alerted, alerted


def test_a_real_drop_is_an_estimated_alert_that_the_labels_confirm(registered: Registered) -> None:
    """A month of applicants the model tells apart poorly (only those between its 40th and 90th
    percentile of risk: a covariate shift inside what the test split covers) has a ROC AUC far below
    the test AUC; the estimate sees it before the labels, with its whole band below the alert level."""
    month, _ = simulate_batch(3, rows=20_000, seed=404, drift="none")
    scores = registered.model.booster.predict(registered.model.transform(month))
    low, high = np.quantile(scores, [0.4, 0.9])
    batch = month[(scores >= low) & (scores <= high)].reset_index(drop=True)
    result, realised = registered.monitor("narrow-segment", batch)
    limit = registered.metrics["roc_auc"] - AlertRules().max_auc_drop
    assert realised < limit - 0.05  # the labels will say it: a real drop
    est = result.estimate.metrics["roc_auc"] if result.estimate else None
    assert est is not None and est.low <= realised <= est.high and est.high < limit
    alerts = [a for a in result.alerts if a["kind"] == "estimated_performance"]
    assert [a["severity"] for a in alerts] == ["critical"], result.alerts  # the band's top is 0.1 below the test AUC
    assert "the whole band is below the alert level" in alerts[0]["message"]
