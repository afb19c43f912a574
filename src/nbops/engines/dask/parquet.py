"""Partitioned Parquet as a ``dask.dataframe`` whose partitions know their row offsets.

A dataset is one Parquet file or a folder of them. Each partition is a run of row groups of one file
(a row group is the unit Parquet can read alone), planned from the files' footers before anything is
read, so every partition knows how many rows it has and where its first row sits in the whole table.
That is what lets validation name rows by their position in the table, as the pandas path does, and
lets training place partitions on workers evenly. A file with fewer row groups than workers (a small
table written by pandas is one row group) is cut into row slices, so every worker still gets a share.

Dask's string conversion is switched off for these frames: partitions keep exactly the dtypes
pandas reads (pandas 3 strings), so per-partition code gives the results it gives on one machine.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.data.io import PARQUET_SUFFIXES
from nbops.errors import DataError


@dataclass(frozen=True)
class Piece:
    """One partition: row groups of one file, optionally a row slice of them."""

    path: str
    row_groups: tuple[int, ...]
    start: int  # first row within the row groups read
    stop: int  # one past the last row within the row groups read
    offset: int  # position of the first row in the whole dataset

    @property
    def rows(self) -> int:
        return self.stop - self.start


def parquet_files(source: str | Path) -> list[Path]:
    """The Parquet files of a dataset: the file itself, or a folder's files in name order.

    Raises:
        DataError: the path does not exist, is not Parquet, or the folder holds no Parquet file.
    """
    source = Path(source)
    hint = "the dask engine reads Parquet (a file, or a folder of part files); convert CSV with pandas or pyarrow first"
    if not source.exists():
        raise DataError(
            "no such file or folder",
            file=str(source),
            expected="a Parquet file or a folder of Parquet files",
            hint=hint,
        )
    if source.is_dir():
        files = sorted(
            p
            for p in source.rglob("*")
            if p.suffix.lower() in PARQUET_SUFFIXES
            and p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(source).parts)
        )
        if not files:
            raise DataError(
                "the folder holds no Parquet file",
                file=str(source),
                expected="files ending in .parquet or .pq",
                hint=hint,
            )
        return _natural_order(files)
    if source.suffix.lower() not in PARQUET_SUFFIXES:
        raise DataError(
            "the dask engine cannot read this file type",
            file=str(source),
            expected="a .parquet or .pq file",
            found=f"'{source.suffix}'",
            hint=hint,
        )
    return [source]


def _natural_order(files: list[Path]) -> list[Path]:
    """part.2 before part.10: the order Dask wrote them in."""
    import re

    def key(p: Path) -> list[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    return sorted(files, key=key)


def plan_pieces(source: str | Path, *, min_pieces: int = 1, max_rows: int | None = None) -> list[Piece]:
    """Partitions for ``source`` from the Parquet footers (no data is read).

    Args:
        min_pieces: cut row groups into row slices until there are at least this many partitions
            (or one per row), so small tables are still spread over the workers.
        max_rows: cut partitions larger than this into row slices (bounds a worker's memory).
    """
    import pyarrow.parquet as pq

    groups: list[tuple[str, int, int]] = []  # (file, row group, rows)
    for path in parquet_files(source):
        meta = pq.ParquetFile(path).metadata
        groups.extend(
            (str(path), i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups) if meta.row_group(i).num_rows
        )
    total = sum(g[2] for g in groups)
    pieces: list[Piece] = []
    offset = 0
    want = max(1, min(min_pieces, total))
    for file, group, rows in groups:
        cuts = 1
        if len(groups) < want:
            cuts = max(cuts, math.ceil(want * rows / max(total, 1)))
        if max_rows:
            cuts = max(cuts, math.ceil(rows / max_rows))
        cuts = min(cuts, rows)
        bounds = [round(k * rows / cuts) for k in range(cuts + 1)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            pieces.append(Piece(file, (group,), a, b, offset + a))
        offset += rows
    return pieces


def read_piece(piece: Piece, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of one partition as pandas reads them, indexed by their position in the dataset."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(piece.path).read_row_groups(
        list(piece.row_groups), columns=list(columns) if columns is not None else None
    )
    if piece.start or piece.stop != table.num_rows:
        table = table.slice(piece.start, piece.rows)
    df: pd.DataFrame = table.to_pandas()
    df.index = pd.RangeIndex(piece.offset, piece.offset + len(df))
    return df


def empty_frame(source: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A zero-row frame with the dataset's columns and the dtypes pandas gives them (Dask's ``meta``)."""
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(parquet_files(source)[0]).schema_arrow
    table = schema.empty_table()
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DataError(
                "columns are missing from the Parquet data",
                file=str(source),
                column=missing[0],
                expected=", ".join(columns),
                found=", ".join(schema.names),
            )
        table = table.select(list(columns))
    empty: pd.DataFrame = table.to_pandas()
    return empty


def no_string_conversion() -> Any:
    """A Dask config context that keeps pandas' own string dtype in partitions (see module doc)."""
    import dask

    return dask.config.set({"dataframe.convert-string": False})


def frame(source: str | Path, pieces: Sequence[Piece], columns: Sequence[str] | None = None) -> Any:
    """A ``dask.dataframe`` with one partition per piece (column selections are pushed into the reads)."""
    import dask.dataframe as dd

    extra = {"columns": list(columns)} if columns is not None else {}
    with no_string_conversion():
        return dd.from_map(
            read_piece,
            list(pieces),
            meta=empty_frame(source, columns),
            enforce_metadata=False,
            label="nbops-read-parquet",
            **extra,
        )


def merge_parts(parts_dir: Path, dest: Path) -> int:
    """Stream a folder of Parquet part files (in part order) into one file, atomically; return rows.

    Only one row group is in memory at a time, so the output may be larger than this machine's memory.
    """
    import pyarrow.parquet as pq

    files = parquet_files(parts_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    rows = 0
    try:
        writer: pq.ParquetWriter | None = None
        try:
            for path in files:
                pf = pq.ParquetFile(path)
                for i in range(pf.metadata.num_row_groups):
                    table = pf.read_row_group(i)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise DataError("there are no rows to write", file=str(parts_dir), expected="at least one row")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
