"""Compiled trees: the model's forest as machine code, scored through ``ctypes`` (no compiler at run time).

``nbops package --compiled`` compiles the booster's trees with lleaves (LLVM) into a shared library and
puts it in the wheel beside a descriptor, ``compiled/compiled.json``: the SHA-256 of the model file it
was compiled from and of the library itself, the platform it was built for, the number of features and
of outputs. The library exports the one function lleaves generates::

    void forest_root(double *rows, double *out, int32_t start, int32_t end)

which scores rows ``start`` to ``end`` of a row-major float64 matrix into ``out`` (one value per row, or
one per class for a multiclass model, already through the objective: a probability, an estimate).
Loading it needs only the standard library: the wheel depends on neither lleaves nor llvmlite.

A compiled wheel falls back to LightGBM, with a :class:`CompiledModelWarning` that says why and what to
do, when the compiled model is missing, stale (compiled from another model file than the one packaged)
or built for another platform; its predictions are then LightGBM's, only slower. A library whose bytes
differ from the descriptor's checksum is refused like any altered file (:class:`IntegrityError`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .integrity import IntegrityError

ENGINE_COMPILED = "lleaves"
ENGINE_LIGHTGBM = "lightgbm"
COMPILED_DIR = "compiled"
DESCRIPTOR = "compiled.json"
LIBRARY = "forest.so"
ENTRY_POINT = "forest_root"
DESCRIPTOR_FORMAT = 1
# Below this many rows a batch is scored on the calling thread: starting threads costs more.
THREADED_ROWS = 20_000

_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class CompiledModelWarning(UserWarning):
    """The compiled trees cannot score here: LightGBM scores instead (same predictions, slower)."""


def platform_tag() -> str:
    """This interpreter's platform as a wheel tag writes it (``linux_x86_64``, ``macosx_14_0_arm64``)."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


@dataclass(frozen=True)
class CompiledDescriptor:
    """What ``compiled.json`` records about the library beside it."""

    model_sha256: str
    library_sha256: str
    platform: str
    n_features: int
    n_outputs: int
    compiler: str  # "lleaves 1.3.0 (llvmlite 0.44.0)"
    target_cpu: str
    format_version: int = DESCRIPTOR_FORMAT
    library: str = LIBRARY
    entry_point: str = ENTRY_POINT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "engine": ENGINE_COMPILED,
            "library": self.library,
            "entry_point": self.entry_point,
            "signature": "void forest_root(double *rows, double *out, int32_t start, int32_t end)",
            "model_sha256": self.model_sha256,
            "library_sha256": self.library_sha256,
            "platform": self.platform,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "compiler": self.compiler,
            "target_cpu": self.target_cpu,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompiledDescriptor:
        if data.get("format_version") != DESCRIPTOR_FORMAT:
            raise ValueError(
                f"compiled model descriptor format {data.get('format_version')!r} is not supported "
                f"(expected {DESCRIPTOR_FORMAT})"
            )
        return cls(
            model_sha256=str(data["model_sha256"]),
            library_sha256=str(data["library_sha256"]),
            platform=str(data["platform"]),
            n_features=int(data["n_features"]),
            n_outputs=int(data["n_outputs"]),
            compiler=str(data["compiler"]),
            target_cpu=str(data["target_cpu"]),
            library=str(data.get("library", LIBRARY)),
            entry_point=str(data.get("entry_point", ENTRY_POINT)),
        )


class CompiledForest:
    """The compiled trees of one model, loaded from their shared library and called through ctypes.

    ctypes releases the GIL during the call, so a large batch is split into one block of rows per
    thread, all scored at once.
    """

    def __init__(self, library_path: str, descriptor: CompiledDescriptor) -> None:
        self.descriptor = descriptor
        self._library = ctypes.CDLL(library_path)
        entry = getattr(self._library, descriptor.entry_point)
        entry.argtypes = [_DOUBLE_P, _DOUBLE_P, ctypes.c_int32, ctypes.c_int32]
        entry.restype = None
        self._entry = entry
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()

    @property
    def n_outputs(self) -> int:
        return self.descriptor.n_outputs

    def predict(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Score a (rows, features) matrix: (rows,), or (rows, classes) for a multiclass model."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.descriptor.n_features:
            raise ValueError(
                f"the compiled trees take (rows, {self.descriptor.n_features}) features, found shape {x.shape}"
            )
        rows = x.shape[0]
        if rows >= 2**31 - 1:
            raise ValueError(f"{rows:,} rows at once: score them in chunks below 2,147,483,647 rows")
        k = self.descriptor.n_outputs
        out = np.zeros((rows, k) if k > 1 else rows, dtype=np.float64)
        px, po = x.ctypes.data_as(_DOUBLE_P), out.ctypes.data_as(_DOUBLE_P)
        threads = max(1, min(threads, rows // THREADED_ROWS))
        if threads == 1:
            self._entry(px, po, 0, rows)
            return out
        block = math.ceil(rows / threads)
        pool = self._threads(threads)
        done = [pool.submit(self._entry, px, po, start, min(start + block, rows)) for start in range(0, rows, block)]
        for future in done:
            future.result()
        return out

    def _threads(self, threads: int) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool_size < threads:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="compiled-trees")
                self._pool_size = threads
            return self._pool


def _short(digest: str) -> str:
    return digest[:12] + "…"


def load_compiled(
    read: Callable[[str], bytes], model_text: bytes, where: str
) -> tuple[CompiledForest | None, str | None]:
    """Load the compiled trees of a compiled wheel: ``(forest, None)``, or ``(None, why_not)`` where they
    cannot score here (missing, stale, another platform, unloadable); the caller falls back to LightGBM.

    ``read(name)`` reads a file of the wheel's ``compiled/`` folder (``where`` names it in messages);
    ``model_text`` is the verified model file the wheel scores with. Raises :class:`IntegrityError` when
    the library is not the one its descriptor describes.
    """
    redo = (
        f"to score with the compiled trees, rebuild the wheel on this platform ({platform_tag()}) with "
        "`nbops package --compiled` and install it; predictions are LightGBM's, only slower, until then"
    )
    try:
        descriptor = CompiledDescriptor.from_dict(json.loads(read(DESCRIPTOR)))
    except FileNotFoundError:
        missing = f"{where}/{DESCRIPTOR}"
        return None, f"the compiled model is missing: this wheel was built with --compiled but has no {missing}; {redo}"
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"the compiled model's descriptor {where}/{DESCRIPTOR} cannot be read ({exc}); {redo}"
    model_sha256 = hashlib.sha256(model_text).hexdigest()
    if descriptor.model_sha256 != model_sha256:
        return None, (
            f"the compiled model is stale: {where} was compiled from a model file with SHA-256 "
            f"{_short(descriptor.model_sha256)}, the packaged model.txt has {_short(model_sha256)}; {redo}"
        )
    if descriptor.platform != platform_tag():
        return None, (
            f"the compiled model was built for another platform: {where} is for {descriptor.platform}, "
            f"this machine is {platform_tag()}; {redo}"
        )
    try:
        library = read(descriptor.library)
    except FileNotFoundError:
        return None, f"the compiled model is missing: {where}/{descriptor.library} is not in the wheel; {redo}"
    if hashlib.sha256(library).hexdigest() != descriptor.library_sha256:
        raise IntegrityError(
            f"refusing {where}/{descriptor.library}: its SHA-256 {_short(hashlib.sha256(library).hexdigest())} is "
            f"not the {_short(descriptor.library_sha256)} recorded when the wheel was built; reinstall the wheel"
        )
    # The verified bytes are what is loaded, from a private temporary copy (a wheel may also be imported
    # from its zip, where the loader cannot open a file): removed once loaded, the mapping stays valid.
    folder = tempfile.mkdtemp(prefix="nbops-compiled-")
    path = os.path.join(folder, LIBRARY)
    try:
        with open(path, "wb") as fh:
            fh.write(library)
        return CompiledForest(path, descriptor), None
    except (OSError, AttributeError) as exc:
        return None, f"the compiled model {where}/{descriptor.library} cannot be loaded here ({exc}); {redo}"
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)


__all__ = [
    "COMPILED_DIR",
    "DESCRIPTOR",
    "ENGINE_COMPILED",
    "ENGINE_LIGHTGBM",
    "LIBRARY",
    "CompiledDescriptor",
    "CompiledForest",
    "CompiledModelWarning",
    "load_compiled",
    "platform_tag",
]
