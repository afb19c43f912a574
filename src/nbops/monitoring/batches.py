"""Finding and reading batches to monitor: batch files dropped in a folder, and the serving
prediction log written by the REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nbops.data.io import PARQUET_SUFFIXES, SUPPORTED_SUFFIXES
from nbops.errors import DataError
from nbops.monitoring.history import read_history

BATCH_SUFFIXES = SUPPORTED_SUFFIXES


def read_frame(path: str | Path, columns: list[str] | None = None, rows: int | None = None) -> pd.DataFrame:
    """A CSV (types inferred) or Parquet table; a clear error for anything else. ``columns``: only
    these of the table's columns (those it lacks are left out, for the caller to report); ``rows``:
    only its first rows (for a look at its columns without reading it whole)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BATCH_SUFFIXES:
        hint = (
            "a reference profile (.json) is accepted only as the REFERENCE"
            if suffix == ".json"
            else "convert it to CSV or Parquet"
        )
        raise DataError(
            "unknown file type", file=str(path), expected=", ".join(BATCH_SUFFIXES), found=f"'{path.suffix}'", hint=hint
        )
    if not path.exists():
        raise DataError("file not found", file=str(path))
    wanted = set(columns) if columns is not None else None

    def chosen(names: list[str]) -> list[str]:
        # None of them present: the first column still says how many rows the table has.
        return [c for c in names if wanted is None or c in wanted] or names[:1]

    if suffix in PARQUET_SUFFIXES:
        if wanted is None and rows is None:
            return pd.read_parquet(path)
        import pyarrow.parquet as pq

        picked = chosen(list(pq.read_schema(path).names))
        if rows is not None:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows, columns=picked), None)
            return batch.to_pandas() if batch is not None else pd.read_parquet(path, columns=picked)
        return pd.read_parquet(path, columns=picked)
    try:
        if wanted is None:
            return pd.read_csv(path, nrows=rows)
        return pd.read_csv(path, usecols=chosen([str(c) for c in pd.read_csv(path, nrows=0).columns]), nrows=rows)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_prediction_log(path: str | Path) -> pd.DataFrame:
    """The records and predictions of a JSON-lines prediction log, one row per record.

    A binary or regression model logged a number per record (column ``prediction``); a multiclass
    model logged the most likely class and each class's probability (columns ``predicted_label`` and
    ``proba_<class>``, as in a batch-scored file).
    """
    from nbops.runtime.model import LABEL_COLUMN, probability_column

    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        for record, score in zip(entry["records"], entry["predictions"], strict=True):
            scored = (
                {
                    LABEL_COLUMN: score.get("label"),
                    **{probability_column(c): v for c, v in (score.get("probabilities") or {}).items()},
                }
                if isinstance(score, dict)
                else {"prediction": score}
            )
            rows.append({**record, **scored, "model_version": entry.get("model_version"), "ts": entry.get("ts")})
    return pd.DataFrame(rows)


def pending_batches(batch_dir: Path, log_dir: Path | None, history_path: Path) -> list[tuple[str, Path]]:
    """(batch id, file) for every batch file not in the history yet, and every prediction log file
    (the active log grows, so it is monitored again each time; its row is replaced, not duplicated)."""
    done = set(read_history(history_path).get("batch_id", pd.Series(dtype=str)).astype(str))
    out = []
    if batch_dir.exists():
        for path in sorted(p for p in batch_dir.iterdir() if p.suffix.lower() in BATCH_SUFFIXES):
            if path.suffix.lower() in BATCH_SUFFIXES and path.stem not in done:
                out.append((path.stem, path))
    if log_dir is not None and log_dir.exists():
        for path in sorted(log_dir.glob("predictions*.jsonl")):
            batch_id = f"serving-{path.stem}"
            if path.name == "predictions.jsonl" or batch_id not in done:
                out.append((batch_id, path))
    return out
