"""Batch scoring on a Dask cluster: Parquet in, Parquet out, one partition per task.

Each partition goes through exactly what the wheel's ``score`` command does to a chunk (text
categories restored, the input schema checked with rows named by their position in the whole input,
the one feature transform, the booster), so the same model gives identical predictions; the output
has the same columns (pass-through identifiers, ``prediction``, ``model_version``). The model is the
registered version's files, checksums verified on every worker before use.

Nothing appears at the destination unless every partition scored: parts are written to a hidden
folder beside it, then streamed into one file (or renamed into place for a folder destination).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nbops.data.io import PARQUET_SUFFIXES
from nbops.engines.dask.parquet import empty_frame, frame, merge_parts, plan_pieces
from nbops.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

    from nbops.runtime.model import ScoringModel

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()
# Rows per partition at most: a partition's frame, matrix and output stay well under a worker's memory.
MAX_PARTITION_ROWS = 1_000_000


class PartitionInputError(ValueError):
    """A partition failed the input schema (a plain, picklable carrier of the scorer's message)."""


@dataclass(frozen=True)
class ScorerRef:
    """A registered version's files (model, transform, schema, metadata, manifest) as bytes."""

    files: Mapping[str, bytes]
    where: str

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()

    def load(self) -> ScoringModel:
        """The verified :class:`~nbops.runtime.model.ScoringModel`, built once per worker process."""
        key = self.digest
        with _LOCK:
            model = _MODELS.get(key)
        if model is None:
            from nbops.runtime.model import ScoringModel

            model = ScoringModel.from_files(lambda name: self.files[name], self.where)
            with _LOCK:
                _MODELS.clear()  # one model at a time is what a job uses
                _MODELS[key] = model
        return model


def scorer_from_wheel(wheel: str | Path, package: str) -> ScorerRef:
    """The model files packaged in a scoring wheel (what ``python -m <package> score`` loads)."""
    prefix = f"{package}/artifacts/"
    with zipfile.ZipFile(wheel) as zf:
        files = {
            name[len(prefix) :]: zf.read(name)
            for name in zf.namelist()
            if name.startswith(prefix) and not name.endswith("/")
        }
    if not files:
        raise DataError(
            "the wheel holds no model files",
            file=str(wheel),
            expected=f"{prefix}* entries",
            hint="rebuild it with `nbops package`",
        )
    return ScorerRef(files, f"{Path(wheel).name}!{prefix}")


def scorer_from_folder(folder: str | Path) -> ScorerRef:
    """The model files of a registry version folder."""
    folder = Path(folder)
    return ScorerRef({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}, str(folder))


def scorer_from_model(
    model_text: str, transform: dict[str, Any], input_schema: dict[str, Any], metadata: dict[str, Any]
) -> ScorerRef:
    """A :class:`ScorerRef` for a model that is not registered (yet): the registry's files and manifest."""
    import json

    from nbops.runtime.integrity import (
        MANIFEST,
        METADATA_FILE,
        MODEL_FILE,
        SCHEMA_FILE,
        TRANSFORM_FILE,
        sha256_bytes,
    )

    files = {
        MODEL_FILE: model_text.encode(),
        TRANSFORM_FILE: (json.dumps(transform, indent=2) + "\n").encode(),
        SCHEMA_FILE: (json.dumps(input_schema, indent=2) + "\n").encode(),
        METADATA_FILE: (json.dumps(metadata, indent=2) + "\n").encode(),
    }
    files[MANIFEST] = json.dumps({"files": {name: sha256_bytes(data) for name, data in files.items()}}).encode()
    return ScorerRef(files, "an unregistered model")


def score_partition(part: pd.DataFrame, ref: ScorerRef) -> pd.DataFrame:
    """Score one partition as the wheel's scorer scores a chunk (runs on a worker)."""
    from nbops.runtime.batch import restore_text
    from nbops.runtime.schema import InputError

    model = ref.load()
    passthrough = [c for c in model.schema.passthrough if c in part.columns]
    if len(part) == 0:
        return _output_frame(part[passthrough], np.empty(0), model.version)
    first_row = int(part.index[0])  # partitions are indexed by their rows' positions in the input
    part = restore_text(part.reset_index(drop=True), model)
    try:
        model.check(part, first_row=first_row)
    except InputError as exc:
        raise PartitionInputError(str(exc)) from None
    scores = np.asarray(model.booster.predict(model.transform(part), num_threads=1))
    return _output_frame(part[passthrough], scores, model.version)


def _output_frame(passthrough: pd.DataFrame, scores: np.ndarray, version: str) -> pd.DataFrame:
    out = passthrough.copy()
    out["prediction"] = np.asarray(scores, dtype=np.float64)
    out["model_version"] = pd.Series([version] * len(out), index=out.index, dtype="str")
    return out.reset_index(drop=True)


@dataclass
class ScoreResult:
    """What a scoring job wrote."""

    rows: int
    dest: Path
    partitions: int


def score_parquet(
    client: Client,
    ref: ScorerRef,
    source: str | Path,
    dest: str | Path,
    *,
    max_partition_rows: int = MAX_PARTITION_ROWS,
) -> ScoreResult:
    """Score a Parquet file or folder into ``dest`` (one ``.parquet`` file, or a folder of parts).

    Raises:
        DataError: the input cannot be read, or a row fails the model's input schema (named by its
            row number in the input); nothing is written then.
    """
    from nbops.engines.dask.cluster import workers_in_order
    from nbops.engines.dask.parquet import no_string_conversion

    source, dest = Path(source), Path(dest)
    model = ref.load()
    pieces = plan_pieces(source, min_pieces=len(workers_in_order(client)), max_rows=max_partition_rows)
    if not pieces:
        raise DataError("the input has no rows to score", file=str(source), expected="at least one row")
    schema_columns = list(empty_frame(source).columns)
    passthrough = [c for c in model.schema.passthrough if c in schema_columns]
    meta = _output_frame(empty_frame(source, passthrough), np.empty(0), model.version)
    ref_future = client.scatter(ref, broadcast=True, hash=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = dest.parent / f".{dest.name}.parts-{uuid.uuid4().hex[:8]}"
    try:
        with no_string_conversion():
            scored = frame(source, pieces).map_partitions(
                score_partition, ref_future, meta=meta, enforce_metadata=False
            )
            job = scored.to_parquet(parts_dir, write_index=False, compute=False)
        try:
            client.compute(job).result()
        except PartitionInputError as exc:
            raise DataError(
                "a row does not match the model's input schema; nothing was written",
                file=str(source),
                found=str(exc),
                hint="fix or remove the records named (numbered from 0 across the whole input, as the wheel's scorer "
                "numbers them), or retrain on data like them",
            ) from None
        if dest.suffix.lower() in PARQUET_SUFFIXES:
            rows = merge_parts(parts_dir, dest)
        else:
            rows = sum(p.rows for p in pieces)
            if dest.exists():
                shutil.rmtree(dest)
            parts_dir.rename(dest)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
        client.cancel(ref_future)
    return ScoreResult(rows, dest, len(pieces))


def prediction_summary(
    client: Client, predictions: str | Path, quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
) -> dict[str, Any]:
    """Row count, mean and quantiles of a scored output's ``prediction`` column, computed on the cluster.

    The quantiles are exact and equal pandas' ``Series.quantile`` (which takes ``q * 100 / 100``).
    """
    from nbops.engines.dask.profile import combine_passes, run_passes

    pieces = plan_pieces(predictions)
    passes = run_passes(
        client,
        frame(predictions, pieces, ["prediction"]),
        None,
        ["prediction"],
        [],
        np.asarray(quantiles, dtype=np.float64) * 100.0 / 100,
        None,
        "prediction summary",
    )
    moments = combine_passes(e["moments"] for e in passes.entries("prediction"))
    values = (
        passes.resolved["prediction"].values if "prediction" in passes.resolved else np.full(len(quantiles), np.nan)
    )
    return {
        "rows": passes.rows,
        "mean_prediction": float(moments.mean) if moments.n else float("nan"),
        "quantiles": {str(q): float(v) for q, v in zip(quantiles, values, strict=True)},
    }


def score_with_wheel_dask(
    params: Any, wheel: Path, package: str, source: Path, dest: Path, summary_out: Path
) -> dict[str, Any]:
    """The batch-score stage with ``engine: dask``: the wheel's model scores ``source`` by partition on
    the cluster; the summary has the keys the wheel's scorer gives (see ``nbops.deploy.batch.score_with_wheel``)."""
    from nbops.data.io import write_json
    from nbops.engines.dask.cluster import describe, get_client

    client = get_client(params)
    result = score_parquet(client, scorer_from_wheel(wheel, package), source, dest)
    stats = prediction_summary(client, dest)
    cluster = describe(client)
    summary = {
        "wheel": Path(wheel).name,
        "batch": str(source),
        "rows": int(stats["rows"]),
        "mean_prediction": stats["mean_prediction"],
        "quantiles": stats["quantiles"],
        "scorer_output": f"wrote {result.rows:,} predictions to {dest} ({result.partitions} partitions on "
        f"{cluster['workers']} Dask workers at {cluster['scheduler']})",
        "engine": "dask",
    }
    write_json(summary, summary_out)
    return summary
