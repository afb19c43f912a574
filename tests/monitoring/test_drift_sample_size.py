"""Drift that knows its sample size: samples of one table, compared with the rest of it, must not raise
dataset drift, however few their rows; a drifted batch still does.

The tables are real measurements shipped with scikit-learn (wine: 178 rows x 13 features; breast
cancer: 569 rows x 30; handwritten digits: 1,797 rows x 64 pixel intensities, many nearly constant) and the
simulator's history, whose 100,000-row reference profile is what the monitor stage compares with.
Every split is random, so the two sides come from one distribution: any dataset drift raised is a
false alarm. The rate allowed (MAX_FALSE_ALARMS) is what PSI's null quantiles promise per feature
(1 in 10,000) summed over the features, with room for the approximation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

from nbops.data.ingest import simulator_schema
from nbops.data.simulate import simulate_batch, simulate_history
from nbops.monitoring.drift import (
    ALERT_QUANTILE,
    TAIL_FACTOR,
    DriftThresholds,
    chi2_quantile,
    compare,
    profile_of_table,
)
from nbops.monitoring.profile import build_reference_profile

MAX_FALSE_ALARMS = 0.03  # share of random splits raising dataset drift
FEATURES = simulator_schema().features
NUMERIC = [c.name for c in FEATURES if c.kind == "numeric"]
CATEGORICAL = [c.name for c in FEATURES if c.kind == "categorical"]


def real_table(name: str) -> pd.DataFrame:
    loader = {"breast_cancer": load_breast_cancer, "digits": load_digits, "wine": load_wine}[name]
    return loader(as_frame=True).data


def false_alarms(table: pd.DataFrame, rows: int | None, seeds: int) -> list[tuple[int, list[str]]]:
    """Random splits of ``table``: ``rows`` rows (None: half) against the rest, as `nbops drift` compares
    two tables. Returns the seeds that raised dataset drift, with the features flagged."""
    alarms = []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(table))
        size = len(table) // 2 if rows is None else rows
        current, reference = table.iloc[order[:size]], table.iloc[order[size:]]
        report = compare(profile_of_table(reference), current)
        if report.dataset_drift:
            alarms.append((seed, report.drifted))
    return alarms


def test_fifty_row_samples_of_a_real_table_raise_no_dataset_drift():
    """The fast-tier check (the sweeps below are in the slow tier)."""
    alarms = false_alarms(real_table("breast_cancer"), 50, 20)
    assert alarms == [], f"{len(alarms)} of 20 random 50-row samples raised dataset drift: {alarms[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "rows", "seeds"),
    [
        ("wine", None, 100),
        ("breast_cancer", None, 100),
        ("breast_cancer", 50, 100),
        ("breast_cancer", 100, 100),
        ("digits", None, 40),
        ("digits", 50, 60),
        ("digits", 100, 60),
        ("digits", 500, 40),
    ],
    ids=[
        "wine-halves",
        "cancer-halves",
        "cancer-50",
        "cancer-100",
        "digits-halves",
        "digits-50",
        "digits-100",
        "digits-500",
    ],
)
def test_random_samples_of_a_real_table_raise_no_dataset_drift(table, rows, seeds):
    alarms = false_alarms(real_table(table), rows, seeds)
    rate = len(alarms) / seeds
    print(f"\n[sample size] {table}, {rows or 'half'} rows against the rest: {len(alarms)}/{seeds} false alarms")
    assert rate <= MAX_FALSE_ALARMS, f"{len(alarms)} of {seeds} random splits raised dataset drift: {alarms[:5]}"


@pytest.fixture(scope="module")
def simulated() -> tuple[object, pd.DataFrame]:
    """The reference profile of a 100,000-row simulated history, and an independent history to sample."""
    history, _ = simulate_history(rows=100_000, seed=3)
    other, _ = simulate_history(rows=20_000, seed=4)
    return build_reference_profile(history, NUMERIC, CATEGORICAL), other


@pytest.mark.slow
@pytest.mark.parametrize("rows", [50, 100, 500])
def test_small_batches_of_the_simulated_reference_raise_no_dataset_drift(simulated, rows):
    profile, other = simulated
    seeds = 100
    alarms = []
    for seed in range(seeds):
        batch = other.sample(rows, random_state=seed)
        report = compare(profile, batch)
        alarms += [(seed, report.drifted)] if report.dataset_drift else []
    print(f"\n[sample size] simulated, {rows} rows against 100,000: {len(alarms)}/{seeds} false alarms")
    assert len(alarms) / seeds <= MAX_FALSE_ALARMS, alarms[:5]


def test_the_threshold_rises_for_small_batches_only(simulated):
    """0.2 configured: above it for a few dozen rows (the null's 99.99% quantile), 0.2 from a few
    hundred rows up; the report says so per feature and for the batch."""
    profile, other = simulated
    levels = {}
    for rows in (100, 1_000, 10_000):
        report = compare(profile, other.sample(rows, random_state=0))
        levels[rows] = report.psi_threshold
        income = next(f for f in report.features if f.name == "annual_income")  # deciles: 10 bins, df 9
        expected = max(0.2, TAIL_FACTOR * chi2_quantile(9, ALERT_QUANTILE) * (1 / rows + 1 / profile.rows))
        assert income.threshold == pytest.approx(expected)
        assert income.watch is not None and income.watch <= income.threshold
    assert levels[100] > 0.3 and report.thresholds.psi == 0.2
    assert levels[1_000] == levels[10_000] == 0.2


@pytest.mark.parametrize("rows", [100, 300])
def test_a_shocked_small_batch_still_drifts(simulated, rows):
    """The sample-size-aware threshold keeps what matters: the simulator's shock at a few hundred rows."""
    profile, _ = simulated
    missed = []
    for seed in range(10):
        batch, _ = simulate_batch(1, rows=rows, seed=seed, drift="shock")
        report = compare(profile, batch, DriftThresholds())
        missed += [] if report.dataset_drift else [seed]
    assert missed == [], f"shocked batches of {rows} rows not flagged: seeds {missed}"


def test_a_98_row_random_holdout_is_not_a_drift_alert_and_the_charts_say_its_threshold(tiny_model, tmp_path):
    """The monitor stage on your own data checks a small random holdout: no drift alert from chance,
    and the history, the heatmap (PNG and SVG) and the alert text carry the threshold it was judged at."""
    from nbops.monitoring.history import read_history, upsert_history
    from nbops.monitoring.monitor import AlertRules, monitor_batch
    from nbops.monitoring.plots import drift_heatmap, drift_heatmap_svg
    from nbops.monitoring.profile import ReferenceProfile
    from nbops.runtime.integrity import PROFILE_FILE
    from nbops.runtime.model import ScoringModel

    model = ScoringModel.from_folder(tiny_model.version.path)
    profile = ReferenceProfile.load(tiny_model.version.file(PROFILE_FILE))
    rules = AlertRules(DriftThresholds(0.2, 1))
    fresh, _ = simulate_history(rows=5_000, seed=12)  # the reference's distribution, rows it never saw
    path = tmp_path / "history.parquet"
    kinds = []
    for seed in range(10):
        holdout = fresh.sample(98, random_state=seed)
        result = monitor_batch(
            f"holdout-{seed}", holdout, model=model, profile=profile, reference_metrics=tiny_model.metrics, rules=rules
        )
        kinds += [a["kind"] for a in result.alerts if a["kind"] in ("drift", "prediction_drift")]
        upsert_history(path, [result.row])
    assert kinds == [], f"random 98-row holdouts raised {kinds}"
    history = read_history(path)
    assert (history["psi_threshold"] > 0.3).all() and (history["rows"] == 98).all()
    assert {f"psi_threshold__{f}" for f in profile.features} <= set(history.columns)
    svg = drift_heatmap_svg(history, 0.2)
    assert "higher for small batches: up to" in svg and "holdout-" in svg and "98 rows" in svg
    assert "for this batch&#x27;s size (0.2 configured)" in svg or "for this batch's size (0.2 configured)" in svg
    assert "higher for small batches" in drift_heatmap(history, 0.2)._suptitle.get_text()

    shocked, _ = simulate_batch(1, rows=98, seed=1, drift="shock")
    result = monitor_batch(
        "shocked", shocked, model=model, profile=profile, reference_metrics=tiny_model.metrics, rules=rules
    )
    drift_alert = next(a for a in result.alerts if a["kind"] == "drift")
    assert "for 98 rows (0.2 configured)" in drift_alert["message"], drift_alert["message"]


def test_the_raised_threshold_note_escapes_batch_names() -> None:
    from nbops.monitoring.plots import drift_heatmap_svg

    history = pd.DataFrame(
        {
            "batch_id": ["2025-01", "<b>holdout</b>"],
            "rows": [5_000, 98],
            "status": ["ok", "ok"],
            "psi__age": [0.01, 0.2],
            "psi_threshold": [0.2, 0.45],
            "psi_threshold__age": [0.2, 0.45],
            "psi_watch__age": [0.1, 0.37],
        }
    )
    svg = drift_heatmap_svg(history, 0.2)
    assert "<b>holdout</b>" not in svg and "&lt;b&gt;holdout&lt;/b&gt;" in svg
    assert "higher for small batches: up to 0.45" in svg
    # The cell is banded by its own levels: 0.2 is below that batch's watch level, so it reads stable.
    assert "PSI 0.200: stable" in svg and "alert at 0.45 for this batch" in svg
