"""End-to-end builds of the real pipeline (Ploomber, notebooks, W&B offline) on the small sample.

The tests that only read a build read the session's packaged project; the tests that build again
use this module's own build and leave it up to date, or build their own copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.pipeline.check import check_project
from tests.support import copy_project, files_containing, nbops, output_of

pytestmark = pytest.mark.slow

# The simulator's signal is strong and nonlinear: on 5,000 rows a model that learned anything of it
# clears this easily, while a model that learned nothing sits at 0.5.
AUC_FLOOR = 0.72


QUIET = ("--set", "tracking=disabled")  # W&B has its own tests (and the packaged project's runs)


def build(project: Path, *args: str) -> str:
    proc = nbops(project, "build", "--env", "env.test.yaml", *args)
    assert proc.returncode == 0, output_of(proc)[-5000:]
    return proc.stdout


def last_build(project: Path) -> dict:
    lines = (project / "build/test/reports/builds.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built once (W&B off) for the tests that build it again. Each of them leaves it as
    it found it, every task up to date with the same parameters, so any one runs alone or in any
    order; a test that changes a parameter builds its own copy."""
    project = copy_project(tmp_path_factory.mktemp("e2e") / "project")
    build(project, *QUIET)
    return project


# --- one build, read (the session's packaged project: read-only) ---------------------------------


def test_build_writes_every_product(packaged_project: Path) -> None:
    checked = check_project(packaged_project, "env.test.yaml")
    for task in checked.tasks:
        for key, path in task.product.items():
            assert Path(path).exists(), f"{task.name}.{key} missing: {path}"
    reports = packaged_project / "build/test/reports"
    for stem in (
        "01_ingest",
        "02_features",
        "03_train",
        "04_evaluate",
        "05_register",
        "06_package",
        "07_batch_score",
        "08_monitor",
    ):
        assert (reports / f"{stem}.ipynb").stat().st_size > 0
        assert "<html" in (reports / f"{stem}.html").read_text()[:2000].lower()


def test_one_run_identity_keys_metadata_wandb_report_model_version_and_wheel(packaged_project: Path) -> None:
    import zipfile

    from nbops.pipeline import lineage

    built = packaged_project
    checked = check_project(built, "env.test.yaml")
    state = lineage.load_state(Path(checked.settings.root))
    for task in checked.tasks:
        identity = state[task.name]["identity"]
        assert identity == lineage.identities(checked.tasks)[task.name]["identity"]
        # Ploomber's metadata beside every file product
        for path in map(Path, task.product.values()):
            meta = path.parent / f".{path.name}.metadata"
            assert json.loads(meta.read_text())["nbops_run_identity"] == identity, meta
        # the executed report (ipynb and html)
        assert identity in Path(task.product["html"]).read_text()
    train_id = state["train"]["identity"]
    # the W&B run of each stage that logs
    runs = sorted((built / "wandb" / "wandb").glob("offline-run-*"))
    for name in ("ingest", "features", "train", "evaluate", "register", "monitor"):
        assert any(files_containing(run, [state[name]["identity"]]) for run in runs), (
            f"no W&B run carries {name}'s identity"
        )
    # the registered model version and the wheel carry the training run's identity
    registration = json.loads((built / "build/test/models/registration.json").read_text())
    version_meta = json.loads(
        (Path(registration["registry"]) / "versions" / registration["version"] / "metadata.json").read_text()
    )
    assert version_meta["run_identity"] == train_id
    wheel = next((built / "build/test/dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        init = zf.read(next(n for n in names if n.endswith("_model/__init__.py"))).decode()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"RUN_IDENTITY = {train_id!r}" in init
    assert f"run-identity-{train_id}" in metadata


def test_model_learns_the_simulated_signal(packaged_project: Path) -> None:
    metrics = json.loads((packaged_project / "build/test/reports/metrics.json").read_text())["metrics"]
    assert metrics["roc_auc"] >= AUC_FLOOR
    predictions = pd.read_parquet(packaged_project / "build/test/data/processed/test_predictions.parquet")
    assert predictions["prediction"].between(0, 1).all()
    # The evaluate report computed its AUC on exactly these predictions.
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(predictions["default"], predictions["prediction"]) == pytest.approx(
        metrics["roc_auc"], abs=1e-12
    )


def test_model_file_is_lightgbm_text(packaged_project: Path) -> None:
    text = (packaged_project / "build/test/models/model.txt").read_text()
    assert text.startswith("tree\n") and "end of trees" in text


def test_every_stage_logged_an_offline_wandb_run_inside_the_project(packaged_project: Path) -> None:
    runs = sorted((packaged_project / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 6  # ingest, features, train, evaluate, register, monitor (package, batch_score: none)
    build_id = last_build(packaged_project)["build_id"]
    for run in runs:
        assert list(run.glob("run-*.wandb")), f"no run data in {run}"
    # one group per build: the build id is in every run's recorded config/metadata
    assert all(files_containing(run, [build_id]) for run in runs)


# --- building again ------------------------------------------------------------------------------


def test_a_single_task_build_is_idempotent(rebuilt: Path) -> None:
    """What each Airflow task runs: a retry of a task that succeeded changes nothing."""
    history = rebuilt / "build/test/monitoring/history.parquet"
    before = (history.stat().st_mtime_ns, len(pd.read_parquet(history)))
    out = build(rebuilt, *QUIET, "--task", "monitor")
    assert "task 'monitor' is up to date" in out
    assert (history.stat().st_mtime_ns, len(pd.read_parquet(history))) == before
    out = build(rebuilt, *QUIET, "--task", "monitor", "--force")
    assert "Ran 1 of 9 tasks: monitor" in out
    assert len(pd.read_parquet(history)) == before[1]  # history is upserted per batch, not appended


def test_summary_names_metrics_and_reports(rebuilt: Path) -> None:
    out = build(rebuilt, *QUIET, "--force")
    assert "Ran 9 of 9 tasks" in out
    assert "roc_auc" in out and "reports" in out


def test_second_build_skips_everything_and_says_so(rebuilt: Path) -> None:
    out = build(rebuilt, *QUIET)
    assert "Nothing changed: all 9 tasks are up to date" in out


def test_changed_parameter_reruns_only_the_affected_tasks(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    build(project, *QUIET)
    build(project, *QUIET, "--set", "learning_rate=0.1")
    ran = last_build(project)["tasks"]
    assert ran == {
        "ingest": False,
        "features": False,
        "tune": True,  # its study starts from the parameters as set (nothing to study: tune_trials is 0)
        "train": True,
        "evaluate": True,
        "register": True,
        "package": True,
        "batch_score": True,
        "monitor": True,
    }
    why = nbops(project, "why", "train", "--env", "env.test.yaml", *QUIET, "--set", "learning_rate=0.1")
    assert why.returncode == 0, output_of(why)
    assert "ran because parameter 'learning_rate' changed: 0.05 -> 0.1" in why.stdout
    assert "next build: up to date" in why.stdout
    why = nbops(project, "why", "features", "--env", "env.test.yaml", *QUIET)
    assert "skipped, up to date" in why.stdout
    assert "next build: up to date" in why.stdout


def test_a_failed_task_keeps_earlier_products_and_the_next_build_resumes_there(project: Path) -> None:
    source = project / "notebooks" / "04_evaluate.ipynb"
    original = source.read_text()
    nb = json.loads(original)
    nb["cells"].append(
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["raise RuntimeError('evaluation exploded')"],
        }
    )
    source.write_text(json.dumps(nb))
    quick = ["--set", "tracking=disabled", "--set", "production_months=2"]
    proc = nbops(project, "build", "--env", "env.test.yaml", *quick)
    assert proc.returncode != 0 and "evaluation exploded" in output_of(proc)
    assert "products of the tasks that succeeded are kept" in proc.stderr
    model = project / "build/test/models/model.txt"
    kept = {
        p: p.stat().st_mtime_ns
        for p in (
            model,
            project / "build/test/data/processed/train.parquet",
            project / "build/test/data/interim/valid.parquet",
        )
    }
    assert not (project / "build/test/models/registration.json").exists()
    # The runs index has the tasks that ran, and the failed one with the stage's error.
    listed = nbops(project, "runs", "--env", "env.test.yaml", "--json")
    runs = {r["task"]: r for r in json.loads(listed.stdout)}
    assert sorted(runs) == ["evaluate", "features", "ingest", "train", "tune"], output_of(listed)
    assert runs["evaluate"]["status"] == "failed" and "evaluation exploded" in runs["evaluate"]["error"]
    assert {runs[t]["status"] for t in ("ingest", "features", "tune", "train")} == {"ok"}
    source.write_text(original)
    out = build(project, *quick)
    assert (
        "Ran 5 of 9 tasks: evaluate, register, package, batch_score, monitor (skipped, up to date: ingest, "
        "features, tune, train)" in out
    )
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    evaluated = nbops(project, "runs", "--env", "env.test.yaml", "--json", "--task", "evaluate")
    [evaluate, failed] = json.loads(evaluated.stdout)  # newest first
    assert (evaluate["status"], failed["status"]) == ("ok", "failed") and evaluate["metrics"]["roc_auc"] > 0.5


def test_same_seed_gives_a_byte_identical_model_with_papermill_kernels(packaged_project: Path, tmp_path: Path) -> None:
    """Reproducibility, and the Papermill executor (one real kernel per notebook) end to end."""
    other = copy_project(tmp_path / "again")
    # ingest, features and train are enough to compare the model file
    build(other, *QUIET, "--set", "executor=papermill", "--until", "train")
    ours, theirs = packaged_project / "build/test/models", other / "build/test/models"
    assert (theirs / "model.txt").read_bytes() == (ours / "model.txt").read_bytes()
    summary = json.loads((ours / "train_summary.json").read_text())["summary"]
    assert json.loads((theirs / "train_summary.json").read_text())["summary"]["features"] == summary["features"]


# --- bring your own data -------------------------------------------------------------------


def _own_table(n: int, kind: str, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.exponential(size=n), rng.uniform(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    signal = 1.5 * x1 - x2 + 2 * (x3 > 0.7) + (colour == "red")
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "email": [f"person{i}@example.org" for i in range(n)],
            "signup_date": pd.date_range("2022-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
            "x1": x1.round(4),
            "x2": x2.round(4),
            "x3": x3.round(4),
            "colour": colour,
        }
    )
    if kind == "binary":
        df["churned"] = np.where(rng.random(n) < 1 / (1 + np.exp(-(signal - 1))), "yes", "no")
    else:
        df["spend"] = (50 + 10 * signal + rng.normal(scale=2, size=n)).round(3)
    return df


def test_bring_your_own_binary_csv_keeps_personal_data_out(project: Path) -> None:
    df = _own_table(3000, "binary")
    df["x2"] = df["x2"].astype(object)
    df.loc[[5, 17], "x2"] = "not-a-number"
    path = project / "customers.csv"
    df.to_csv(path, index=False)
    out = build(
        project,
        "--set",
        "data=customers.csv",
        "--set",
        "target=churned",
        "--set",
        "pii_columns=[email]",
        "--set",
        "id_columns=[customer_id]",
    )
    schema_file = project / "schemas" / "customers.schema.yaml"
    assert schema_file.exists(), out
    schema = schema_file.read_text()
    assert "name: email" in schema and "role: pii" in schema
    summary = json.loads((project / "build/test/data/interim/ingest_summary.json").read_text())
    assert summary["task_type"] == "binary"
    assert summary["rows_quarantined"] == 2 and summary["rows_valid"] == 2998
    quarantine = pd.read_parquet(project / "build/test/data/interim/quarantine.parquet")
    assert sorted(quarantine["_row"]) == [6, 18]
    assert quarantine["_reason"].str.contains("x2").all()
    emails = df["email"].head(200).tolist()
    for folder in ("build/test/reports", "build/test/models", "wandb"):
        assert files_containing(project / folder, emails) == [], f"personal data leaked into {folder}"
    metrics = json.loads((project / "build/test/reports/metrics.json").read_text())["metrics"]
    assert metrics["roc_auc"] > 0.7


def test_bring_your_own_regression_parquet_without_time(project: Path) -> None:
    df = _own_table(3000, "regression").drop(columns=["signup_date", "email"])
    path = project / "spend.parquet"
    df.to_parquet(path, index=False)
    build(project, "--set", "data=spend.parquet", "--set", "target=spend", "--set", "time_column=none")
    summary = json.loads((project / "build/test/data/interim/ingest_summary.json").read_text())
    assert summary["task_type"] == "regression" and summary["time_column"] is None
    split = json.loads((project / "build/test/data/processed/split_summary.json").read_text())
    assert split["method"] == "random"
    metrics = json.loads((project / "build/test/reports/metrics.json").read_text())["metrics"]
    assert metrics["r2"] > 0.5 and metrics["rmse"] < df["spend"].std()


# --- bad input fails early and clearly --------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "suffix", "target", "expected"),
    [
        ("a,b\n1,2\n", ".csv", "label", "the target column is missing"),
        ("", ".csv", "label", "the file is empty"),
        ("a,b\n1,2\n", ".xlsx", "label", "unknown file type"),
        ("a,a,label\n1,2,0\n", ".csv", "label", "duplicate column names"),
    ],
)
def test_bad_data_file_fails_before_any_kernel_starts(
    project: Path, content: str, suffix: str, target: str, expected: str
) -> None:
    path = project / f"bad{suffix}"
    path.write_text(content)
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", f"data={path.name}", "--set", f"target={target}")
    assert proc.returncode == 2
    message = output_of(proc)
    assert expected in message and str(path) in message
    assert not (project / "build/test/reports/01_ingest.ipynb").exists(), "a kernel ran before the check failed"


def test_a_target_with_more_than_fifty_classes_is_refused_with_a_clear_error(project: Path) -> None:
    df = _own_table(600, "binary")
    df["churned"] = [f"reason {i % 60}" for i in range(len(df))]
    df.to_csv(project / "multi.csv", index=False)
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "data=multi.csv", "--set", "target=churned")
    assert proc.returncode != 0
    message = output_of(proc)
    assert "the target has 60 classes, more than the 50 a multiclass model takes" in message
    assert message.rstrip().splitlines()[-1].startswith("  what to do: group rare labels"), message[-2000:]


def test_until_builds_a_task_and_its_upstream_only(project: Path) -> None:
    out = build(project, "--until", "features")
    assert (project / "build/test/data/processed/train.parquet").exists()
    assert not (project / "build/test/models/model.txt").exists()
    assert "Ran 2 of 9 tasks: ingest, features" in out
    # A partial build is not recorded as complete: the next full build still runs the rest.
    out = build(project)
    assert "Ran 7 of 9 tasks" in out


def test_until_an_unknown_task_is_refused(project: Path) -> None:
    proc = nbops(project, "build", "--env", "env.test.yaml", "--until", "evaluat")
    assert proc.returncode == 2 and "no such task" in proc.stderr
    proc = nbops(project, "build", "--env", "env.test.yaml", "--task", "evaluat")
    assert proc.returncode == 2 and "--task evaluat: no such task in pipeline.yaml; the tasks are ingest" in proc.stderr
