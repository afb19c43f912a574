"""`nbops drift REFERENCE CURRENT` on simulated files: through the CLI's entry function in this
process, and once as a process exactly as a user types it (with the history `nbops simulate` wrote)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nbops.data.ingest import simulator_schema
from nbops.data.simulate import ID_COLUMN, TARGET, TIME_COLUMN, simulate_batch, write_simulation
from nbops.monitoring.drift import compare, profile_of_table
from nbops.monitoring.profile import build_reference_profile
from tests.support import nbops_in_process

FEATURES = simulator_schema().features
NUMERIC = [c.name for c in FEATURES if c.kind == "numeric"]
CATEGORICAL = [c.name for c in FEATURES if c.kind == "categorical"]
NOT_FEATURES = ("--exclude", ID_COLUMN, "--exclude", TIME_COLUMN, "--exclude", TARGET)


def nbops(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbops ARGS` run from ``cwd`` as a user runs it: a new process."""
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false"}
    return subprocess.run(
        [sys.executable, "-m", "nbops", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def drift(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbops drift ARGS` from ``cwd``, in this process."""
    return nbops_in_process(None, "drift", *args, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A history written by `nbops simulate`, batches written with simulate_batch + write_simulation,
    and the history's reference profile saved as JSON."""
    folder = tmp_path_factory.mktemp("drift-cli")
    proc = nbops(folder, "simulate", "--rows", "20000", "--seed", "5", "--out", "ref.parquet")
    assert proc.returncode == 0, proc.stderr
    out = {"folder": folder, "ref": folder / "ref.parquet"}
    for name, scenario in (("shock", "shock"), ("clean", "none"), ("newcat", "new-category")):
        batch, truth = simulate_batch(1, rows=5_000, seed=5, drift=scenario)
        out[name], _ = write_simulation(batch, truth, folder / f"{name}.csv")
    reference = pd.read_parquet(out["ref"])
    out["profile"] = build_reference_profile(reference, NUMERIC, CATEGORICAL).save(folder / "reference_profile.json")
    shock = pd.read_csv(out["shock"])
    shock.drop(columns=["annual_income"]).to_csv(folder / "shock_no_income.csv", index=False)
    shock[[ID_COLUMN, TIME_COLUMN]].to_csv(folder / "no_features.csv", index=False)
    (folder / "shock.txt").write_text((folder / "shock.csv").read_text())
    pd.read_csv(out["shock"]).to_parquet(folder / "shock.pq", index=False)
    return out


def truth_of(path: Path) -> set[str]:
    sidecar = json.loads(path.with_name(path.stem + ".truth.json").read_text())
    return {d["name"] for d in sidecar["drifted_features"]}


def drift_json(files: dict[str, Path], reference: str, current: str, *extra: str) -> dict:
    proc = drift(files["folder"], reference, current, "--json", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)  # the whole of stdout is one JSON document


def test_drift_json_on_two_tables(files):
    out = drift_json(files, "ref.parquet", "shock.csv", *NOT_FEATURES)
    assert set(out) >= {"dataset_drift", "features"}
    assert out["dataset_drift"] is True
    assert {f["name"] for f in out["features"]} == set(NUMERIC + CATEGORICAL)
    for f in out["features"]:
        assert set(f) == {"name", "method", "score", "drifted"}
        assert f["method"] == "psi" and isinstance(f["score"], float) and isinstance(f["drifted"], bool)
        assert f["drifted"] == (f["score"] >= 0.2)
    drifted = {f["name"] for f in out["features"] if f["drifted"]}
    assert truth_of(files["shock"]) <= drifted
    # The same comparison done in process gives the same scores.
    expected = compare(
        profile_of_table(pd.read_parquet(files["ref"]), exclude=(ID_COLUMN, TIME_COLUMN, TARGET)),
        pd.read_csv(files["shock"]),
    )
    assert {f["name"]: f["score"] for f in out["features"]} == pytest.approx(
        {f.name: f.score for f in expected.features}, abs=1e-6
    )


def test_identifier_column_is_never_profiled(files):
    out = drift_json(files, "ref.parquet", "clean.csv")
    names = {f["name"] for f in out["features"]}
    assert ID_COLUMN not in names and set(NUMERIC + CATEGORICAL) <= names


@pytest.mark.parametrize("batch", ["shock", "newcat", "clean"])
def test_stored_profile_gives_the_same_drifted_set_as_the_table(files, batch):
    from_table = drift_json(files, "ref.parquet", f"{batch}.csv", *NOT_FEATURES)
    from_profile = drift_json(files, "reference_profile.json", f"{batch}.csv")
    drifted = lambda out: {f["name"] for f in out["features"] if f["drifted"]}  # noqa: E731
    assert {f["name"] for f in from_profile["features"]} == {f["name"] for f in from_table["features"]}
    assert drifted(from_profile) == drifted(from_table)
    assert from_profile["dataset_drift"] == from_table["dataset_drift"] == (batch != "clean")
    assert truth_of(files[batch]) <= drifted(from_profile)


def test_missing_column_is_reported_in_json(files):
    out = drift_json(files, "reference_profile.json", "shock_no_income.csv")
    assert out["missing_columns"] == ["annual_income"]
    assert out["dataset_drift"] is True
    assert "annual_income" not in {f["name"] for f in out["features"]}


def test_text_output_names_the_drift(files):
    proc = nbops(files["folder"], "drift", "reference_profile.json", "shock.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dataset drift: True" in proc.stdout
    for name in truth_of(files["shock"]):
        assert name in proc.stdout


def _clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr


@pytest.mark.parametrize(
    ("reference", "current", "needle"),
    [
        ("ref.parquet", "shock.txt", "unknown file type"),
        ("shock.txt", "shock.csv", "unknown file type"),
        ("ref.parquet", "does-not-exist.csv", "does-not-exist.csv"),
    ],
    ids=["current-txt", "reference-txt", "current-missing"],
)
def test_unusable_file_exits_with_a_clear_message(files, reference, current, needle):
    _clean_failure(drift(files["folder"], reference, current, "--json"), needle)


def test_pq_parquet_written_by_nbops_simulate_is_accepted(files):
    out = drift_json(files, "reference_profile.json", "shock.pq")
    assert truth_of(files["shock"]) <= {f["name"] for f in out["features"] if f["drifted"]}


def test_text_output_when_no_profiled_column_is_present(files):
    proc = drift(files["folder"], "reference_profile.json", "no_features.csv")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "missing columns" in proc.stdout and "dataset drift: True" in proc.stdout
