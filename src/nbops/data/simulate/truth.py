"""What the simulator did to a table, written beside it: the ground truth monitoring is tested on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DriftedFeature:
    """One feature whose distribution a scenario changed.

    Attributes:
        name: Column name.
        kind: Kind of change: ``"shift"``, ``"scale"``, ``"new-category"`` or ``"rate"``.
        description: Human-readable description, e.g. ``"annual_income multiplied by 0.65"``.
    """

    name: str
    kind: str
    description: str


@dataclass(frozen=True)
class SimulationTruth:
    """Ground truth about one simulated table (written as the ``.truth.json`` sidecar).

    Attributes:
        scenario: One of :data:`SCENARIOS` (``"none"`` for the history).
        seed: Seed used.
        rows: Number of rows.
        months: Sorted ``"YYYY-MM"`` strings present in the table.
        batch: ``None`` for the history table, ``k >= 1`` for the k-th monthly batch after it.
        drifted_features: Features whose distribution the scenario changed (empty for
            ``"none"`` and ``"concept"``).
        concept_drift: ``True`` only for ``"concept"`` (relation to the target changed).
        default_rate: Realised mean of the target.
    """

    scenario: str
    seed: int
    rows: int
    months: list[str]
    batch: int | None
    drifted_features: list[DriftedFeature]
    concept_drift: bool
    default_rate: float

    def to_dict(self) -> dict[str, Any]:
        """Return the truth as JSON-serialisable plain data.

        Returns:
            A dict with the dataclass fields; ``drifted_features`` is a list of dicts.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationTruth:
        """Rebuild a truth object from :meth:`to_dict` output (e.g. a loaded sidecar).

        Args:
            data: Mapping as produced by :meth:`to_dict`.

        Returns:
            The equivalent :class:`SimulationTruth`.
        """
        return cls(
            scenario=str(data["scenario"]),
            seed=int(data["seed"]),
            rows=int(data["rows"]),
            months=[str(m) for m in data["months"]],
            batch=None if data["batch"] is None else int(data["batch"]),
            drifted_features=[DriftedFeature(**d) for d in data["drifted_features"]],
            concept_drift=bool(data["concept_drift"]),
            default_rate=float(data["default_rate"]),
        )


def truth_path_for(out: str | Path) -> Path:
    """Return the sidecar path for a table path: ``<out without suffix>.truth.json``.

    Args:
        out: Table path, e.g. ``data/history.parquet``.

    Returns:
        The sidecar path, e.g. ``data/history.truth.json``.
    """
    out = Path(out)
    return out.with_name(out.stem + ".truth.json")
