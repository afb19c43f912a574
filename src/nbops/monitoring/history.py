"""The monitoring history (one Parquet row per batch) and the alerts log (JSON lines).

Both are idempotent per batch: monitoring a batch again replaces its row and its alerts, never
duplicates them, so a retried or re-run monitoring job leaves the same history.

Each row has one ``status``: ``ok``, ``watch`` or ``alert`` (the rules are in
:func:`nbops.monitoring.monitor.assess_batch`), with the reasons in ``status_reason``, and ``labels``
('pending' until the batch's labels arrive, then 'arrived'; absent for a batch too broken to compare).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.files import write_text, write_with

KEY = "batch_id"
# Statuses written before they were graded: a batch too broken to compare, a file that could not be read.
_BROKEN = ("invalid", "unreadable")


def read_history(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=[KEY])
    return normalise_status(pd.read_parquet(path))


def normalise_status(history: pd.DataFrame) -> pd.DataFrame:
    """One of ok / watch / alert per batch, also for rows written by an older nbops.

    Those said 'ok' for every comparable batch whatever its alerts, and 'invalid' or 'unreadable' for
    a broken one; they have no ``status_reason``. Read back, a row with an alert (or broken) is
    'alert' and says that its status was inferred; monitoring the batch again grades it properly.
    """
    if history.empty or "status" not in history.columns:
        return history
    legacy = (
        history["status_reason"].isna() if "status_reason" in history.columns else pd.Series(True, index=history.index)
    )
    if not legacy.any():
        return history
    history = history.copy()
    alerts = (
        pd.to_numeric(history["alerts"], errors="coerce").fillna(0)
        if "alerts" in history.columns
        else pd.Series(0, index=history.index)
    )
    broken = history["status"].isin(_BROKEN)
    flagged = legacy & (broken | (alerts > 0))
    history["status"] = history["status"].astype(object)
    history["status_reason"] = history.get("status_reason", pd.Series(pd.NA, index=history.index)).astype(object)
    history.loc[flagged, "status"] = "alert"
    history.loc[legacy & broken, "status_reason"] = (
        "not comparable (recorded before statuses were graded; monitor the batch again)"
    )
    history.loc[flagged & ~broken, "status_reason"] = (
        "has alerts (recorded before statuses were graded; monitor the batch again)"
    )
    return history


def upsert_history(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Insert or replace rows by ``batch_id`` (a later row for the same batch updates its fields)."""
    path = Path(path)
    history = read_history(path)
    new = pd.DataFrame(list(rows))
    if new.empty:
        return history
    if not history.empty:
        merged = history.set_index(KEY)
        update = new.set_index(KEY)
        for col in update.columns:
            if col not in merged.columns:
                merged[col] = pd.NA
        for batch_id, row in update.iterrows():
            values = {k: v for k, v in row.items() if not (isinstance(v, float) and pd.isna(v)) and v is not None}
            if batch_id in merged.index:
                for k, v in values.items():
                    merged.at[batch_id, k] = v
            else:
                merged.loc[batch_id] = pd.Series(values)
        # copy() consolidates the columns set one by one (a wide history: a PSI and two levels per feature)
        history = merged.copy().reset_index()
    else:
        history = new
    if "month" in history.columns:
        history = history.sort_values(["month", KEY], ignore_index=True)
    _write(history, path)
    return history


def _write(df: pd.DataFrame, path: Path) -> None:
    write_with(lambda tmp: df.to_parquet(tmp, index=False), path)


def replace_alerts(path: str | Path, batch_id: str, alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Drop the batch's earlier alerts and append the new ones; returns every alert in the file."""
    path = Path(path)
    kept = [a for a in read_alerts(path) if a.get(KEY) != batch_id]
    allrows = kept + [dict(a, **{KEY: batch_id}) for a in alerts]
    write_text("".join(json.dumps(a, default=str) + "\n" for a in allrows), path)
    return allrows


def read_alerts(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
