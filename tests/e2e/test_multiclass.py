"""End to end: a generated multiclass table (four plans, a month column, three numbers and a region)
taken through `make run DATA=plans.csv TARGET=plan` in a copy of the project, as a user types it:
train, evaluate, register, package, batch score; then the installed wheel (parity with the evaluate
stage on the raw test rows), its REST service on real uvicorn, `nbops monitor` on two new labelled
months and the serving log, and the Voila dashboards in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from nbops.registry.store import Registry
from tests.support import REPO, free_port, launch_chromium, nbops, output_of, stop_process
from tests.support.browser import PAGE_READY_MS
from tests.support.multiclass import PLANS, TARGET, multiclass_table
from tests.support.voila import dashboard_copy, make_dashboard, stop

pytestmark = pytest.mark.slow
VENV = Path(sys.executable).parent.parent  # the worktree's .venv (`make install`)
ROOT = Path("build/test")  # env.test.yaml's products root
CLASSES = sorted(PLANS)
# Small on purpose (make test stays within its budget): 3,000 rows, at most 60 boosting rounds.
ARGS = "--set num_boost_round=60 --set shap_sample=300 --set tracking=disabled"
# What the nbops commands after the build are told, as for `make run DATA=... TARGET=...` (the registry is per dataset).
OWN_DATA = ("--set", "data=plans.csv", "--set", f"target={TARGET}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`make run DATA=plans.csv TARGET=plan` in a fresh project copy, with the worktree's .venv."""
    project = dashboard_copy(tmp_path_factory.mktemp("multiclass") / "project")
    table = multiclass_table(3000, start="2024-01", months=12)
    table.to_csv(project / "plans.csv", index=False)
    make = ["make", "-C", str(project), f"VENV={VENV}", "ENV_FILE=env.test.yaml"]
    if subprocess.run([*make, "-q", f"{VENV}/.installed"], capture_output=True).returncode != 0:
        pytest.fail(f"{VENV} is older than requirements.lock or pyproject.toml: run `make install` in {REPO} first")
    env = {k: v for k, v in os.environ.items() if k not in ("NBOPS_PROJECT", "NBOPS_ENV", "MAKEFLAGS", "MAKELEVEL")}
    proc = subprocess.run(
        [*make, "run", "DATA=plans.csv", f"TARGET={TARGET}", f"ARGS={ARGS}"],
        capture_output=True,
        text=True,
        env={**env, "PLOOMBER_STATS_ENABLED": "false"},
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    root = project / ROOT
    registration = json.loads((root / "models/registration.json").read_text())
    production = Registry(registration["registry"]).alias("production")
    assert production is not None
    return {"project": project, "root": root, "table": table, "stdout": proc.stdout, "production": production}


def test_make_run_trains_a_multiclass_model_and_says_so(built):
    root = built["root"]
    schema = yaml.safe_load((built["project"] / "schemas/plans.schema.yaml").read_text())
    assert schema["task_type"] == "multiclass"
    target = next(c for c in schema["columns"] if c["name"] == TARGET)
    assert target["categories"] == CLASSES  # the class order, recorded in the schema
    report = json.loads((root / "reports/metrics.json").read_text())
    metrics = report["metrics"]
    assert report["task_type"] == "multiclass" and report["classes"] == CLASSES
    # The summary line names the multiclass metrics, with the values of metrics.json.
    line = next(x for x in built["stdout"].splitlines() if x.startswith("Model (multiclass, test split): "))
    for name in ("log_loss", "accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr"):
        assert f"{name} {metrics[name]:.4f}" in line, line
    assert metrics["accuracy"] > 0.5 and metrics["roc_auc_ovr"] > 0.75  # four classes: 0.25 and 0.5 by chance
    print("multiclass test metrics:", json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    train = json.loads((root / "models/train_summary.json").read_text())
    assert train["booster_params"]["objective"] == "multiclass" and train["booster_params"]["num_class"] == 4
    assert train["booster_params"]["metric"][0] == "multi_logloss"


def test_the_evaluate_report_shows_the_multiclass_sections(built):
    from tests.support import tables_of, text_of

    html = (built["root"] / "reports/04_evaluate.html").read_text()
    text = text_of(html)
    for words in ("By class", "Confusion matrix: a row per true class", "Test split: ", "4 classes of plan"):
        assert words in text, words
    for image in ("confusion_matrix", "roc_per_class", "calibration_per_class", "shap_importance", "shap_summary"):
        assert f'alt="{image}"' in html, image
    head, body = next((h, b) for h, b in tables_of(html) if "precision" in h and "recall" in h)
    assert [row[head.index(TARGET)] for row in body] == CLASSES
    gate = json.loads((built["root"] / "reports/promotion_gate.json").read_text())
    assert gate["metric"] == "log_loss" and gate["promote"] is True


def test_the_registered_version_and_its_card_name_the_multiclass_metrics(built):
    production = built["production"]
    meta = production.metadata
    assert meta["task_type"] == "multiclass" and meta["classes"] == CLASSES
    assert meta["gate"]["metric"] == "log_loss"
    card = production.file("card.md").read_text()
    assert "It returns a probability for each of its 4 classes (`basic`, `business`, `plus`, `premium`)" in card
    for name in ("log_loss", "accuracy", "f1_macro", "roc_auc_ovr", "one-vs-rest ROC AUC"):
        assert name in card, name
    listing = nbops(built["project"], "models", "list", "--env", "env.test.yaml", *OWN_DATA)
    assert listing.returncode == 0 and "log_loss" in listing.stdout, output_of(listing)


def test_batch_scoring_wrote_the_label_and_each_class_probability(built):
    scored = pd.read_parquet(built["root"] / "data/scored/batch_predictions.parquet")
    columns = [f"proba_{c}" for c in CLASSES]
    assert {"predicted_label", *columns} <= set(scored.columns)
    assert np.allclose(scored[columns].sum(axis=1), 1.0, atol=1e-9)
    assert (scored["predicted_label"] == scored[columns].idxmax(axis=1).str.removeprefix("proba_")).all()


# --- the installed wheel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_venv(built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh virtualenv with only the built wheel and its [serve] dependencies (the lock's versions)."""
    manifest = json.loads((built["root"] / "dist/package.json").read_text())
    venv = tmp_path_factory.mktemp("multiclass-venv") / "venv"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    install = [str(uv), "pip", "install", "--python", str(python), "-c", str(REPO / "requirements.lock")]
    proc = subprocess.run([*install, f"{manifest['wheel']}[serve]"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"python": python, "package": manifest["package"]}


def _raw_test_rows(built) -> pd.DataFrame:
    """The test split's rows as they are in the user's file (not as validated), in the split's order."""
    evaluated = pd.read_parquet(built["root"] / "data/processed/test_predictions.parquet")
    raw = pd.read_csv(built["project"] / "plans.csv").set_index("customer_id", drop=False)
    return raw.loc[evaluated["customer_id"]].reset_index(drop=True)


PARITY = """
import json, sys
import pandas as pd
cfg = json.loads(sys.argv[1])
import importlib
package = importlib.import_module(cfg["package"])
m = package.load()
rows = pd.read_parquet(cfg["rows"])
p = m.predict(rows)
labels = m.predict_label(rows)
p.assign(label=labels.to_numpy()).to_parquet(cfg["out"])
print(json.dumps({"columns": list(p.columns), "classes": m.classes, "file": package.__file__}))
"""


def test_the_installed_wheels_class_probabilities_equal_the_evaluate_stages(built, wheel_venv, tmp_path):
    rows = _raw_test_rows(built)
    rows.to_parquet(tmp_path / "raw_test.parquet", index=False)
    (tmp_path / "parity.py").write_text(PARITY)
    cfg = {"package": wheel_venv["package"], "rows": str(tmp_path / "raw_test.parquet"), "out": str(tmp_path / "p.pq")}
    proc = subprocess.run(
        [str(wheel_venv["python"]), str(tmp_path / "parity.py"), json.dumps(cfg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert info["columns"] == CLASSES == info["classes"] and "site-packages" in info["file"]
    served = pd.read_parquet(tmp_path / "p.pq")
    evaluated = pd.read_parquet(built["root"] / "data/processed/test_predictions.parquet")
    assert len(served) == len(evaluated) > 0
    want = evaluated[[f"proba_{c}" for c in CLASSES]].to_numpy()
    assert np.max(np.abs(served[CLASSES].to_numpy() - want)) <= 1e-9
    assert np.allclose(served[CLASSES].sum(axis=1), 1.0, atol=1e-12)
    assert served["label"].tolist() == evaluated["predicted_label"].tolist()


@pytest.fixture(scope="module")
def server(built, wheel_venv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m plans_model serve` from the installed wheel on real uvicorn, logging its predictions
    where `nbops monitor` reads the serving log (<root>/data/prediction_log)."""
    folder = tmp_path_factory.mktemp("multiclass-serve")
    port = free_port()
    log_dir = built["root"] / "data" / "prediction_log"
    cmd = [str(wheel_venv["python"]), "-m", wheel_venv["package"], "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    with (folder / "server.out").open("wb") as out:
        proc = subprocess.Popen([*cmd, "--prediction-log", str(log_dir)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (folder / "server.out").read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not answer /health within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc)


def test_rest_predict_returns_probabilities_keyed_by_class_name_and_the_label(built, server):
    rows = _raw_test_rows(built).head(60)
    features = rows[["usage_hours", "tenure_months", "monthly_spend", "region"]]
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    evaluated = pd.read_parquet(built["root"] / "data/processed/test_predictions.parquet").head(60)
    answer = httpx.post(server + "/predict", json={"records": records}, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert body["model_version"] == built["production"].version
    for i, prediction in enumerate(body["predictions"]):
        assert list(prediction["probabilities"]) == CLASSES
        want = evaluated.loc[i, [f"proba_{c}" for c in CLASSES]].to_numpy(dtype=float)
        assert np.max(np.abs(np.array(list(prediction["probabilities"].values())) - want)) <= 1e-9
        assert prediction["label"] == evaluated.loc[i, "predicted_label"]
    one = httpx.post(server + "/predict", json={"records": records[:1]}, timeout=30).json()["predictions"][0]
    assert one["label"] == body["predictions"][0]["label"]  # the single-row path agrees
    assert np.allclose(list(one["probabilities"].values()), list(body["predictions"][0]["probabilities"].values()))
    bad = httpx.post(server + "/predict", json={"records": [{**records[0], "region": "mars"}]}, timeout=30)
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "region"


# --- monitoring --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(built, server) -> dict[str, Any]:
    """Two new labelled months dropped in data/production (the second with its spending shifted), a
    few requests to the service, then `nbops monitor`, which also reads the serving log."""
    requests = multiclass_table(50, seed=40, start="2025-01", months=1)
    features = requests[["usage_hours", "tenure_months", "monthly_spend", "region"]]
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    assert httpx.post(server + "/predict", json={"records": records}, timeout=30).status_code == 200
    folder = built["root"] / "data" / "production"
    folder.mkdir(parents=True, exist_ok=True)
    multiclass_table(800, seed=41, start="2025-01", months=1).to_csv(folder / "2025-01.csv", index=False)
    shifted = multiclass_table(800, seed=42, start="2025-02", months=1)
    shifted["monthly_spend"] = (shifted["monthly_spend"] * 3).round(2)
    shifted.to_csv(folder / "2025-02.csv", index=False)
    proc = nbops(built["project"], "monitor", "--env", "env.test.yaml", *OWN_DATA)
    assert proc.returncode == 0, output_of(proc)
    history = pd.read_parquet(built["root"] / "monitoring/history.parquet").set_index("batch_id")
    alerts = [json.loads(x) for x in (built["root"] / "monitoring/alerts.jsonl").read_text().splitlines() if x]
    return {"stdout": proc.stdout, "history": history, "alerts": alerts}


def test_monitor_measures_multiclass_performance_and_drift_per_class(monitored):
    history = monitored["history"]
    assert {"holdout", "2025-01", "2025-02", "serving-predictions"} <= set(history.index), list(history.index)
    january, february = history.loc["2025-01"], history.loc["2025-02"]
    for row in (january, february, history.loc["holdout"]):
        assert row["labels"] == "arrived"
        for name in ("perf__log_loss", "perf__accuracy", "perf__f1_macro"):
            assert np.isfinite(row[name]), name
        assert all(np.isfinite(row[f"prediction_psi__{c}"]) for c in CLASSES)
    assert history.loc["serving-predictions", "labels"] == "pending"  # the service never sees labels
    assert january["status"] != "alert", january["status_reason"]
    assert february["status"] == "alert" and "monthly_spend" in february["drifted_features"]
    kinds = {a["kind"] for a in monitored["alerts"] if a.get("batch_id") == "2025-02"}
    assert {"drift", "prediction_drift"} <= kinds, monitored["alerts"]
    moved = next(a for a in monitored["alerts"] if a.get("batch_id") == "2025-02" and a["kind"] == "prediction_drift")
    assert "predicted probabilities moved for" in moved["message"] and any(c in moved["message"] for c in CLASSES)
    assert "2025-02: 800 rows, alert" in monitored["stdout"]


def test_the_monitor_and_nbops_estimate_estimate_multiclass_performance(built, monitored):
    """The version stores a multiclass estimator; the monitor records the estimated log loss, accuracy
    and macro F1 beside the realised ones; `nbops estimate` prints them for a month's table."""
    assert (built["production"].path / "performance_estimator.json").exists()
    january = monitored["history"].loc["2025-01"]
    for name in ("log_loss", "accuracy", "f1_macro"):
        assert january[f"est__{name}_low"] < january[f"est__{name}"] < january[f"est__{name}_high"], name
    assert january["est__log_loss_low"] <= january["perf__log_loss"] <= january["est__log_loss_high"]
    month = built["root"] / "data" / "production" / "2025-01.csv"
    proc = nbops(built["project"], "estimate", str(month), "--env", "env.test.yaml", *OWN_DATA)
    assert proc.returncode == 0, output_of(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("(CBPE, each class calibrated)"), lines[0]
    for name in ("log_loss", "accuracy", "f1_macro"):
        line = next(x for x in lines if x.strip().startswith(name))
        assert " band " in line and "(test " in line and " realised " in line, line


def _screenshot(page: Any, path: Path) -> None:
    """The whole page (Voila scrolls inside its own container: the viewport grows to the content first)."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1280, "height": int(height) + 40})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)


def test_the_dashboards_show_the_multiclass_model(built, monitored, tmp_path):
    from playwright.sync_api import sync_playwright

    history = monitored["history"]
    proc, links = make_dashboard(built["project"], tmp_path / "voila.log")
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(links["monitoring"], wait_until="domcontentloaded")
            page.wait_for_selector(".nbops-status-table", timeout=PAGE_READY_MS)
            text = page.inner_text("body")
            assert "Traceback" not in text and "Error:" not in text, text[:2000]
            assert "(multiclass, target plan)" in text
            assert "latest labelled log loss" in text
            headers = page.locator(".nbops-status-table thead th").all_inner_texts()
            assert "log loss" in headers, headers
            chart = page.locator(".nbops-performance svg")
            assert "log loss" in chart.locator("[data-role=y-label]").text_content()
            limit = built["production"].metadata["metrics"]["log_loss"] * 1.2
            assert f"alert above {limit:.3f}" in chart.text_content()
            assert f"{history.loc['2025-01', 'perf__log_loss']:.3f}" in page.inner_text(".nbops-status-table")
            _screenshot(page, tmp_path / "monitoring.png")
            model = browser.new_page(viewport={"width": 1280, "height": 1000})
            model.goto(links["model"], wait_until="domcontentloaded")
            model.wait_for_selector(".nbops-segments-table", timeout=PAGE_READY_MS)
            text = model.inner_text("body")
            assert "Traceback" not in text and "Error:" not in text, text[:2000]
            assert "accuracy" in text and "It returns a probability for each of its 4 classes" in text
            assert "what each feature does for each class" in text
            assert model.locator(".nbops-threshold-result").count() == 0  # the binary threshold explorer is not shown
            _screenshot(model, tmp_path / "model.png")
            browser.close()
    finally:
        stop(proc)
