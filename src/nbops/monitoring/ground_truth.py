"""How the monitor did against the simulator's ground truth (simulated batches only)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def drift_recall(history: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Drifted features the monitor found of those the simulator injected, and false alarms on
    clean months (a month with no drift injected that was flagged as drifted)."""
    merged = truth.merge(
        history[["batch_id", "drifted_features", "dataset_drift"]], left_on="month", right_on="batch_id", how="left"
    )
    named = found = false_alarms = clean = 0
    for row in merged.itertuples():
        injected = row.drifted_features_x
        expected = {f for f in injected.split(",") if f} if isinstance(injected, str) else set()
        flagged = (
            {f for f in (row.drifted_features_y or "").split(",") if f}
            if isinstance(row.drifted_features_y, str)
            else set()
        )
        named += len(expected)
        found += len(expected & flagged)
        if not expected:
            clean += 1
            false_alarms += bool(row.dataset_drift)
    return {
        "named_features": named,
        "found": found,
        "recall": found / named if named else None,
        "clean_months": clean,
        "false_alarms": false_alarms,
    }


def truth_table(history: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame | str:
    """Per simulated month: what the simulator injected against what the monitor found."""
    if truth.empty:
        return "No ground truth: these batches are your own data, not simulated."
    found = history[["batch_id", "dataset_drift", "drifted_features", "alerts"]].rename(
        columns={"drifted_features": "found"}
    )
    return (
        truth.rename(columns={"drifted_features": "injected"})
        .merge(found, left_on="month", right_on="batch_id", how="left")
        .drop(columns="batch_id")
    )
