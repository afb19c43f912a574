"""A loaded, verified model: what ``<pkg>.load()`` returns and what the batch scorer and the API use.

Loading checks every file against the SHA-256 checksums written when the version was registered, and
refuses a model whose files were altered. Nothing is ever unpickled: the booster is LightGBM text, the
transform, schema and metadata are JSON.

A binary model's ``predict`` returns the probability of the positive class, a regression model's the
estimate, one number per row. A multiclass model's ``predict`` returns a DataFrame with one
probability column per class, named by the class (each row sums to 1), and ``predict_label`` the
most likely class of each row.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import lightgbm as lgb
import numpy as np
import pandas as pd

from .compiled import (
    COMPILED_DIR,
    ENGINE_COMPILED,
    ENGINE_LIGHTGBM,
    CompiledForest,
    CompiledModelWarning,
    load_compiled,
)
from .integrity import (
    FEATURE_CODE_FILE,
    MANIFEST,
    METADATA_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    SCHEMA_FILE,
    TRANSFORM_FILE,
    IntegrityError,
    verify,
)
from .schema import InputError, InputSchema, class_codes
from .transform import FeatureTransform

# A multiclass model's columns in a scored file: the most likely class, then one probability per class.
LABEL_COLUMN = "predicted_label"
PROBABILITY_PREFIX = "proba_"


def probability_column(label: object) -> str:
    """The column of a class's probability in a scored file: ``proba_<class>``."""
    return f"{PROBABILITY_PREFIX}{label}"


class PredictThreads(TypedDict):
    """Keyword arguments of ``Booster.predict`` that choose its threads."""

    num_threads: int


class RowPredictor:
    """LightGBM's single-row fast path: the prediction configuration is built once, not per call.

    ``Booster.predict`` re-parses its parameters and sets up a predictor on every call (about 70 µs
    on one row here); the C API's SingleRowFast entry points do that once (about 18 µs per row), with
    bit-identical results. Falls back to ``Booster.predict`` if the library lacks the entry points.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        import ctypes
        import threading

        from lightgbm import basic

        self._ctypes = ctypes
        self._lib = basic._LIB
        self._safe_call = basic._safe_call
        self._booster = booster
        self._handle = ctypes.c_void_p()
        self._lock = threading.Lock()  # one FastConfig is not safe to share between threads
        self._safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(basic._C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(basic._C_API_DTYPE_FLOAT64),
                ctypes.c_int32(booster.num_feature()),
                basic._c_str("num_threads=1"),
                ctypes.byref(self._handle),
            )
        )
        self._out = np.empty(max(1, booster.num_model_per_iteration()), dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def predict(self, row: np.ndarray) -> float:
        return float(self.predict_all(row)[0])

    def predict_all(self, row: np.ndarray) -> np.ndarray:
        """Every output of the model for one row (a multiclass model's class probabilities)."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        with self._lock:
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    row.ctypes.data_as(self._ctypes.c_void_p),
                    self._ctypes.byref(self._out_len),
                    self._out_ptr,
                )
            )
            return self._out[: self._out_len.value].copy()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            try:
                self._lib.LGBM_FastConfigFree(handle)
            except Exception:  # interpreter shutdown: nothing left to free into
                pass


class ScoringModel:
    """A model version ready to score: validation, the feature transform and the booster.

    A compiled wheel also carries the booster's trees as machine code (:mod:`.compiled`), which then
    score every batch and record instead of LightGBM; :attr:`engine` says which one scores, and
    :attr:`engine_notice` why LightGBM does where the compiled trees were expected.
    """

    def __init__(
        self, booster: lgb.Booster, transform: FeatureTransform, schema: InputSchema, metadata: dict[str, Any]
    ) -> None:
        self.booster = booster
        self.feature_transform = transform
        # A record may carry the target (the training table's rows, as they are): a version whose contract
        # predates its `ignored` list still knows the target's name from its metadata.
        target = metadata.get("target")
        self.schema = schema.ignoring([target]) if isinstance(target, str) else schema
        self.metadata = metadata
        self.version: str = metadata.get("version", "unversioned")
        self.task_type: str = metadata.get("task_type", "binary")
        # The training data's reference profile (JSON), when the version carries one: the API docs'
        # example record is built from it.
        self.reference_profile: dict[str, Any] | None = None
        self._row_threads: PredictThreads = {"num_threads": 1}  # one row: threads only add wake-up latency
        # A multiclass model's classes, in the order of the booster's outputs (None for the others).
        self.classes: list[Any] | None = schema.classes if self.task_type == "multiclass" else None
        try:
            self._row_predictor: RowPredictor | None = RowPredictor(booster)
        except (AttributeError, OSError):  # a LightGBM build without the fast single-row API
            self._row_predictor = None
        self._batch_threads: PredictThreads = {
            "num_threads": int(os.environ.get("NBOPS_SCORING_THREADS", "0")) or (os.cpu_count() or 1)
        }
        # The compiled trees, when a compiled wheel's load() found them usable (see use_compiled).
        self._forest: CompiledForest | None = None
        # Why LightGBM scores although the wheel was compiled (None: as packaged).
        self.engine_notice: str | None = None

    @property
    def engine(self) -> str:
        """Which engine scores: ``"lleaves"`` (the compiled trees) or ``"lightgbm"`` (the booster)."""
        return ENGINE_COMPILED if self._forest is not None else ENGINE_LIGHTGBM

    def use_compiled(self, forest: CompiledForest) -> None:
        """Score with ``forest``, the compiled trees of this model's booster."""
        outputs = max(1, self.booster.num_model_per_iteration())
        if forest.n_outputs != outputs or forest.descriptor.n_features != self.booster.num_feature():
            raise ValueError(
                f"the compiled trees have {forest.descriptor.n_features} features and {forest.n_outputs} outputs, "
                f"the booster {self.booster.num_feature()} and {outputs}"
            )
        self._forest = forest
        self.engine_notice = None

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls, read: Callable[[str], bytes], where: str, compiled: Callable[[str], bytes] | None = None
    ) -> ScoringModel:
        """Load from any file source (a folder, package resources), verifying checksums first.

        ``compiled`` reads the files of a compiled wheel's ``compiled/`` folder: its trees then score,
        or, where they cannot (missing, stale, built for another platform), LightGBM does and a
        :class:`~.compiled.CompiledModelWarning` says why and what to do.
        """
        manifest = json.loads(read(MANIFEST))
        files = verify(read, manifest["files"], where)
        booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
        transform = FeatureTransform.from_dict(json.loads(files[TRANSFORM_FILE]), code=files.get(FEATURE_CODE_FILE))
        schema = InputSchema.from_dict(json.loads(files[SCHEMA_FILE]))
        metadata = json.loads(files[METADATA_FILE])
        model = cls(booster, transform, schema, metadata)
        if PROFILE_FILE in files:  # verified like every file of the manifest
            model.reference_profile = json.loads(files[PROFILE_FILE])
        if compiled is not None:
            compiled_where = f"{where.removesuffix('/artifacts')}/{COMPILED_DIR}"
            forest, notice = load_compiled(compiled, files[MODEL_FILE], compiled_where)
            if forest is not None:
                model.use_compiled(forest)
            else:
                model.engine_notice = notice
                warnings.warn(
                    f"scoring with LightGBM, not the compiled trees: {notice}", CompiledModelWarning, stacklevel=3
                )
        return model

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

    def predict(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> Any:
        """Validate and score a DataFrame or a list of dicts; raises :class:`InputError` on bad input.

        Returns:
            One number per row (an ndarray: the positive class's probability, or the estimate), or
            for a multiclass model a DataFrame of class probabilities, a column per class named by
            the class, rows in the input's order (and with a DataFrame's index).
        """
        index = data.index if isinstance(data, pd.DataFrame) else None
        return self._as_output(self.scores(data), index)

    def predict_label(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.Series:
        """The most likely class of each row (a multiclass model), as the training data wrote it:
        whole numbers for integer labels, else text."""
        self._require_classes("predict_label")
        index = data.index if isinstance(data, pd.DataFrame) else None
        return self.labels_of(self.scores(data), index)

    def scores(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The booster's output for validated rows: (rows,) or, multiclass, (rows, classes)."""
        if isinstance(data, pd.DataFrame):
            self.schema.check_frame(data)
            return self.score_matrix(self.transform(data))
        records = list(data)
        self.schema.check_records(records, allow_extra=True)
        return self.predict_records(records, validated=True)

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """The scoring engine's output for a feature matrix (from :meth:`transform`), on the batch threads:
        (rows,), or (rows, classes) for a multiclass model."""
        if self._forest is not None:
            return self._forest.predict(x, self._batch_threads["num_threads"])
        return np.asarray(self.booster.predict(x, **self._batch_threads))

    def labels_of(self, scores: np.ndarray, index: pd.Index | None = None) -> pd.Series:
        """The most likely class of each row of a multiclass model's ``scores``."""
        classes = self._require_classes("labels_of")
        picked = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
        integer = all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        return pd.Series(picked, index=index, name=LABEL_COLUMN, dtype="int64" if integer else "string")

    def probabilities_frame(self, scores: np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
        """A multiclass model's ``scores`` as a DataFrame, a column per class named by the class."""
        classes = self._require_classes("probabilities_frame")
        return pd.DataFrame(scores, index=index, columns=[str(c) for c in classes])

    def label_codes(self, labels: Any) -> np.ndarray:
        """Labels as the metrics take them: each class's position among :attr:`classes` (multiclass;
        NaN for a missing or unknown label), otherwise the numbers themselves (NaN when missing)."""
        if self.classes is not None:
            return class_codes(labels, self.classes)
        return pd.to_numeric(pd.Series(labels), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def _as_output(self, scores: np.ndarray, index: pd.Index | None) -> Any:
        return self.probabilities_frame(scores, index) if self.classes is not None else scores

    def _require_classes(self, name: str) -> list[Any]:
        if self.classes is None:
            raise ValueError(
                f"{name} is for multiclass models; model {self.version} is {self.task_type}: its predict returns "
                "one number per row"
            )
        return self.classes

    def predict_records(self, records: Sequence[Mapping[str, Any]], *, validated: bool = False) -> np.ndarray:
        """Score records (dicts) without building a DataFrame: the serving path. The booster's
        output: (rows,), or (rows, classes) for a multiclass model."""
        if not validated:
            self.schema.check_records(list(records))
        x = self.feature_transform.transform_records(records)
        if self._forest is not None:  # one record or many: the compiled trees, on one thread below 64 rows
            threads = 1 if len(records) < 64 else self._batch_threads["num_threads"]
            return self._forest.predict(x, threads)
        if len(records) == 1 and self._row_predictor is not None:
            if self.classes is not None:
                return self._row_predictor.predict_all(x[0])[np.newaxis, :]
            return np.array([self._row_predictor.predict(x[0])])
        params = self._row_threads if len(records) < 64 else self._batch_threads
        return np.asarray(self.booster.predict(x, **params))

    def check(self, df: pd.DataFrame, first_row: int = 0) -> None:
        """Validate a chunk of a batch, naming rows by their position in the whole input."""
        self.schema.check_frame(df, first_row=first_row)


__all__ = ["IntegrityError", "InputError", "ScoringModel"]
