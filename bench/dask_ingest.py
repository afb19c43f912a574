"""Ingest and the split over partitions, for the scale benchmark (bench/bench_scale.py) only.

The pipeline's ingest and features stages run on pandas under either engine: these functions are
not part of the library. The benchmark uses them to take a 10M-row table through every step on a
cluster, and tests/scale checks they agree with the pandas stages (a time-ordered split only: the
random split here is not stratified as the features stage's is).

* :func:`ingest_partitioned` validates each partition with :func:`nbops.data.validate.validate_table`
  and writes valid and quarantined rows as part files; quarantined rows keep their row number in the
  whole input. The fingerprint is the pandas engine's (row hashes are per row, fed to SHA-256 in row
  order), so both engines give the same fingerprint for the same valid rows. Checks that concern the
  whole table (a column entirely empty, a single-class target) are made per partition, so they can
  fire on a partition that is merely unlucky; the column-level data profile of the ingest report is
  not computed.
* :func:`split_partitioned` makes the features stage's time-ordered split with the same cut points as
  :func:`nbops.features.split.split_rows` (found from the time column's value counts), or its random
  split with the same random numbers (the generator jumps to each partition's first row), and fits
  the feature transform with the same levels as :meth:`FeatureTransform.fit`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nbops.data.schema import TableSchema
from nbops.engines.dask.parquet import Piece, empty_frame, plan_pieces, read_piece
from nbops.engines.dask.work import compute_all
from nbops.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

    from nbops.config.params import FeaturesParams
    from nbops.runtime.transform import FeatureTransform


def _write(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    tmp.replace(path)


def _part_name(i: int) -> str:
    return f"part.{i}.parquet"


def _validate_piece(
    piece: Piece, index: int, schema: TableSchema, file: str, valid_dir: str, quarantine_dir: str
) -> dict[str, Any]:
    """Validate one partition, write its valid and quarantined rows; return counts and row hashes."""
    from nbops.data.validate import ROW_COLUMN, validate_table

    raw = read_piece(piece).reset_index(drop=True)
    result = validate_table(raw, schema, file=file)
    quarantine = result.quarantine
    if len(quarantine):
        quarantine[ROW_COLUMN] = quarantine[ROW_COLUMN] + piece.offset
    reasons = result.reasons.copy()
    if len(reasons):
        reasons["first_rows"] = [
            [int(r) + piece.offset for r in str(s).split(", ") if r] for s in reasons["first_rows"]
        ]
    _write(result.valid, Path(valid_dir) / _part_name(index))
    if len(quarantine):
        _write(quarantine, Path(quarantine_dir) / _part_name(index))
    return {
        "rows": result.n_rows,
        "valid": len(result.valid),
        "quarantined": result.n_quarantined,
        "reasons": reasons.to_dict(orient="records"),
        "dtypes": [(str(c), str(result.valid[c].dtype)) for c in result.valid.columns],
        "row_hashes": pd.util.hash_pandas_object(result.valid, index=False).to_numpy().tobytes(),
    }


def ingest_partitioned(
    client: Client,
    source: str | Path,
    schema: TableSchema,
    valid_dir: Path,
    quarantine_dir: Path,
    *,
    max_partition_rows: int = 500_000,
) -> dict[str, Any]:
    """Validate ``source`` (Parquet file or folder) partition by partition into part files.

    Returns:
        Counts, merged quarantine reasons and the fingerprint of the valid rows.
    """
    import dask

    from nbops.engines.dask.cluster import workers_in_order

    pieces = plan_pieces(source, min_pieces=len(workers_in_order(client)), max_rows=max_partition_rows)
    if not pieces:
        raise DataError("the table has no rows", file=str(source), expected="at least one row")
    for folder in (valid_dir, quarantine_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part.*.parquet"):
            old.unlink()
    task = dask.delayed(_validate_piece, pure=False)
    parts = compute_all(
        client,
        [task(p, i, schema, str(source), str(valid_dir), str(quarantine_dir)) for i, p in enumerate(pieces)],
        "ingest",
    )
    digest = hashlib.sha256()
    digest.update(repr(parts[0]["dtypes"]).encode())
    for part in parts:
        digest.update(part["row_hashes"])
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        for r in part["reasons"]:
            entry = reasons.setdefault(
                (r["column"], r["problem"]),
                {"column": r["column"], "problem": r["problem"], "rows": 0, "first_rows": []},
            )
            entry["rows"] += int(r["rows"])
            entry["first_rows"] = sorted(entry["first_rows"] + r["first_rows"])[:5]
    return {
        "rows_read": sum(p["rows"] for p in parts),
        "rows_valid": sum(p["valid"] for p in parts),
        "rows_quarantined": sum(p["quarantined"] for p in parts),
        "quarantine_reasons": sorted(reasons.values(), key=lambda e: -e["rows"]),
        "fingerprint": digest.hexdigest(),
        "partitions": len(pieces),
    }


def _time_counts(piece: Piece, column: str) -> dict[Any, int]:
    values = read_piece(piece, [column])[column]
    return {k: int(v) for k, v in values.value_counts(dropna=False, sort=False).items()}


def _split_piece(
    piece: Piece,
    index: int,
    time_column: str | None,
    cuts: tuple[Any, Any] | None,
    fractions: tuple[float, float],
    seed: int,
    numeric: Sequence[str],
    categorical: Sequence[str],
    target: str,
    out: dict[str, str],
) -> dict[str, Any]:
    """Write one partition's train/valid/test rows; return their counts, target sums and train levels."""
    from nbops.runtime.transform import level_strings

    df = read_piece(piece).reset_index(drop=True)
    if time_column:
        assert cuts is not None
        valid_start, test_start = cuts
        t = df[time_column]
        test_mask = (t >= test_start).to_numpy()
        valid_mask = ((t >= valid_start) & (t < test_start)).to_numpy()
    else:  # split_rows' random numbers for these rows: the generator jumped to the partition's first row
        u = np.random.Generator(np.random.PCG64(seed).advance(piece.offset)).random(len(df))
        valid_fraction, test_fraction = fractions
        test_mask = u < test_fraction
        valid_mask = (u >= test_fraction) & (u < test_fraction + valid_fraction)
    masks = {"train": ~(test_mask | valid_mask), "valid": valid_mask, "test": test_mask}
    stats: dict[str, Any] = {}
    for name, mask in masks.items():
        part = df[mask].reset_index(drop=True)
        _write(part, Path(out[name]) / _part_name(index))
        stats[name] = {"rows": len(part), "target_sum": float(part[target].sum())}
        if time_column and len(part):
            stats[name]["from"], stats[name]["to"] = part[time_column].min(), part[time_column].max()
    train = df[masks["train"]]
    stats["levels"] = {name: level_strings(train[name]).dropna().unique().tolist() for name in categorical}
    return stats


def split_partitioned(
    client: Client, valid_rows: str | Path, schema: TableSchema, params: FeaturesParams, out: dict[str, Path]
) -> tuple[FeatureTransform, dict[str, Any]]:
    """The features stage over partitions: train/valid/test part folders and the fitted transform.

    Args:
        out: folders for ``train``, ``valid``, ``test`` and the ``transform`` JSON path.

    Raises:
        DataError: a time split with too few distinct times (the pandas engine falls back to a random
            split there; use it for such small tables).
    """
    import dask

    from nbops.runtime.transform import FeatureTransform

    pieces = plan_pieces(valid_rows)
    n = sum(p.rows for p in pieces)
    if n < 30:
        raise ValueError(f"{n} valid rows are too few to split into train, validation and test (need at least 30)")
    cuts = None
    if schema.time_column:
        counts: dict[Any, int] = {}
        for part in compute_all(
            client, [dask.delayed(_time_counts, pure=True)(p, schema.time_column) for p in pieces], "time column"
        ):
            for k, v in part.items():
                counts[k] = counts.get(k, 0) + v
        times = sorted(counts)
        cumulative = np.cumsum([counts[t] for t in times])

        def at_rank(r: int) -> Any:  # the r-th smallest time (0-based), as split_rows' sorted array gives it
            return times[int(np.searchsorted(cumulative, r, side="right"))]

        test_start = at_rank(int(n * (1 - params.test_fraction)))
        valid_start = at_rank(int(n * (1 - params.test_fraction - params.valid_fraction)))
        before_valid = int(cumulative[times.index(valid_start) - 1]) if times.index(valid_start) else 0
        before_test = int(cumulative[times.index(test_start) - 1]) if times.index(test_start) else 0
        if before_test == 0 or before_test - before_valid == 0 or before_valid == 0:
            raise DataError(
                "too few distinct times for a time-ordered split",
                column=schema.time_column,
                file=str(valid_rows),
                hint="use the pandas engine (it falls back to a random split) or a finer time column",
            )
        cuts = (valid_start, test_start)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    for name in ("train", "valid", "test"):
        out[name].mkdir(parents=True, exist_ok=True)
        for old in out[name].glob("part.*.parquet"):
            old.unlink()
    task = dask.delayed(_split_piece, pure=False)
    folders = {k: str(out[k]) for k in ("train", "valid", "test")}
    parts = compute_all(
        client,
        [
            task(
                p,
                i,
                schema.time_column,
                cuts,
                (params.valid_fraction, params.test_fraction),
                params.seed,
                numeric,
                categorical,
                schema.target,
                folders,
            )
            for i, p in enumerate(pieces)
        ],
        "split",
    )
    levels = {name: sorted({lv for part in parts for lv in part["levels"][name]}) for name in categorical}
    transform = FeatureTransform(numeric=numeric, categorical=levels)
    transform.save(out["transform"])
    summary: dict[str, Any] = {
        "method": "time" if schema.time_column else "random",
        "features": transform.feature_names,
        "splits": {},
    }
    for name in ("train", "valid", "test"):
        rows = sum(p[name]["rows"] for p in parts)
        entry: dict[str, Any] = {
            "rows": rows,
            "target_mean": sum(p[name]["target_sum"] for p in parts) / rows if rows else float("nan"),
        }
        if schema.time_column:
            spans = [p[name] for p in parts if p[name]["rows"]]
            entry["from"], entry["to"] = str(min(s["from"] for s in spans)), str(max(s["to"] for s in spans))
        summary["splits"][name] = entry
    summary["columns"] = list(empty_frame(valid_rows).columns)
    return transform, summary
