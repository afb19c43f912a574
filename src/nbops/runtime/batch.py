"""Batch scoring of files larger than memory: CSV or Parquet in, CSV or Parquet out, in chunks.

The output is written to a temporary file beside the destination and renamed into place only when
every row has scored, so a bad row (named by its row number and column) leaves no partial output.

Its columns: the identifier and time columns sent along, then ``prediction`` (binary: the positive
class's probability; regression: the estimate) or, for a multiclass model, ``predicted_label`` (the
most likely class) and ``proba_<class>`` for each class; then ``model_version``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .model import LABEL_COLUMN, ScoringModel, probability_column

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class Progress:
    """A dependency-free progress line on stderr (rows scored, rate), redrawn at most twice a second."""

    def __init__(self, total_bytes: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.start = self.last = time.perf_counter()
        self.rows = 0

    def update(self, rows: int, done_bytes: int) -> None:
        self.rows += rows
        now = time.perf_counter()
        if now - self.last >= 0.5:
            self.last = now
            share = min(done_bytes / self.total, 1.0)
            bar = "#" * int(30 * share)
            self.stream.write(
                f"\rscoring [{bar:<30}] {share:4.0%} {self.rows:,} rows {self.rows / (now - self.start):,.0f} rows/s"
            )
            self.stream.flush()

    def close(self, finished: bool = True) -> None:
        elapsed = time.perf_counter() - self.start
        if finished:
            self.stream.write(
                f"\rscored {self.rows:,} rows in {elapsed:.1f} s ({self.rows / max(elapsed, 1e-9):,.0f} "
                f"rows/s){' ' * 20}\n"
            )
        else:
            self.stream.write(f"\rstopped after {self.rows:,} good rows; nothing was written{' ' * 30}\n")
        self.stream.flush()


def _kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown file type '{path.suffix}'; expected one of {', '.join(SUFFIXES)}")
    return kind


def iter_chunks(path: Path, chunk_rows: int, text_columns: Sequence[str] = ()) -> Iterator[tuple[pd.DataFrame, int]]:
    """Yield (chunk, bytes of the file consumed so far) without loading the whole file.

    ``text_columns`` are read as text: Arrow fixes a column's type from the first block, so a bad
    value further down would otherwise fail inside Arrow without a row number or column name; read
    as text, it reaches the schema check, which names both. Empty fields are missing values.
    """
    if _kind(path) == "csv":
        with path.open("rb") as fh:
            options = pacsv.ReadOptions(block_size=max(1 << 16, chunk_rows * 200))
            convert = pacsv.ConvertOptions(
                strings_can_be_null=True, column_types={name: pa.string() for name in text_columns}
            )
            for batch in pacsv.open_csv(fh, read_options=options, convert_options=convert):
                yield batch.to_pandas(), fh.tell()
    else:
        pf = pq.ParquetFile(path)
        size, total, seen = path.stat().st_size, max(pf.metadata.num_rows, 1), 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            seen += batch.num_rows
            yield batch.to_pandas(), int(size * seen / total)


def score_file(
    model: ScoringModel, source: str | Path, dest: str | Path, *, chunk_rows: int = 100_000, progress: bool = True
) -> int:
    """Score ``source`` into ``dest``; return the number of rows. Raises InputError naming row and column.

    Nothing appears at ``dest`` unless every row scored.
    """
    source, dest = Path(source), Path(dest)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    out_kind = _kind(dest)
    _kind(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    bar = Progress(source.stat().st_size) if progress else None
    rows = 0
    passthrough = list(model.schema.passthrough)
    text_columns = [f.name for f in model.schema.fields] + passthrough
    try:
        with tmp.open("wb") as sink:
            writer: pq.ParquetWriter | None = None
            try:
                for chunk, done in iter_chunks(source, chunk_rows, text_columns):
                    chunk = restore_text(chunk, model)
                    model.check(chunk, first_row=rows)
                    scores = model.score_matrix(model.transform(chunk))
                    out = chunk[[c for c in passthrough if c in chunk.columns]].copy()
                    if model.classes is not None:
                        out[LABEL_COLUMN] = model.labels_of(scores, out.index)
                        for i, label in enumerate(model.classes):
                            out[probability_column(label)] = scores[:, i]
                    else:
                        out["prediction"] = scores
                    out["model_version"] = model.version
                    table = pa.Table.from_pandas(out, preserve_index=False)
                    if out_kind == "parquet":
                        if writer is None:
                            writer = pq.ParquetWriter(sink, table.schema)
                        writer.write_table(table)
                    else:
                        pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=rows == 0))
                    rows += len(chunk)
                    if bar:
                        bar.update(len(chunk), done)
            finally:
                if writer is not None:  # closed before the file under it, success or not
                    writer.close()
        if rows == 0:
            raise ValueError(f"{source}: the file has no rows to score")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
        if bar:
            bar.close(finished=dest.exists() and rows > 0)
    return rows


def restore_text(chunk: pd.DataFrame, model: ScoringModel) -> pd.DataFrame:
    """Arrow may read an all-digit category column as numbers; categories are compared as text."""
    for spec in model.schema.fields:
        if (
            spec.kind == "categorical"
            and spec.name in chunk.columns
            and not pd.api.types.is_string_dtype(chunk[spec.name])
            and chunk[spec.name].dtype != object
        ):
            chunk[spec.name] = chunk[spec.name].astype("string")
    return chunk
