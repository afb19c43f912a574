"""Seeded simulator of a realistic credit-risk application table.

The simulator produces a two-year *history* table (the training/reference
data) and later *monthly batches* that can carry a known drift scenario.  Every
table comes with a :class:`SimulationTruth` describing exactly what was done, so
monitoring code can be tested against ground truth.

Design notes
------------
* Everything is vectorised with numpy; string columns are built directly as
  Arrow arrays, so one million rows take about a second.  Rows are generated in
  chunks of 2**20 (each chunk with its own random streams), which bounds the
  temporary memory: ten million rows need ~2.4 GB for the table, ~2.9 GB peak.
* Randomness is split into independent, seeded streams (features, drift,
  target, months) keyed by ``(seed, batch, chunk)``.  Consequently a drifted batch and
  the ``"none"`` batch with the same ``(seed, batch, rows)`` share *identical*
  values for every column the scenario does not name: un-named features keep
  exactly the reference generating process.
* Covariate-drift scenarios (``shock``, ``gradual``, ``new-category``) keep the
  reference relation ``P(default | features)``; only ``concept`` changes it.

Example:
    >>> df, truth = simulate_history(rows=1_000, seed=1)
    >>> truth.months[0], truth.months[-1]
    ('2023-01', '2024-12')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from nbops.data.io import SUPPORTED_SUFFIXES
from nbops.data.simulate.catalogue import (
    EDUCATION_LEVELS,
    EMPLOYMENT_TYPES,
    HOME_OWNERSHIP,
    ID_COLUMN,
    LOAN_PURPOSES,
    NEW_LOAN_PURPOSE,
    REGIONS,
    SCENARIOS,
    TARGET,
    TIME_COLUMN,
    declared_schema,
)
from nbops.data.simulate.generator import (
    MAX_ROWS,
    STREAM_MONTHS,
    check_int,
    month_label,
    parse_start,
    random_stream,
    simulate,
)
from nbops.data.simulate.truth import DriftedFeature, SimulationTruth, truth_path_for
from nbops.files import write_with

logger = logging.getLogger(__name__)

__all__ = [
    "EDUCATION_LEVELS",
    "EMPLOYMENT_TYPES",
    "HOME_OWNERSHIP",
    "ID_COLUMN",
    "LOAN_PURPOSES",
    "NEW_LOAN_PURPOSE",
    "REGIONS",
    "SCENARIOS",
    "SUPPORTED_SUFFIXES",
    "TARGET",
    "TIME_COLUMN",
    "DriftedFeature",
    "SimulationTruth",
    "declared_schema",
    "simulate_batch",
    "simulate_history",
    "truth_path_for",
    "write_simulation",
]


def simulate_history(
    rows: int = 100_000, seed: int = 0, start: str = "2023-01", months: int = 24
) -> tuple[pd.DataFrame, SimulationTruth]:
    """Simulate the stationary history (reference / training) table.

    Rows are spread over ``months`` consecutive months from ``start`` with mild
    volume growth (about 1.5 % per month) and are sorted by month; ids run
    ``A0000000000, A0000000001, ...``.

    Args:
        rows: Number of rows (1 to 100,000,000).
        seed: Non-negative seed; the same arguments always give the same table.
        start: First month, ``"YYYY-MM"``.
        months: Number of months covered (>= 1).

    Returns:
        ``(table, truth)`` with ``truth.scenario == "none"`` and ``truth.batch is None``.

    Raises:
        ValueError: For out-of-range arguments or a malformed ``start``.
        TypeError: For non-integer ``rows``/``seed``/``months``.
    """
    rows = check_int("rows", rows, 1, MAX_ROWS)
    seed = check_int("seed", seed, 0)
    months = check_int("months", months, 1)
    year, month = parse_start(start)
    labels = [month_label(year, month, i) for i in range(months)]
    weights = 1.015 ** np.arange(months)
    counts = random_stream(seed, 0, STREAM_MONTHS).multinomial(rows, weights / weights.sum())
    df, truth = simulate(n=rows, seed=seed, batch=0, drift="none", month_labels=labels, month_counts=counts)
    logger.info(
        "simulated history: %d rows, %s..%s, default rate %.4f",
        rows,
        labels[0],
        labels[-1],
        truth.default_rate,
    )
    return df, truth


def simulate_batch(
    batch: int,
    rows: int = 10_000,
    seed: int = 0,
    drift: str = "none",
    start: str = "2023-01",
    months: int = 24,
) -> tuple[pd.DataFrame, SimulationTruth]:
    """Simulate the k-th monthly batch after the history, under a drift scenario.

    The batch covers a single month: the ``batch``-th month after the history's
    last month (``batch=1`` -> ``2025-01`` with the defaults).  Ids are offset by
    ``batch * 10**8`` so they never collide with the history or other batches.

    Scenarios (see :data:`SCENARIOS`):

    * ``"none"``: the reference process, just a later month.
    * ``"shock"``: incomes x0.65 (so debt-to-income / 0.65), utilisation
      ``1.2 u + 0.12`` (capped at 1.5), more and more recent delinquencies
      (half of the clean applicants become delinquent), ~1.2 more inquiries;
      the default rate rises from ~10 % to ~35 %.  Derived columns that are
      not named (revolving balance, interest rate, loan amount) keep the
      reference distribution.
    * ``"gradual"``: loan amounts x``exp(0.45 + 0.55 g)`` and interest rates
      ``+3 + 3 g`` points, with ``g = 1 - exp(-(batch - 1) / 6)`` growing with ``batch``.
    * ``"new-category"``: 25 % of loans get the new purpose
      :data:`NEW_LOAN_PURPOSE`; nothing else changes.
    * ``"concept"``: features identical to ``"none"``; the relation to the
      target changes (utilisation effect reversed, debt-to-income x low-income
      interaction removed, purpose effects changed), at a similar default rate.

    Args:
        batch: Batch number ``k >= 1``.
        rows: Number of rows (1 to 100,000,000).
        seed: Non-negative seed (same seed as the history for a coherent series).
        drift: Scenario name, one of :data:`SCENARIOS`.
        start: First month of the history, ``"YYYY-MM"``.
        months: Number of months in the history.

    Returns:
        ``(table, truth)``; ``truth.drifted_features`` names exactly the changed features.

    Raises:
        ValueError: For an unknown scenario, out-of-range arguments or a malformed ``start``.
        TypeError: For non-integer ``batch``/``rows``/``seed``/``months``.
    """
    batch = check_int("batch", batch, 1)
    rows = check_int("rows", rows, 1, MAX_ROWS)
    seed = check_int("seed", seed, 0)
    months = check_int("months", months, 1)
    if drift not in SCENARIOS:
        raise ValueError(f"unknown drift scenario {drift!r}; expected one of {', '.join(SCENARIOS)}")
    year, month = parse_start(start)
    label = month_label(year, month, months - 1 + batch)
    df, truth = simulate(
        n=rows,
        seed=seed,
        batch=batch,
        drift=drift,
        month_labels=[label],
        month_counts=np.array([rows]),
    )
    logger.info(
        "simulated batch %d (%s, scenario %s): %d rows, default rate %.4f",
        batch,
        label,
        drift,
        rows,
        truth.default_rate,
    )
    return df, truth


def write_simulation(df: pd.DataFrame, truth: SimulationTruth, out: str | Path) -> tuple[Path, Path]:
    """Write a simulated table and its truth sidecar, atomically.

    The format follows the suffix (``.csv``, ``.parquet`` or ``.pq``, case
    insensitive).  Parent folders are created.  Each file is written to a temp
    file in the same folder and moved into place with :func:`os.replace`.

    Args:
        df: The table.
        truth: Its ground truth.
        out: Destination path of the table.

    Returns:
        ``(table_path, truth_path)`` where ``truth_path`` is ``<out without suffix>.truth.json``.

    Raises:
        ValueError: If the suffix is not supported.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"unsupported output suffix {out.suffix!r} for {out}; supported suffixes: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = truth_path_for(out)

    if suffix == ".csv":
        write_with(lambda tmp: df.to_csv(tmp, index=False), out)
    else:
        write_with(lambda tmp: df.to_parquet(tmp, index=False, engine="pyarrow"), out)

    payload = json.dumps(truth.to_dict(), indent=2, sort_keys=True) + "\n"
    write_with(lambda tmp: tmp.write_text(payload, encoding="utf-8"), truth_path)
    logger.info("wrote %d rows to %s and truth to %s", len(df), out, truth_path)
    return out, truth_path
