"""Reading raw tables and writing products atomically.

CSV is read with every column as text, so that a value that does not parse is kept as written and can
be quarantined with its reason instead of silently becoming missing. Writes go to a temporary file in
the destination folder and are renamed into place, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from nbops.errors import DataError
from nbops.files import atomic_path as atomic_path  # the writers, re-exported (their home is nbops.files)
from nbops.files import write_json as write_json
from nbops.files import write_text as write_text
from nbops.files import write_with as write_with

# The table formats nbops reads and writes (the runtime, which imports no nbops, lists them again).
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = (".csv", *PARQUET_SUFFIXES)
_UMASK = os.umask(0)
os.umask(_UMASK)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (all columns as text) or Parquet file, refusing what cannot be a table.

    Raises:
        DataError: unknown file type, missing or empty file, no rows, duplicate column names.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            "unknown file type",
            file=str(path),
            expected=f"a table ending in {', '.join(SUPPORTED_SUFFIXES)}",
            found=f"'{path.suffix or '(no suffix)'}'",
            hint="convert the file to CSV or Parquet, or rename it if it already is one",
        )
    if not path.exists():
        raise DataError("data file not found", file=str(path), hint="check the `data` key in env.yaml or DATA=...")
    if path.stat().st_size == 0:
        raise DataError(
            "the file is empty (0 bytes)", file=str(path), expected="a header row and at least one data row"
        )
    if suffix == ".csv":
        header = csv_header(path)
        refuse_duplicates(header, path)
        # pyarrow's reader is several times faster; every column stays text.
        df = pd.read_csv(path, dtype=str, keep_default_na=True, engine="pyarrow")
    else:
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError("not a readable Parquet file", file=str(path), found=str(exc)) from exc
        # Checked on the schema: reading a table with repeated names fails without naming them.
        refuse_duplicates(names, path)
        df = pq.read_table(path).to_pandas()
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(
            "the table has no data rows",
            file=str(path),
            expected="at least one data row under the header",
            found=f"{df.shape[1]} columns and 0 rows",
        )
    return df


def csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    if not header:
        raise DataError("the file has no header row", file=str(path), expected="a first line naming the columns")
    return header


def refuse_duplicates(names: list[str], path: Path) -> None:
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        positions = {d: [i + 1 for i, n in enumerate(names) if n == d] for d in dupes}
        raise DataError(
            "duplicate column names",
            file=str(path),
            column=dupes[0],
            expected="each column name once",
            found="; ".join(f"'{d}' at positions {p}" for d, p in positions.items()),
            hint="rename or drop the repeated columns; nbops will not guess which one is meant",
        )


def write_parquet(df: pd.DataFrame, dest: str | Path) -> Path:
    """Write ``df`` to Parquet atomically."""
    return write_with(lambda tmp: df.to_parquet(tmp, index=False), dest)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
