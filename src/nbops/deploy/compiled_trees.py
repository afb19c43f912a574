"""Compile a model's trees into a shared library for the compiled wheel (``nbops package --compiled``).

lleaves turns the LightGBM model text into LLVM IR and optimises it (its own code generator: the
function it emits is ``forest_root(rows, out, start, end)``); llvmlite emits a position-independent
object file for a baseline CPU of this machine's architecture (``x86-64`` on x86_64: no instruction a
newer processor alone has, so the wheel runs on any machine of the platform), and the system linker
(``cc``, else ``ld``) makes it a shared library, which the wheel's runtime loads through ctypes. Only
this packaging step needs lleaves, llvmlite and a linker; the wheel needs none of them.

Compiling 500 trees takes about 20 s on a quiet core (over a minute on a busy one), so the library is
cached under the products root (``<root>/.nbops/cache/compiled/``), keyed by the model file's SHA-256,
the platform and the compiler versions: packaging the same model again takes no time.

Before a library is used it is checked against LightGBM on rows drawn from the model's own split
points (every threshold, values either side, missing values, unseen categories): a difference above
1e-9 refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nbops.errors import DataError
from nbops.files import write_bytes, write_json
from nbops.runtime.compiled import CompiledDescriptor, CompiledForest, platform_tag

if TYPE_CHECKING:
    import lightgbm as lgb

# The rows of the check against LightGBM, and the largest difference it accepts.
CHECK_ROWS = 4_096
TOLERANCE = 1e-9
# Bump when the way the library is built changes (target CPU, flags): older cache entries then miss.
BUILD_RECIPE = 1


@dataclass(frozen=True)
class CompiledTrees:
    """A model's compiled trees: the shared library's bytes and their descriptor (``compiled.json``)."""

    library: bytes
    descriptor: CompiledDescriptor
    seconds: float  # spent compiling now (0 when the cache had it)
    cache_file: Path | None  # where the library is cached (None without a cache folder)
    from_cache: bool
    max_abs_difference: float  # against LightGBM on the check rows


def compiler_versions() -> str:
    """``lleaves 1.3.0 (llvmlite 0.44.0)``, or a DataError saying how to install them."""
    try:
        return f"lleaves {importlib_metadata.version('lleaves')} (llvmlite {importlib_metadata.version('llvmlite')})"
    except importlib_metadata.PackageNotFoundError as exc:
        raise DataError(
            "compiled trees need lleaves and llvmlite at packaging time",
            expected="lleaves 1.3.0 and llvmlite 0.44.0 installed beside nbops (they are in requirements.lock)",
            found=f"{exc.name} is not installed",
            hint="run `make install`, or build the default wheel with `nbops package` (no --compiled)",
        ) from exc


def target_cpu(triple: str) -> str:
    """The baseline CPU of the architecture: the library runs on every processor of the platform."""
    return "x86-64" if triple.startswith(("x86_64", "amd64")) else "generic"


def linker() -> list[str]:
    """The command that links an object file into a shared library: ``$CC``/``cc``, else ``ld``."""
    for name in (os.environ.get("CC") or "cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found, "-shared"]
    found = shutil.which("ld")
    if found:
        return [found, "-shared"]
    raise DataError(
        "compiled trees need a linker to turn the compiled object into a shared library",
        expected="cc (or $CC, gcc, clang, ld) on the PATH of the machine that packages",
        found="none of them",
        hint="install one (Debian: `apt-get install gcc`), or build the default wheel with `nbops package`",
    )


def cache_key(model_sha256: str) -> str:
    """The cache entry of a model on this platform with this compiler and recipe."""
    versions = re.sub(r"[^A-Za-z0-9.]+", "-", compiler_versions()).strip("-")
    return f"{model_sha256}.{platform_tag()}.{versions}.r{BUILD_RECIPE}"


def unsupported(model_text: str) -> str | None:
    """Why lleaves cannot compile this model exactly, or None."""
    if re.search(r"^is_linear=1$", model_text, flags=re.MULTILINE):
        return "it has linear trees (linear_tree=true), which lleaves does not compile"
    objective = re.search(r"^objective=(\S+)", model_text, flags=re.MULTILINE)
    supported = {
        "binary",
        "regression",
        "regression_l1",
        "huber",
        "fair",
        "quantile",
        "mape",
        "poisson",
        "gamma",
        "tweedie",
        "multiclass",
        "xentropy",
        "cross_entropy",
        "lambdarank",
        "rank_xendcg",
    }
    if objective is None or objective.group(1) not in supported:
        found = objective.group(1) if objective else "none"
        return f"its objective '{found}' is not one lleaves compiles ({', '.join(sorted(supported))})"
    return None


def compile_trees(model_text: bytes, cache_dir: Path | None) -> CompiledTrees:
    """The compiled trees of ``model_text`` (LightGBM model text), from the cache or compiled now.

    Raises DataError when the model cannot be compiled exactly, the tools are missing, or the library
    disagrees with LightGBM.
    """
    import lightgbm as lgb

    versions = compiler_versions()
    text = model_text.decode("utf-8")
    why = unsupported(text)
    if why is not None:
        raise DataError(
            f"this model cannot be compiled: {why}",
            expected="a gradient-boosted tree model lleaves compiles exactly",
            hint="build the default wheel with `nbops package` (LightGBM scores it)",
        )
    booster = lgb.Booster(model_str=text)
    model_sha256 = hashlib.sha256(model_text).hexdigest()
    cached = cache_dir / f"{cache_key(model_sha256)}.so" if cache_dir is not None else None
    library, descriptor, seconds, from_cache = None, None, 0.0, False
    if cached is not None and cached.exists() and cached.with_suffix(".json").exists():
        descriptor = CompiledDescriptor.from_dict(json.loads(cached.with_suffix(".json").read_text()))
        library = cached.read_bytes()
        from_cache = hashlib.sha256(library).hexdigest() == descriptor.library_sha256
    if not from_cache:
        t0 = time.perf_counter()
        library, triple = _build_library(text)
        seconds = time.perf_counter() - t0
        descriptor = CompiledDescriptor(
            model_sha256=model_sha256,
            library_sha256=hashlib.sha256(library).hexdigest(),
            platform=platform_tag(),
            n_features=booster.num_feature(),
            n_outputs=max(1, booster.num_model_per_iteration()),
            compiler=versions,
            target_cpu=target_cpu(triple),
        )
    assert library is not None and descriptor is not None
    difference = check_against_lightgbm(booster, text, library, descriptor)
    if cached is not None and not from_cache:
        write_bytes(library, cached)
        write_json(descriptor.to_dict(), cached.with_suffix(".json"))
    return CompiledTrees(library, descriptor, seconds, cached, from_cache, difference)


def _build_library(text: str) -> tuple[bytes, str]:
    """Compile the model text to a shared library; return its bytes and the target triple."""
    import llvmlite.binding as llvm
    from lleaves.compiler import compile_to_module

    command = linker()
    with tempfile.TemporaryDirectory(prefix="nbops-compile-") as tmp:
        folder = Path(tmp)
        (folder / "model.txt").write_text(text, encoding="utf-8")
        module = compile_to_module(str(folder / "model.txt"))  # IR, optimised at -O3 with inlining
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        triple = llvm.get_process_triple()
        machine = llvm.Target.from_triple(triple).create_target_machine(
            cpu=target_cpu(triple), features="", reloc="pic", codemodel="default"
        )
        module.data_layout = str(machine.target_data)
        (folder / "forest.o").write_bytes(machine.emit_object(module))
        proc = subprocess.run(
            [*command, "-o", str(folder / "forest.so"), str(folder / "forest.o"), "-lm"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise DataError(
                "linking the compiled trees into a shared library failed",
                expected=f"`{' '.join(command)} -o forest.so forest.o -lm` to succeed",
                found=proc.stderr.strip()[-500:] or f"exit status {proc.returncode}",
                hint="check the C toolchain (Debian: `apt-get install gcc`), or build the default wheel",
            )
        return (folder / "forest.so").read_bytes(), triple


def check_rows(text: str, rows: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that take every kind of branch: per numeric feature its split thresholds exactly, values
    just either side, its range and missing values; per categorical feature its levels, an unseen
    code, a negative one and missing values."""
    rng = np.random.default_rng(seed)
    infos = re.search(r"^feature_infos=(.*)$", text, flags=re.MULTILINE)
    features = infos.group(1).split(" ") if infos else []
    thresholds = _numeric_thresholds(text, len(features))
    x = np.empty((rows, len(features)), dtype=np.float64)
    for j, info in enumerate(features):
        if info.startswith("["):  # numeric: [low:high]
            low, high = (float(v) for v in info[1:-1].split(":"))
            cuts = np.asarray(thresholds[j] or [low], dtype=np.float64)
            span = max(high - low, 1.0)
            pool = np.concatenate(
                [cuts, np.nextafter(cuts, np.inf), np.nextafter(cuts, -np.inf), [low, high, 0.0, -0.0, np.nan]]
            )
            spread = rng.uniform(low - span, high + span, rows)
            column = np.where(rng.random(rows) < 0.5, rng.choice(pool, rows), spread)
        elif info == "none":  # a feature no tree uses
            column = rng.normal(size=rows)
        else:  # categorical: the levels seen in training, as codes
            levels = np.asarray([float(v) for v in info.split(":") if v != ""], dtype=np.float64)
            top = float(levels.max()) if levels.size else 0.0
            column = rng.choice(np.concatenate([levels, [top + 1.0, top + 40.0, -1.0, np.nan]]), rows)
        x[:, j] = column
    return x


def _numeric_thresholds(text: str, n_features: int) -> list[list[float]]:
    """Each numeric feature's split thresholds, read from every tree of the model text."""
    out: list[list[float]] = [[] for _ in range(n_features)]
    for block in text.split("\nTree=")[1:]:
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "split_feature" not in fields:
            continue  # a tree that is a single leaf
        features = [int(v) for v in fields["split_feature"].split()]
        values = [float(v) for v in fields["threshold"].split()]
        kinds = [int(v) for v in fields["decision_type"].split()]
        for feature, value, kind in zip(features, values, kinds, strict=True):
            if not kind & 1:  # bit 0 set: a categorical split, whose threshold is an index
                out[feature].append(value)
    return out


def check_against_lightgbm(booster: lgb.Booster, text: str, library: bytes, descriptor: CompiledDescriptor) -> float:
    """The largest difference between the library and LightGBM on :func:`check_rows`; DataError above 1e-9."""
    x = check_rows(text)
    with tempfile.TemporaryDirectory(prefix="nbops-compiled-check-") as tmp:
        path = Path(tmp) / "forest.so"
        path.write_bytes(library)
        forest = CompiledForest(str(path), descriptor)
        compiled = forest.predict(x, threads=1)
    expected = np.asarray(booster.predict(x, num_threads=1))
    per_row = np.abs(compiled - expected).reshape(len(x), -1).max(axis=1, initial=0.0)
    difference = float(per_row.max(initial=0.0))
    if not difference <= TOLERANCE:  # NaN too
        row = int(np.nanargmax(per_row)) if np.isfinite(per_row).any() else 0
        raise DataError(
            "the compiled trees do not score like LightGBM",
            rows=[row],
            expected=f"predictions within {TOLERANCE:g} of LightGBM's on {len(x):,} check rows",
            found=f"a difference of {difference:.3g} at check row {row}: {compiled[row]} vs LightGBM's {expected[row]}",
            hint="build the default wheel with `nbops package` (LightGBM scores it) and report the model to lleaves",
        )
    return difference


__all__ = ["CompiledTrees", "check_against_lightgbm", "check_rows", "compile_trees", "compiler_versions"]
