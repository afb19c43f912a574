"""The product requirement, against the simulator's ground truth.

For every covariate-drift scenario the features the simulator says it changed
(``truth.drifted_features``) must be flagged, and batches whose feature distributions are unchanged
("none", and "concept", which changes only the relation to the target) must rarely raise
dataset-level drift. The reference profile is built, as the pipeline does, from the feature columns
of a 100,000-row history with the numeric/categorical split of the simulator's declared schema.

Run with ``-s`` to see the recall and false-alarm rates. The batches are spread over two worker
processes (the machine has two cores); every expectation is checked here, in the test process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
from collections import defaultdict
from collections.abc import Iterator

import pytest

from nbops.data.ingest import simulator_schema
from nbops.data.simulate import simulate_batch, simulate_history
from nbops.monitoring.drift import DriftThresholds, compare
from nbops.monitoring.profile import ReferenceProfile, build_reference_profile

pytestmark = pytest.mark.slow

FEATURES = simulator_schema().features
NUMERIC = [c.name for c in FEATURES if c.kind == "numeric"]
CATEGORICAL = [c.name for c in FEATURES if c.kind == "categorical"]
REFERENCE_ROWS = 100_000
DRIFT_SCENARIOS = ("shock", "gradual", "new-category")
CLEAN_SCENARIOS = ("none", "concept")
BATCHES = (1, 6)
MIN_RECALL = 0.95
MAX_FALSE_ALARM_RATE = 0.05
THRESHOLDS = DriftThresholds()  # the defaults the pipeline ships with (PSI 0.2, one feature)


# --------------------------------------------------------------------------- work done in the workers


def build_reference(seed: int) -> ReferenceProfile:
    history, _ = simulate_history(rows=REFERENCE_ROWS, seed=seed)
    return build_reference_profile(history[NUMERIC + CATEGORICAL], NUMERIC, CATEGORICAL)


def monitor_simulated_batch(task: tuple[ReferenceProfile, int, str, int, int]) -> dict:
    """Simulate one batch and compare it with its seed's reference: what the truth names, what was flagged."""
    profile, seed, scenario, k, rows = task
    batch, truth = simulate_batch(k, rows=rows, seed=seed, drift=scenario)
    report = compare(profile, batch, THRESHOLDS)
    return {
        "seed": seed,
        "scenario": scenario,
        "k": k,
        "expected": {d.name for d in truth.drifted_features},
        "flagged": set(report.drifted),
        "dataset_drift": report.dataset_drift,
        "missing_columns": report.missing_columns,
        "profiled": set(profile.features),
    }


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pool() -> Iterator[multiprocessing.pool.Pool]:
    # spawn, not fork: forking a process that already runs Arrow/OpenMP threads can deadlock.
    with multiprocessing.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as workers:
        yield workers


@pytest.fixture(scope="module")
def references(pool) -> dict[int, ReferenceProfile]:
    """One reference per seed (40 seeds at most), each from its own 100,000-row history."""
    seeds = range(40)
    return dict(zip(seeds, pool.map(build_reference, seeds), strict=True))


def run(pool, references, rows: int, jobs: list[tuple[int, str, int]]) -> list[dict]:
    return pool.map(
        monitor_simulated_batch,
        [(references[seed], seed, scenario, k, rows) for seed, scenario, k in jobs],
        chunksize=1,
    )


# --------------------------------------------------------------------------- tests


def test_the_schema_split_covers_the_twenty_features():
    assert len(NUMERIC) + len(CATEGORICAL) == 20
    assert set(NUMERIC).isdisjoint(CATEGORICAL)
    assert {"loan_purpose", "region"} <= set(CATEGORICAL) and {"annual_income", "loan_amount"} <= set(NUMERIC)


@pytest.mark.parametrize(("rows", "seeds"), [(1_000, 20), (100_000, 4)], ids=["1k", "100k"])
def test_named_drifted_features_are_flagged(pool, references, rows, seeds):
    jobs = [(seed, scenario, k) for seed in range(seeds) for scenario in DRIFT_SCENARIOS for k in BATCHES]
    named: dict[str, int] = defaultdict(int)
    found: dict[str, int] = defaultdict(int)
    missed: list[str] = []
    for r in run(pool, references, rows, jobs):
        assert r["expected"], f"{r['scenario']} names no drifted feature: nothing to find"
        assert r["expected"] <= r["profiled"]
        named[r["scenario"]] += len(r["expected"])
        found[r["scenario"]] += len(r["expected"] & r["flagged"])
        missed += [
            f"{r['scenario']}/k={r['k']}/seed={r['seed']}: {name}" for name in sorted(r["expected"] - r["flagged"])
        ]
    total_named, total_found = sum(named.values()), sum(found.values())
    recall = total_found / total_named
    per_scenario = ", ".join(f"{s} {found[s]}/{named[s]}" for s in DRIFT_SCENARIOS)
    print(
        f"\n[ground truth] {rows:,} rows, {seeds} seeds x {len(DRIFT_SCENARIOS)} scenarios x k in {BATCHES}: "
        f"recall {recall:.3f} ({total_found}/{total_named}; {per_scenario})"
    )
    assert recall >= MIN_RECALL, f"recall {recall:.3f} < {MIN_RECALL}; missed: {missed[:20]}"


@pytest.mark.parametrize(("rows", "seeds"), [(1_000, 40), (100_000, 10), (1_000_000, 2)], ids=["1k", "100k", "1M"])
def test_clean_batches_rarely_raise_dataset_drift(pool, references, rows, seeds):
    """One batch per seed and scenario, k alternating between 1 and 6 with the seed."""
    jobs = [(seed, scenario, BATCHES[seed % len(BATCHES)]) for seed in range(seeds) for scenario in CLEAN_SCENARIOS]
    results = run(pool, references, rows, jobs)
    for r in results:
        assert r["expected"] == set(), f"{r['scenario']} should leave every feature distribution unchanged"
        assert r["missing_columns"] == []
    alarmed = [
        f"{r['scenario']}/k={r['k']}/seed={r['seed']}: {sorted(r['flagged'])}" for r in results if r["dataset_drift"]
    ]
    rate = len(alarmed) / len(results)
    print(
        f"\n[ground truth] {rows:,} rows, {seeds} seeds, clean batches (none, concept): "
        f"false alarms {len(alarmed)}/{len(results)} = {rate:.3f}"
    )
    assert rate <= MAX_FALSE_ALARM_RATE, f"false-alarm rate {rate:.3f} > {MAX_FALSE_ALARM_RATE}: {alarmed}"
