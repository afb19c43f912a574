"""What the dask engine sends to workers, and how the client waits for it.

A model travels as text (LightGBM's model string and the transform's JSON), never pickled as a live
booster; each worker process builds it once and keeps it, keyed by a digest of the text, so the
partitions of one job (and the monitor stage's months) do not rebuild it. Workers predict with one
thread: a local cluster's workers each own one core.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_LIMIT = 8


@dataclass(frozen=True)
class ModelRef:
    """A booster and its feature transform as text: cheap to ship, rebuilt once per worker process."""

    model_text: str
    transform: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(
            self.model_text.encode() + json.dumps(self.transform, sort_keys=True).encode()
        ).hexdigest()

    def load(self) -> tuple[Any, Any]:
        """``(booster, FeatureTransform)``, built on first use in this process."""
        from nbops.runtime.transform import FeatureTransform

        return cached_booster(self.model_text), _cached(
            "transform:" + self.digest, lambda: FeatureTransform.from_dict(self.transform)
        )

    def predict(self, part: pd.DataFrame) -> np.ndarray:
        """Scores of a partition, as the pandas path computes them (same matrix, same booster)."""
        booster, transform = self.load()
        if len(part) == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(booster.predict(transform.transform(part), num_threads=1), dtype=np.float64)


def _cached(key: str, build: Any) -> Any:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = build()
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[key] = hit
    return hit


def cached_booster(model_text: str) -> Any:
    """A LightGBM booster from its model string, built once per process."""
    import lightgbm as lgb

    return _cached(
        "booster:" + hashlib.sha256(model_text.encode()).hexdigest(), lambda: lgb.Booster(model_str=model_text)
    )


def model_ref(booster: Any, transform: Any) -> ModelRef:
    """A :class:`ModelRef` for a loaded booster and :class:`~nbops.runtime.transform.FeatureTransform`."""
    return ModelRef(booster.model_to_string(), transform.to_dict(include_code=True))


def derive_partition(part: pd.DataFrame, ref: ModelRef) -> pd.DataFrame:
    """A partition with the model's derived features added (the project's feature code, run on the worker)."""
    _, transform = ref.load()
    frame: pd.DataFrame = transform.with_derived(part)
    return frame


def with_derived(batch: Any, transform: Any, ref: ModelRef) -> Any:
    """A dask DataFrame with the derived features of ``transform`` computed per partition (``batch``
    itself when it has none), so drift compares them like any feature."""
    if not transform.derived:
        return batch
    meta = batch._meta.assign(
        **{
            name: pd.Series(dtype=np.float64 if kind == "numeric" else "str")
            for name, kind in transform.derived.items()
        }
    )
    return batch.map_partitions(derive_partition, ref, meta=meta, enforce_metadata=False)


def predict_partition(part: pd.DataFrame, ref: ModelRef) -> pd.Series:
    """Predictions of one partition as a Series aligned with it (for ``map_partitions``)."""
    return pd.Series(ref.predict(part), index=part.index, name="prediction", dtype=np.float64)


def compute_all(client: Client, tasks: Sequence[Any], desc: str, *, progress: bool = True) -> list[Any]:
    """Run delayed tasks on the cluster and return their results in task order, with a progress bar."""
    from distributed import as_completed

    from nbops.progress import Progress

    futures = client.compute(list(tasks))
    if progress and len(futures) >= 8:  # a few partitions finish before a bar is worth drawing
        with Progress(len(futures), desc, unit="part") as bar:
            for _ in as_completed(futures, loop=client.loop):
                bar.update(1)
    results: list[Any] = client.gather(futures)
    return results
