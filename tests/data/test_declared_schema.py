"""The committed schema of the built-in data is exactly the simulator's declared schema."""

from __future__ import annotations

from nbops.data.ingest import simulator_schema
from nbops.data.schema import TableSchema
from nbops.data.simulate import simulate_history
from nbops.data.validate import validate_table
from tests.support import REPO


def test_committed_schema_matches_the_simulator() -> None:
    committed = TableSchema.load(REPO / "schemas" / "credit_risk.schema.yaml")
    assert committed.to_dict() == simulator_schema().to_dict()


def test_simulated_history_passes_its_declared_schema() -> None:
    df, _ = simulate_history(rows=5_000, seed=3)
    result = validate_table(df, simulator_schema(), file="simulated")
    assert result.n_quarantined == 0 and len(result.valid) == len(df)
