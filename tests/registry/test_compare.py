"""`nbops compare`: choosing the versions to compare and judging each delta by the metric's
direction (the report on a real registry of two builds: tests/e2e/test_compare.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.errors import NbopsError
from nbops.registry.compare import delta_cell, pick_versions
from nbops.registry.store import Registry, RegistryError

ROOT = Path("build/test")  # env.test.yaml's root, under the project
REGISTRY = ROOT / "registry" / "credit_risk"


# -- fast: choosing versions and judging deltas ----------------------------------------------------


def _registry(tmp_path: Path, n: int) -> Registry:
    registry = Registry(tmp_path / "registry" / "credit_risk")
    for i in range(n):
        registry.register({"model.txt": f"model {i}".encode()}, {"metrics": {}, "data": {"fingerprint": f"fp{i}"}})
    return registry


def test_defaults_candidate_alias_then_newest_and_production_alias(tmp_path: Path) -> None:
    registry = _registry(tmp_path, 3)
    cand, prod = pick_versions(registry, None, None)
    assert (cand.version, prod) == ("v0003", None)  # no aliases: the newest, and no production
    registry.set_candidate("v0002")
    registry.promote("v0001")
    cand, prod = pick_versions(registry, None, None)
    assert (cand.version, prod.version) == ("v0002", "v0001")
    cand, prod = pick_versions(registry, "3", "candidate")
    assert (cand.version, prod.version) == ("v0003", "v0002")


def test_unknown_version_lists_the_registered_ones(tmp_path: Path) -> None:
    registry = _registry(tmp_path, 2)
    with pytest.raises(RegistryError, match=r"--production: no model version 'v0042'.*registered: v0001, v0002"):
        pick_versions(registry, None, "v0042")
    with pytest.raises(RegistryError, match=r"'production' alias is not set.*registered: v0001, v0002"):
        pick_versions(registry, "production", None)
    with pytest.raises(NbopsError, match="no model registered yet"):
        pick_versions(_registry(tmp_path / "empty", 0), None, None)


@pytest.mark.parametrize(
    ("metric", "candidate", "production", "expected"),
    [
        ("roc_auc", 0.80, 0.75, "+0.0500 (better)"),
        ("roc_auc", 0.75, 0.80, "-0.0500 (worse)"),
        ("log_loss", 0.30, 0.32, "-0.0200 (better)"),
        ("rmse", 1.5, 1.2, "+0.3000 (worse)"),
        ("r2", 0.5, 0.5, "+0.0000 (same)"),
        ("mean_prediction", 0.2, 0.1, "+0.1000"),
        ("roc_auc", float("nan"), 0.8, "n/a"),
        ("roc_auc", 0.8, None, "n/a"),
    ],
)
def test_delta_is_candidate_minus_production_judged_by_direction(
    metric: str, candidate: float, production: float | None, expected: str
) -> None:
    assert delta_cell(metric, candidate, production) == expected
