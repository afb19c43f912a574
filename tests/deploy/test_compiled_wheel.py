"""The compiled wheel (`nbops package --compiled`): a platform wheel whose trees are machine code.

Per task type (binary, regression, multiclass) a model is trained as the pipeline trains it, registered,
and packaged twice: the default wheel and the compiled one. Each wheel is loaded in a new interpreter,
imported from its zip (as the batch-score stage imports it) or from an unpacked copy, and scores the raw
test split; expected values are LightGBM's own scores of the same rows, computed where the model was
trained. The fallbacks (compiled model missing, stale, for another platform) are made on unpacked copies
of a real compiled wheel, as an operator's copy or a mixed-up deployment would make them. The last tests
follow the user's path: `nbops package --compiled` in a project, the wheel installed in a fresh
virtualenv, `python -m <pkg> score` and `python -m <pkg> serve`.
"""

from __future__ import annotations

import ast
import email.parser
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from nbops.runtime.compiled import platform_tag
from tests.support import copy_project, free_port, nbops, output_of, stop_process
from tests.support.compiled import KINDS, score_from
from tests.support.venvs import install_wheel, venv_env

pytestmark = pytest.mark.slow

TOLERANCE = 1e-9


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def requirements(files: dict[str, bytes]) -> list[str]:
    metadata = next(data for name, data in files.items() if name.endswith(".dist-info/METADATA"))
    return sorted(email.parser.Parser().parsestr(metadata.decode()).get_all("Requires-Dist") or [])


def unpacked(wheel: Path, dest: Path) -> Path:
    """The wheel's files in ``dest`` (what an install puts in site-packages)."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest


@pytest.fixture(scope="module")
def binary(compiled_models: dict[str, Any]) -> dict[str, Any]:
    return dict(compiled_models["binary"])


# -- the wheel file --------------------------------------------------------------------------------


def test_the_compiled_wheel_is_a_platform_wheel_carrying_the_library_beside_the_same_requirements(binary):
    model, wheels = binary["model"], binary["wheels"]
    package = model.package
    assert wheels["compiled"].name == f"{package}-1-py3-none-{platform_tag()}.whl"
    compiled, default = wheel_files(wheels["compiled"]), wheel_files(wheels["default"])
    wheel_meta = next(data for name, data in compiled.items() if name.endswith(".dist-info/WHEEL")).decode()
    assert "Root-Is-Purelib: false" in wheel_meta and f"Tag: py3-none-{platform_tag()}" in wheel_meta
    # The same four requirements as the default wheel: no lleaves, no llvmlite, no compiler at run time.
    assert requirements(compiled) == requirements(default)
    assert not [r for r in requirements(compiled) if r.lower().startswith(("lleaves", "llvmlite"))]
    descriptor = json.loads(compiled[f"{package}/compiled/compiled.json"])
    library = compiled[f"{package}/compiled/forest.so"]
    assert library.startswith(b"\x7fELF")  # a shared library, not Python
    assert descriptor["library_sha256"] == hashlib.sha256(library).hexdigest()
    assert descriptor["model_sha256"] == hashlib.sha256(model.version.file("model.txt").read_bytes()).hexdigest()
    assert descriptor["platform"] == platform_tag()
    assert descriptor["entry_point"] == "forest_root" and descriptor["n_outputs"] == 1
    assert descriptor["compiler"] == "lleaves 1.3.0 (llvmlite 0.44.0)"
    assert descriptor["target_cpu"] == "x86-64"  # the architecture's baseline: no newer instruction set
    # Everything else is the default wheel's, file for file, but the entry module that loads the trees.
    shared = {n for n in default if ".dist-info/" not in n and n != f"{package}/__init__.py"}
    assert {n: compiled[n] for n in shared} == {n: default[n] for n in shared}
    # No module of the wheel imports the compiler.
    for name, data in compiled.items():
        if name.endswith(".py"):
            imported = {
                (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
                for node in ast.walk(ast.parse(data))
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names
            }
            assert not imported & {"lleaves", "llvmlite"}, name


def test_the_default_wheel_stays_pure_python_and_scores_exactly_like_lightgbm(binary, tmp_path):
    model, wheels = binary["model"], binary["wheels"]
    assert wheels["default"].name == f"{model.package}-1-py3-none-any.whl"
    files = wheel_files(wheels["default"])
    assert not [n for n in files if n.endswith(".so") or "/compiled/" in n]
    assert "Root-Is-Purelib: true" in next(d for n, d in files.items() if n.endswith("WHEEL")).decode()
    got = score_from(wheels["default"], model.package, model.test_file, tmp_path)
    assert (got["engine"], got["notice"], got["warnings"]) == ("lightgbm", None, [])
    np.testing.assert_array_equal(got["frame"], model.lightgbm)
    np.testing.assert_array_equal(got["records"], model.lightgbm)


# -- parity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_compiled_trees_score_the_test_split_within_1e_9_of_lightgbm(compiled_models, kind, tmp_path):
    model, wheels = compiled_models[kind]["model"], compiled_models[kind]["wheels"]
    got = score_from(wheels["compiled"], model.package, model.test_file, tmp_path)
    assert got["engine"] == "lleaves", got["stderr"]
    assert got["notice"] is None and got["warnings"] == []
    assert got["package_file"].startswith(str(wheels["compiled"]))  # imported from the wheel's zip
    assert not {"lleaves", "llvmlite"} & {m.split(".")[0] for m in got["modules"]}
    expected = model.lightgbm
    for key in ("frame", "records"):
        assert got[key].shape == expected.shape, key
        assert np.max(np.abs(got[key] - expected)) <= TOLERANCE, key
    assert np.max(np.abs(got["one_record"] - expected[:1])) <= TOLERANCE  # the single-record serving path
    if kind == "multiclass":
        assert expected.shape[1] == 4 and got["columns"] == ["basic", "business", "plus", "premium"]
        np.testing.assert_allclose(got["frame"].sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # The compiled trees really scored: LightGBM sums the trees in another order, so some of the many
    # scores differ from its own in the last bits.
    assert model.num_trees > 50 and not np.array_equal(got["frame"], expected)


# -- fallbacks -------------------------------------------------------------------------------------


def _fallback_copy(case: str, compiled_models: dict[str, Any], dest: Path) -> Path:
    """An unpacked copy of the binary model's compiled wheel, with its compiled model ``case``."""
    binary = compiled_models["binary"]
    package = binary["model"].package
    site = unpacked(binary["wheels"]["compiled"], dest / "site")
    folder = site / package / "compiled"
    if case == "missing":
        shutil.rmtree(folder)
    elif case == "library missing":
        (folder / "forest.so").unlink()
    elif case == "stale":  # the compiled trees of another model (the regression one) beside this model
        other = unpacked(compiled_models["regression"]["wheels"]["compiled"], dest / "other")
        shutil.rmtree(folder)
        shutil.copytree(other / compiled_models["regression"]["model"].package / "compiled", folder)
    elif case == "other platform":
        descriptor = json.loads((folder / "compiled.json").read_text())
        descriptor["platform"] = "macosx_14_0_arm64"
        (folder / "compiled.json").write_text(json.dumps(descriptor))
    return site


FALLBACKS = {
    "missing": "the compiled model is missing: this wheel was built with --compiled but has no "
    "credit_risk_model/compiled/compiled.json",
    "library missing": "the compiled model is missing: credit_risk_model/compiled/forest.so is not in the wheel",
    "stale": "the compiled model is stale: credit_risk_model/compiled was compiled from a model file with SHA-256 "
    "{other}…, the packaged model.txt has {own}…",
    "other platform": "the compiled model was built for another platform: credit_risk_model/compiled is for "
    "macosx_14_0_arm64, this machine is {platform}",
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_a_compiled_wheel_falls_back_to_lightgbm_with_a_notice(compiled_models, case, tmp_path):
    binary = compiled_models["binary"]
    model = binary["model"]
    site = _fallback_copy(case, compiled_models, tmp_path)
    got = score_from(site, model.package, model.test_file, tmp_path / "out")
    own = hashlib.sha256(model.version.file("model.txt").read_bytes()).hexdigest()[:12]
    other = hashlib.sha256(compiled_models["regression"]["model"].version.file("model.txt").read_bytes()).hexdigest()
    why = FALLBACKS[case].format(own=own, other=other[:12], platform=platform_tag())
    what_to_do = (
        f"to score with the compiled trees, rebuild the wheel on this platform ({platform_tag()}) with "
        "`nbops package --compiled` and install it; predictions are LightGBM's, only slower, until then"
    )
    assert got["engine"] == "lightgbm"
    assert got["notice"] == f"{why}; {what_to_do}"
    assert got["warnings"] == [
        {
            "category": "CompiledModelWarning",
            "message": f"scoring with LightGBM, not the compiled trees: {why}; {what_to_do}",
        }
    ]
    # LightGBM scores: exactly its predictions, on every path.
    np.testing.assert_array_equal(got["frame"], model.lightgbm)
    np.testing.assert_array_equal(got["records"], model.lightgbm)
    np.testing.assert_array_equal(got["one_record"], model.lightgbm[:1])


def test_the_batch_scorer_of_a_falling_back_wheel_prints_the_notice_and_scores_with_lightgbm(compiled_models, tmp_path):
    model = compiled_models["binary"]["model"]
    site = _fallback_copy("other platform", compiled_models, tmp_path)
    env = {**venv_env(), "PYTHONPATH": str(site)}
    out = tmp_path / "scored.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", model.package, "score", str(model.test_file), str(out), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(
        "warning: scoring with LightGBM, not the compiled trees: the compiled model was built for another platform"
    )
    assert proc.stdout.strip().endswith(
        "(model v0001; scored by LightGBM: the compiled trees could not be used (see the warning above))"
    )
    np.testing.assert_array_equal(pd.read_parquet(out)["prediction"].to_numpy(), model.lightgbm)


def test_a_changed_compiled_library_is_refused(compiled_models, tmp_path):
    model = compiled_models["binary"]["model"]
    site = unpacked(compiled_models["binary"]["wheels"]["compiled"], tmp_path / "site")
    library = site / model.package / "compiled" / "forest.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    env = {**venv_env(), "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", model.package, "score", str(model.test_file), str(tmp_path / "out.parquet")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: refusing {model.package}/compiled/forest.so: its SHA-256 ")
    assert "recorded when the wheel was built; reinstall the wheel" in proc.stderr
    assert not (tmp_path / "out.parquet").exists()


# -- the user's path: nbops package --compiled, pip install, score, serve ---------------------------------


@pytest.fixture(scope="module")
def packaged(compiled_models, tmp_path_factory) -> dict[str, Any]:
    """A project whose registry holds the binary model as production, packaged twice with
    `nbops package --compiled` (the second time from the cache), and the wheel installed in a fresh venv."""
    model = compiled_models["binary"]["model"]
    base = tmp_path_factory.mktemp("package-compiled")
    project = copy_project(base / "project")
    shutil.copytree(model.folder / "registry", project / "registry")
    first = nbops(project, "package", "--compiled")
    wheel = project / "dist" / f"{model.package}-1-py3-none-{platform_tag()}.whl"
    first_bytes = wheel.read_bytes() if wheel.exists() else b""
    second = nbops(project, "package", "--compiled")
    python = install_wheel(wheel, base / "venv")
    return {
        "project": project,
        "first": first,
        "second": second,
        "wheel": wheel,
        "first_bytes": first_bytes,
        "python": python,
        "model": model,
        "base": base,
    }


def test_nbops_package_compiled_compiles_once_and_then_builds_from_the_cache(packaged):
    first, second, project, wheel = packaged["first"], packaged["second"], packaged["project"], packaged["wheel"]
    assert first.returncode == 0, output_of(first)
    cache = project / ".nbops" / "cache" / "compiled"
    assert first.stderr.startswith(
        f"compiling the trees of v0001 with lleaves (about 20 s on a quiet core; cached in {cache})\n"
    )
    assert "compiled trees in " in first.stderr
    assert first.stdout.startswith(f"built {wheel} (model v0001); install it with `pip install {wheel}`")
    assert "it scores with the compiled trees (lleaves 1.3.0 (llvmlite 0.44.0), " in first.stdout
    model_sha = hashlib.sha256(packaged["model"].version.file("model.txt").read_bytes()).hexdigest()
    cached = sorted(p.name for p in cache.iterdir())
    assert [name.split(".")[0] for name in cached] == [model_sha, model_sha]  # the library and its descriptor
    assert second.returncode == 0, output_of(second)
    assert "compiling" not in second.stderr
    assert second.stderr.startswith("compiled trees from the cache (")
    assert wheel.read_bytes() == packaged["first_bytes"]  # the same wheel, byte for byte


def test_the_installed_compiled_wheel_scores_a_batch_file_with_the_compiled_trees(packaged, tmp_path):
    model, python = packaged["model"], packaged["python"]
    pip = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    installed = {d["name"].lower() for d in json.loads(pip.stdout)}
    assert model.package.replace("_", "-") in installed or model.package in installed
    assert not installed & {"lleaves", "llvmlite", "nbops"}
    out = tmp_path / "scored.parquet"
    proc = subprocess.run(
        [str(python), "-m", model.package, "score", str(model.test_file), str(out), "--quiet"],
        env=venv_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = len(model.lightgbm)
    assert proc.stdout == (
        f"wrote {rows:,} predictions to {out} (model v0001; scored by the compiled trees (lleaves))\n"
    )
    assert proc.stderr == ""
    scored = pd.read_parquet(out)["prediction"].to_numpy()
    assert np.max(np.abs(scored - model.lightgbm)) <= TOLERANCE


def _json_record(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k in names}


def test_the_installed_compiled_wheel_serves_with_the_compiled_trees(packaged, tmp_path):
    model, python = packaged["model"], packaged["python"]
    test = pd.read_parquet(model.test_file)
    names = json.loads(model.version.file("input_schema.json").read_text())["fields"]
    records = [_json_record(r, [f["name"] for f in names]) for r in test.head(300).to_dict("records")]
    port = free_port()
    log = tmp_path / "server.out"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(python), "-m", model.package, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=venv_env(),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # bounded: 60 s
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        batch = httpx.post(url + "/predict", json={"records": records}, timeout=30.0)
        one = httpx.post(url + "/predict", json={"records": records[:1]}, timeout=30.0)
        maps = Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        stop_process(server)
    assert batch.status_code == 200 and one.status_code == 200, batch.text
    served = np.asarray(batch.json()["predictions"], dtype=np.float64)
    assert np.max(np.abs(served - model.lightgbm[:300])) <= TOLERANCE
    assert abs(one.json()["predictions"][0] - model.lightgbm[0]) <= TOLERANCE
    assert "model v0001 scores with the compiled trees (lleaves)" in log.read_text()
    # The serving process has the compiled library mapped (its private copy, removed once loaded).
    assert "/nbops-compiled-" in maps and "forest.so" in maps
