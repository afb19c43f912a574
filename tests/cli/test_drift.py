"""`nbops drift REFERENCE CURRENT` on simulated files: through the CLI's entry function in this
process, and once as a process exactly as a user types it (with the history `nbops simulate` wrote)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.data.ingest import simulator_schema
from nbops.data.schema import TableSchema
from nbops.data.simulate import ID_COLUMN, TARGET, TIME_COLUMN, simulate_batch, simulate_history, write_simulation
from nbops.monitoring.drift import compare, profile_of_table
from nbops.monitoring.profile import build_reference_profile
from tests.support import nbops_in_process

FEATURES = simulator_schema().features
NUMERIC = [c.name for c in FEATURES if c.kind == "numeric"]
CATEGORICAL = [c.name for c in FEATURES if c.kind == "categorical"]
REPO = Path(__file__).resolve().parents[2]
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
        assert set(f) == {"name", "method", "score", "threshold", "drifted"}
        assert f["method"] == "psi" and isinstance(f["score"], float) and isinstance(f["drifted"], bool)
        assert f["threshold"] == 0.2  # 5,000 rows: the configured threshold, not raised
        assert f["drifted"] == (f["score"] >= f["threshold"])
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


LEFT_OUT = {ID_COLUMN: "identifier", TIME_COLUMN: "time column", TARGET: "target"}


def test_clean_later_months_against_the_training_history_raise_no_dataset_drift(tmp_path):
    """`nbops simulate --batch 1 --drift none` months against the history they follow, ten seeds: the time,
    id and target columns are left out (as the stored profile leaves them out), so no month is flagged,
    and the output says what was left out and why."""
    alarms = []
    for seed in range(10):
        folder = tmp_path / f"seed{seed}"
        history, truth = simulate_history(rows=10_000, seed=seed)
        write_simulation(history, truth, folder / "history.parquet")
        batch, truth = simulate_batch(1, rows=2_000, seed=seed, drift="none")
        write_simulation(batch, truth, folder / "2025-01.csv")
        proc = drift(folder, "history.parquet", "2025-01.csv", "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        assert out["left_out"] == LEFT_OUT
        assert out["schema"].startswith("the schema ingest infers for history.parquet")
        assert {f["name"] for f in out["features"]} == set(NUMERIC + CATEGORICAL)
        alarms += [(seed, [f["name"] for f in out["features"] if f["drifted"]])] if out["dataset_drift"] else []
    assert alarms == [], f"clean months flagged as dataset drift: {alarms}"
    text = drift(tmp_path / "seed0", "history.parquet", "2025-01.csv")
    assert "dataset drift: False" in text.stdout
    assert (
        "left out (not drift features): application_id (identifier), month (time column), default (target); "
        "roles from the schema ingest infers for history.parquet, target 'default' (the ingest defaults)"
    ) in text.stdout


def test_the_projects_schema_decides_the_roles(files, tmp_path):
    """Inside a project, the dataset's schema file that declares the reference's columns gives the roles;
    --schema names another (here one that marks a feature as personal data)."""
    project = tmp_path / "project"
    (project / "schemas").mkdir(parents=True)
    (project / "pipeline.yaml").write_text("tasks: []\n")
    schema = REPO / "schemas" / "credit_risk.schema.yaml"
    (project / "schemas" / "credit_risk.schema.yaml").write_text(schema.read_text())
    (project / "ref.parquet").write_bytes(files["ref"].read_bytes())
    (project / "clean.csv").write_bytes(files["clean"].read_bytes())
    out = json.loads(drift(project, "ref.parquet", "clean.csv", "--json").stdout)
    assert out["schema"] == "the schema schemas/credit_risk.schema.yaml" and out["left_out"] == LEFT_OUT
    assert out["dataset_drift"] is False
    edited = TableSchema.load(schema)
    edited.column("region").role = "pii"
    edited.save(tmp_path / "edited.yaml")
    out = json.loads(
        drift(project, "ref.parquet", "clean.csv", "--json", "--schema", str(tmp_path / "edited.yaml")).stdout
    )
    assert out["left_out"] == {**LEFT_OUT, "region": "personal data"}
    assert "region" not in {f["name"] for f in out["features"]}


def test_an_inferred_schema_takes_the_projects_settings(tmp_path):
    """Without a schema file, env.yaml's target and pii_columns apply as ingest applies them; a column
    named like personal data is left out by its name."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipeline.yaml").write_text("tasks: []\n")
    (project / "env.yaml").write_text("target: churned\npii_columns: [customer_note]\n")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "tenure": rng.normal(10, 2, 2_000),
            "plan": rng.choice(["a", "b", "c"], 2_000),
            "customer_note": rng.choice(["x", "y"], 2_000),
            "email": [f"user{i}@example.org" for i in range(2_000)],
            "churned": rng.integers(0, 2, 2_000),
        }
    )
    table.iloc[:1_000].to_csv(project / "ref.csv", index=False)
    table.iloc[1_000:].to_csv(project / "cur.csv", index=False)
    out = json.loads(drift(project, "ref.csv", "cur.csv", "--json").stdout)
    assert out["left_out"] == {"customer_note": "personal data", "email": "personal data", "churned": "target"}
    assert {f["name"] for f in out["features"]} == {"tenure", "plan"}
    assert str(project / "env.yaml") in out["schema"]
    out = json.loads(drift(project, "ref.csv", "cur.csv", "--json", "--target", "plan").stdout)
    assert out["left_out"]["plan"] == "target" and "churned" in {f["name"] for f in out["features"]}


def test_a_small_batch_is_judged_at_a_raised_threshold_and_says_so(files):
    small = files["folder"] / "small.csv"
    pd.read_csv(files["clean"]).head(60).to_csv(small, index=False)
    out = drift_json(files, "reference_profile.json", "small.csv")
    assert out["rows"] == 60 and out["psi_threshold"] > 0.5 and out["dataset_drift"] is False
    assert all(f["threshold"] > 0.2 for f in out["features"] if f["name"] == "annual_income")
    text = drift(files["folder"], "reference_profile.json", "small.csv").stdout
    assert "for 60 rows (0.2 configured, raised: chance alone reaches it)" in text
