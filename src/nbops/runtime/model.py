"""A loaded, verified model: what ``<pkg>.load()`` returns and what the batch scorer and the API use.

Loading checks every file against the SHA-256 checksums written when the version was registered, and
refuses a model whose files were altered. Nothing is ever unpickled: the booster is LightGBM text, the
transform, schema and metadata are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from .schema import InputError, InputSchema
from .transform import FeatureTransform

MANIFEST = "MANIFEST.json"
MODEL_FILE = "model.txt"
TRANSFORM_FILE = "feature_transform.json"
SCHEMA_FILE = "input_schema.json"
METADATA_FILE = "metadata.json"


class IntegrityError(RuntimeError):
    """A model file does not match the checksum recorded when the model was registered."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(read: Callable[[str], bytes], manifest: Mapping[str, str], where: str) -> dict[str, bytes]:
    """Read every file listed in ``manifest`` and check its SHA-256; return the verified bytes."""
    contents: dict[str, bytes] = {}
    bad = []
    for name, expected in sorted(manifest.items()):
        try:
            data = read(name)
        except FileNotFoundError:
            bad.append(f"{name}: missing")
            continue
        if sha256_bytes(data) != expected:
            bad.append(f"{name}: checksum {sha256_bytes(data)[:12]}… != recorded {expected[:12]}…")
        contents[name] = data
    if bad:
        raise IntegrityError(
            f"refusing to load the model in {where}: its files changed after it was registered ({'; '.join(bad)}). "
            "Rebuild the package from the registry (`nbops package VERSION`) rather than editing its files."
        )
    return contents


class ScoringModel:
    """A model version ready to score: validation, the feature transform and the booster."""

    def __init__(self, booster: lgb.Booster, transform: FeatureTransform, schema: InputSchema, metadata: dict[str, Any]) -> None:
        self.booster = booster
        self.feature_transform = transform
        self.schema = schema
        self.metadata = metadata
        self.version: str = metadata.get("version", "unversioned")
        self.task_type: str = metadata.get("task_type", "binary")
        self._row_threads = {"num_threads": 1}  # one row: threads only add wake-up latency
        self._batch_threads = {"num_threads": int(os.environ.get("NBOPS_SCORING_THREADS", "0")) or (os.cpu_count() or 1)}

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, read: Callable[[str], bytes], where: str) -> ScoringModel:
        """Load from any file source (a folder, package resources), verifying checksums first."""
        manifest = json.loads(read(MANIFEST))
        files = verify(read, manifest["files"], where)
        booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
        transform = FeatureTransform.from_dict(json.loads(files[TRANSFORM_FILE]))
        schema = InputSchema.from_dict(json.loads(files[SCHEMA_FILE]))
        metadata = json.loads(files[METADATA_FILE])
        return cls(booster, transform, schema, metadata)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ScoringModel:
        folder = Path(folder)

        def read(name: str) -> bytes:
            return (folder / name).read_bytes()

        return cls.from_files(read, str(folder))

    # -- scoring ---------------------------------------------------------------------------------

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Exactly the matrix fed to the booster for ``df``."""
        return self.feature_transform.transform(df)

    def predict(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate and score a DataFrame or a list of dicts; raises :class:`InputError` on bad input."""
        if isinstance(data, pd.DataFrame):
            self.schema.check_frame(data)
            return self.booster.predict(self.transform(data), **self._batch_threads)
        records = list(data)
        self.schema.check_records(records, allow_extra=True)
        return self.predict_records(records, validated=True)

    def predict_records(self, records: Sequence[Mapping[str, Any]], *, validated: bool = False) -> np.ndarray:
        """Score records (dicts) without building a DataFrame: the serving path."""
        if not validated:
            self.schema.check_records(list(records))
        x = self.feature_transform.transform_records(records)
        params = self._row_threads if len(records) < 64 else self._batch_threads
        return self.booster.predict(x, **params)

    def check(self, df: pd.DataFrame, first_row: int = 0) -> None:
        """Validate a chunk of a batch, naming rows by their position in the whole input."""
        self.schema.check_frame(df, first_row=first_row)


__all__ = ["IntegrityError", "InputError", "ScoringModel"]
