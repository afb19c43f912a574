"""Your own feature code, end to end: a feature module for a generated table, set in the env file and
built through the real pipeline (Ploomber, notebooks), then the built wheel installed in a fresh
virtualenv and served by real uvicorn on 127.0.0.1. Parity: the installed wheel's and the REST
service's predictions on raw test rows (no derived column sent) equal the evaluate stage's within
1e-9. The derived features are in SHAP, the segments, the reference profile and drift; editing a
function reruns features and what follows, and `nbops why` names the module.

The tests share one build and run in file order; the last one edits the module and builds again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.support import copy_project, free_port, nbops, output_of, stop_process
from tests.support.venvs import install_wheel, venv_env

pytestmark = pytest.mark.slow

ROOT = Path("build/test")
FEATURES = '''"""Derived features of the loans table: each public function is one column."""
import numpy as np
import pandas as pd


def debt_ratio(df: pd.DataFrame) -> pd.Series:
    """The loan as a share of a year's income (missing without an income)."""
    return df["amount"] / df["income"].where(df["income"] > 0)


def tenure_band(df: pd.DataFrame) -> pd.Series:
    """New or established customer, by years with the bank."""
    band = pd.Series(np.where(df["tenure"] < 5, "new", "established"), index=df.index)
    return band.where(df["tenure"].notna())
'''
DERIVED = ["debt_ratio", "tenure_band"]


def loans_table(n: int = 4000, seed: int = 7) -> pd.DataFrame:
    """A generated table whose outcome depends on the loan-to-income ratio, which no raw column is."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.6, 0.6, n).round(0)
    amount = rng.uniform(1_000, 60_000, n).round(0)
    tenure = rng.integers(0, 30, n).astype(float)
    segment = rng.choice(["retail", "smb", "corporate"], n, p=[0.6, 0.3, 0.1])
    ratio = amount / income
    logit = -2.5 + 4.0 * np.minimum(ratio, 2.0) - 0.05 * tenure + 0.4 * (segment == "smb")
    bad = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(
        {
            "loan_id": [f"L{i:06d}" for i in range(n)],
            "amount": amount,
            "income": income,
            "tenure": tenure,
            "segment": segment,
            "bad": np.where(bad, "yes", "no"),
        }
    )
    df.loc[rng.choice(n, 40, replace=False), "income"] = np.nan
    df.loc[rng.choice(n, 30, replace=False), "tenure"] = np.nan
    return df


def set_env(path: Path, values: dict[str, str]) -> None:
    """Edit the env file as a user does: change the values of existing keys."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split(":", 1)[0]
        if key in values and not line.startswith((" ", "#")):
            lines[i] = f"{key}: {values[key]}"
    path.write_text("\n".join(lines) + "\n")


def build(project: Path) -> str:
    proc = nbops(project, "build", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)[-5000:]
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with the loans table and features.py, set in env.test.yaml, built once."""
    project = copy_project(tmp_path_factory.mktemp("feature-code") / "project")
    loans_table().to_csv(project / "loans.csv", index=False)
    (project / "features.py").write_text(FEATURES)
    set_env(
        project / "env.test.yaml",
        {
            "data": "loans.csv",
            "target": "bad",
            "id_columns": "[loan_id]",
            "time_column": "none",
            "tracking": "disabled",
            "feature_code": "features.py",
        },
    )
    build(project)
    return project


@pytest.fixture(scope="module")
def venv(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The built wheel ([serve]) in a fresh virtualenv: nothing of nbops, nor the project's features.py."""
    manifest = json.loads((built / ROOT / "dist/package.json").read_text())
    python = install_wheel(Path(manifest["wheel"]), tmp_path_factory.mktemp("feature-code-venv") / "venv")
    return {"python": python, "package": manifest["package"], "version": manifest["model_version"]}


@pytest.fixture(scope="module")
def raw_test(built: Path) -> pd.DataFrame:
    """The test split as raw rows: the columns of the generated table, without the target."""
    test = pd.read_parquet(built / ROOT / "data/processed/test.parquet")
    assert set(DERIVED) <= set(test.columns)  # the split carries them for the reports...
    raw = test[["loan_id", "amount", "income", "tenure", "segment"]]  # ...a client sends none
    assert raw["income"].isna().any() and raw["tenure"].isna().any()
    return raw.reset_index(drop=True)


@pytest.fixture(scope="module")
def evaluated(built: Path, raw_test: pd.DataFrame) -> np.ndarray:
    """The evaluate stage's test predictions, in the order of ``raw_test``."""
    predictions = pd.read_parquet(built / ROOT / "data/processed/test_predictions.parquet").set_index("loan_id")
    return predictions.loc[raw_test["loan_id"], "prediction"].to_numpy(dtype=float)


def records_of(raw: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a JSON client sends them (null for a missing value)."""
    out = []
    for row in raw.to_dict("records"):
        out.append({k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()})
    return out


SCRIPT = r"""
import importlib, json, sys
import pandas as pd

cfg = json.loads(sys.argv[1])
pkg = importlib.import_module(cfg["package"])
m = pkg.load()
raw = pd.read_parquet(cfg["raw"])
records = json.loads(open(cfg["records"]).read())
out = {
    "frame": m.predict(raw).tolist(),
    "records": m.predict(records).tolist(),
    "one_by_one": [float(m.predict_records([r])[0]) for r in records[:200]],
    "features": m.feature_transform.feature_names,
    "derived_code": m.feature_transform.code.module.__name__,
    "modules": sorted(k for k in sys.modules if k.split(".")[0] in ("nbops", "features")),
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def in_venv(venv: dict[str, Any], raw_test: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("feature-code-scoring")
    raw_test.to_parquet(folder / "raw.parquet", index=False)
    (folder / "records.json").write_text(json.dumps(records_of(raw_test)))
    (folder / "script.py").write_text(SCRIPT)
    # the working directory holds a features.py that must not be what scores
    (folder / "features.py").write_text("raise SystemExit('the features.py of the working directory was imported')\n")
    cfg = {"package": venv["package"], "raw": "raw.parquet", "records": "records.json"}
    proc = subprocess.run(
        [str(venv["python"]), "script.py", json.dumps(cfg)],
        cwd=folder,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict = json.loads(proc.stdout)
    return result


def test_the_installed_wheel_scores_raw_rows_as_the_evaluate_stage_did(in_venv: dict, evaluated: np.ndarray) -> None:
    assert in_venv["features"][-2:] == DERIVED
    assert in_venv["modules"] == [], "the wheel needs neither nbops nor the project's features.py"
    for key in ("frame", "records"):
        got = np.array(in_venv[key])
        assert got.shape == evaluated.shape
        assert np.max(np.abs(got - evaluated)) <= 1e-9, key
    assert np.max(np.abs(np.array(in_venv["one_by_one"]) - evaluated[:200])) <= 1e-9


def test_the_batch_scoring_stage_scored_with_the_derived_features(built: Path, raw_test, evaluated) -> None:
    scored = pd.read_parquet(built / ROOT / "data/scored/batch_predictions.parquet").set_index("loan_id")
    got = scored.loc[raw_test["loan_id"], "prediction"].to_numpy(dtype=float)
    assert np.max(np.abs(got - evaluated)) <= 1e-9


@pytest.fixture(scope="module")
def server(venv: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m <package> serve`` from the fresh venv: real uvicorn on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("feature-code-server")
    port = free_port()
    output = folder / "server.out"
    cmd = [str(venv["python"]), "-m", venv["package"], "serve", "--host", "127.0.0.1", "--port", str(port)]
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=venv_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, output.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 60 s"
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)


def test_the_rest_service_answers_raw_records_as_the_evaluate_stage_did(
    server: str, raw_test: pd.DataFrame, evaluated: np.ndarray
) -> None:
    records = records_of(raw_test)
    with httpx.Client(base_url=server, timeout=60.0) as client:
        r = client.post("/predict", json={"records": records})
        assert r.status_code == 200, r.text[:500]
        got = np.array(r.json()["predictions"])
        assert np.max(np.abs(got - evaluated)) <= 1e-9
        for i in range(0, len(records), 25):  # the single-record path
            r = client.post("/predict", json={"records": [records[i]]})
            assert r.status_code == 200, r.text[:500]
            assert abs(r.json()["predictions"][0] - evaluated[i]) <= 1e-9, i
        metadata = client.get("/metadata").json()
    fields = [f["name"] for f in metadata["input_schema"]["fields"]]
    assert fields == ["amount", "income", "tenure", "segment"], "the API asks for raw fields only"
    assert metadata["features"][-2:] == DERIVED


def test_a_client_sending_a_derived_column_is_told_it_is_not_an_input(server: str, raw_test: pd.DataFrame) -> None:
    record = {**records_of(raw_test.head(1))[0], "debt_ratio": 0.5}
    r = httpx.post(server + "/predict", json={"records": [record]}, timeout=30.0)
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "debt_ratio"


def test_the_derived_features_are_in_shap_segments_the_profile_and_drift(built: Path) -> None:
    importance = pd.read_parquet(built / ROOT / "reports/shap_importance.parquet").set_index("feature")
    assert set(DERIVED) <= set(importance.index)
    assert importance["mean_abs_shap"].idxmax() == "debt_ratio", importance.head()  # the outcome follows it
    segments = pd.read_parquet(built / ROOT / "reports/segment_metrics.parquet")
    assert set(segments.loc[segments["segment"] == "tenure_band", "level"]) >= {"new", "established"}
    registration = json.loads((built / ROOT / "models/registration.json").read_text())
    version = Path(registration["registry"]) / "versions" / registration["version"]
    profile = json.loads((version / "reference_profile.json").read_text())
    assert "debt_ratio" in profile["numeric"] and "tenure_band" in profile["categorical"]
    assert (version / "feature_code.py").read_text() == FEATURES
    history = pd.read_parquet(built / ROOT / "monitoring/history.parquet")
    assert history["psi__debt_ratio"].notna().all() and history["psi__tenure_band"].notna().all()
    report = (built / ROOT / "reports/02_features.html").read_text()
    assert "Derived features" in report and "debt_ratio" in report and "tenure_band" in report


def test_a_module_importing_what_the_wheel_lacks_fails_the_package_stage_not_a_deployment(tmp_path: Path) -> None:
    """The build stops at package, with the import named last; the stages before it did their work."""
    project = copy_project(tmp_path / "project")
    loans_table(1500).to_csv(project / "loans.csv", index=False)
    (project / "features.py").write_text(
        FEATURES.replace("import numpy as np\n", "import numpy as np\nimport sklearn\n")
    )
    set_env(
        project / "env.test.yaml",
        {
            "data": "loans.csv",
            "target": "bad",
            "time_column": "none",
            "tracking": "disabled",
            "feature_code": "features.py",
        },
    )
    proc = nbops(project, "build", "--env", "env.test.yaml", "--until", "package")
    assert proc.returncode != 0
    out = output_of(proc)
    assert "The build failed in task 'package'" in out, out[-3000:]
    tail = out.strip().splitlines()[-5:]  # the error is the last thing printed
    assert tail[0] == "error: the feature code imports a module the scoring wheel does not carry", tail
    assert tail[1].startswith("  where: file ") and "feature_code.py (the project's features.py" in tail[1], tail
    assert tail[1].endswith(", line 3"), tail
    assert tail[3] == "  found: import sklearn", tail
    assert tail[4].startswith("  what to do: "), tail
    assert (project / ROOT / "models/feature_code.py").exists()  # features ran with it
    assert not list((project / ROOT / "dist").glob("*.whl"))


def test_editing_a_function_reruns_features_and_downstream_and_why_names_the_module(built: Path) -> None:
    """Last in the file: it edits the module and builds again."""
    module = built / "features.py"
    module.write_text(FEATURES.replace('df["tenure"] < 5', 'df["tenure"] < 3'))
    why = nbops(built, "why", "features", "--env", "env.test.yaml")
    assert why.returncode == 0, output_of(why)
    assert "next build: will run, because feature code changed (features.py)" in why.stdout
    before = (built / ROOT / "models/feature_code.py").read_text()
    build(built)
    ran = json.loads((built / ROOT / "reports/builds.jsonl").read_text().splitlines()[-1])["tasks"]
    assert ran == {
        "ingest": False,
        "features": True,
        "tune": True,
        "train": True,
        "evaluate": True,
        "register": True,
        "package": True,
        "batch_score": True,
        "monitor": True,
    }
    why = nbops(built, "why", "features", "--env", "env.test.yaml")
    assert "ran because feature code changed (features.py)" in why.stdout
    assert "next build: up to date" in why.stdout
    after = (built / ROOT / "models/feature_code.py").read_text()
    assert before != after and 'df["tenure"] < 3' in after
