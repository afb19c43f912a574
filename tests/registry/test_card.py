"""Model cards (Markdown and HTML) and the pipeline's registration: files, lineage, card, aliases."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.data.schema import ColumnSpec, TableSchema
from nbops.registry.card import model_card_html, model_card_markdown
from nbops.registry.gate import decide
from nbops.registry.publish import git_commit, input_schema, lock_sha256, register_model
from nbops.registry.store import Registry
from nbops.runtime.model import ScoringModel
from nbops.runtime.schema import FieldSpec, InputSchema
from nbops.runtime.transform import FeatureTransform
from tests.support import train_tiny_booster

BINARY_METRICS = {
    "roc_auc": 0.81234,
    "pr_auc": 0.45678,
    "log_loss": 0.41111,
    "brier": 0.13579,
    "ks": 0.48642,
    "rows": 1500.0,
}
REGRESSION_METRICS = {"rmse": 2.34567, "mae": 1.23456, "r2": 0.65432, "rows": 900.0}


def _metadata(task: str = "binary", **over) -> dict:
    meta = {
        "package": "credit_risk_model",
        "version": "v0007",
        "dataset": "credit_risk",
        "target": "default",
        "task_type": task,
        "metrics": BINARY_METRICS if task == "binary" else REGRESSION_METRICS,
        "gate": {
            "reason": "candidate roc_auc 0.8123 vs production 0.8001 (higher is better; change +0.0122, tolerance "
            "0.005): not worse beyond the tolerance, promote"
        },
        "data": {
            "source": "data/loans.parquet",
            "rows_valid": 9876,
            "rows_read": 10000,
            "rows_quarantined": 124,
            "fingerprint": "fp-3b1c9e77d2a0",
        },
        "split": {
            "method": "time",
            "splits": {
                "train": {"rows": 7000, "from": "2021-01-01T00:00:00", "to": "2022-06-30T00:00:00"},
                "valid": {"rows": 1500, "from": "2022-07-01T00:00:00", "to": "2022-09-30T00:00:00"},
                "test": {"rows": 1376, "from": "2022-10-01T00:00:00", "to": "2022-12-31T00:00:00"},
            },
        },
        "features": ["income", "grade", "region"],
        "excluded_columns": ["loan_id", "email"],
        "created_at": "2024-03-05T10:11:12Z",
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "lock_sha256": "feedface" * 8,
        "wandb_run_id": "run-abc123",
        "model_sha256": "c0ffee" * 10 + "abcd",
    }
    return {**meta, **over}


def _segments(task: str) -> pd.DataFrame:
    metric = "roc_auc" if task == "binary" else "rmse"
    # level i has metric value 0.5 + i/100 (binary) / 1 + i (regression); "zz" has no metric (one class)
    rows = [
        {
            "segment": "grade",
            "level": f"L{i}",
            "rows": 100.0 + i,
            metric: (0.5 + i / 100) if task == "binary" else (1.0 + i),
        }
        for i in range(7)
    ]
    rows.append({"segment": "region", "level": "zz", "rows": 3.0, metric: np.nan})
    return pd.DataFrame(rows)


def _section(md: str, title: str) -> str:
    after = md.split(f"## {title}\n", 1)[1]
    return after.split("\n## ", 1)[0]


# -- markdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_markdown_card_has_identity_data_metrics_gate_and_lineage(task):
    meta = _metadata(task)
    md = model_card_markdown(meta, _segments(task))
    assert md.startswith("# Model card: credit_risk_model v0007\n")
    assert "fp-3b1c9e77d2a0" in md
    assert "`data/loans.parquet`" in md
    assert "9,876 valid of 10,000 read (124 quarantined)" in md
    assert "train 7,000 rows (2021-01-01 to 2022-06-30)" in md
    assert "`income`, `grade`, `region`" in md
    assert "(`loan_id`, `email`)" in md
    metrics = _section(md, "Metrics (test split)")
    headline = ["roc_auc", "pr_auc", "log_loss", "brier", "ks"] if task == "binary" else ["rmse", "mae", "r2"]
    for name in headline:
        assert f"| {name} | {meta['metrics'][name]:.4f} |" in metrics, name
    assert meta["gate"]["reason"] in _section(md, "Promotion")
    lineage = _section(md, "Lineage")
    assert "2024-03-05T10:11:12Z" in lineage
    assert "`0123456789abcdef0123456789abcdef01234567`" in lineage
    assert f"`{'feedface' * 8}`" in lineage
    assert "`run-abc123`" in lineage
    assert meta["model_sha256"] in lineage
    assert "## Intended use" in md and "must not be the sole basis of a decision" in md
    assert "## Limits and caveats" in md and "drift" in _section(md, "Limits and caveats")
    assert ("probability of the positive class" in md) == (task == "binary")


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_markdown_card_lists_the_five_weakest_segments_worst_first(task):
    md = model_card_markdown(_metadata(task), _segments(task))
    weakest = _section(md, "Weakest segments")
    levels = re.findall(r"^\| grade \| (L\d) \|", weakest, flags=re.M)
    # binary: lowest AUC first (L0..L4); regression: highest RMSE first (L6..L2)
    assert levels == (["L0", "L1", "L2", "L3", "L4"] if task == "binary" else ["L6", "L5", "L4", "L3", "L2"])
    assert "zz" not in weakest  # a segment without the metric is not ranked
    metric = "roc_auc" if task == "binary" else "rmse"
    assert weakest.splitlines()[0].startswith(f"| segment | level | rows | {metric} |")
    assert ("| 0.5000 |" if task == "binary" else "| 7.0000 |") in weakest


def test_markdown_card_without_segments_gate_or_lineage_says_so():
    meta = _metadata(gate={}, git_commit=None, lock_sha256=None, wandb_run_id=None, excluded_columns=[])
    md = model_card_markdown(meta, pd.DataFrame())
    assert "No segment metrics." in _section(md, "Weakest segments")
    assert "not evaluated" in _section(md, "Promotion")
    lineage = _section(md, "Lineage")
    assert "git commit: `unknown`" in lineage
    assert "dependency lock sha256: `unknown`" in lineage
    assert "W&B run: `not tracked`" in lineage
    assert "personal data (none)" in md


# -- html ----------------------------------------------------------------------------------------


def test_html_card_is_a_full_page_with_the_rendered_tables():
    md = model_card_markdown(_metadata(), _segments("binary"))
    html = model_card_html(md, "credit_risk_model v0007")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    assert "<title>credit_risk_model v0007</title>" in html
    assert "<meta charset='utf-8'>" in html
    assert "<body>" in html and "</body>" in html
    assert html.count("<table>") == 2  # headline metrics and weakest segments
    assert "<th>metric</th>" in html and "<td>roc_auc</td>" in html and "<td>0.8123</td>" in html
    assert "<td>L0</td>" in html
    assert "<h1>Model card: credit_risk_model v0007</h1>" in html
    assert "<h2>Limits and caveats</h2>" in html
    assert "| roc_auc |" not in html  # rendered, not left as Markdown


# -- registration by the pipeline ----------------------------------------------------------------

SCHEMA = TableSchema(
    dataset="credit_risk",
    target="default",
    task_type="binary",
    time_column="issued",
    columns=[
        ColumnSpec("loan_id", "text", "id"),
        ColumnSpec("issued", "time", "time"),
        ColumnSpec("email", "text", "pii"),
        ColumnSpec("income", "numeric", nullable=False, min=0.0, max=1e6),
        ColumnSpec("grade", "categorical", categories=["A", "B", "C"]),
        ColumnSpec("default", "numeric", "target"),
    ],
)


def test_input_schema_has_the_features_and_passes_identifiers_through():
    s = input_schema(SCHEMA)
    assert s.fields == [
        FieldSpec("income", "numeric", False, 0.0, 1e6, None),
        FieldSpec("grade", "categorical", True, None, None, ["A", "B", "C"]),
    ]
    assert s.passthrough == ["loan_id", "issued"]
    assert "email" not in s.names and "default" not in s.names


def test_input_schema_accepts_the_target_and_ignored_columns_but_never_personal_data():
    from dataclasses import replace

    schema = replace(SCHEMA, columns=[*SCHEMA.columns, ColumnSpec("branch", "categorical", "ignore")])
    s = input_schema(schema)
    assert s.ignored == ["default", "branch"]
    assert "email" not in s.ignored and "email" not in s.passthrough, "a pii column stays unknown: refused"
    assert InputSchema.from_dict(s.to_dict()).ignored == ["default", "branch"]


@pytest.fixture
def git_project(tmp_path: Path) -> Path:
    """A tiny git repository with a dependency lock: the lineage register_model records."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.lock").write_bytes(b"lightgbm==4.5.0\nnumpy==2.1.0\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for cmd in (["init", "-q"], ["add", "requirements.lock"], ["commit", "-q", "-m", "lock"]):
        subprocess.run(["git", "-C", str(project), *cmd], check=True, env=env, capture_output=True)
    return project


def _products(folder: Path, rounds: int) -> tuple[Path, Path, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"income": rng.uniform(0, 1e5, n), "grade": rng.choice(["A", "B", "C"], n)})
    df["default"] = (rng.random(n) < np.where(df["grade"] == "C", 0.6, 0.2)).astype(float)
    booster, ft = train_tiny_booster(df, ["income"], ["grade"], "default", rounds)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / "model.txt"
    booster.save_model(str(model_file))
    return model_file, ft.save(folder / "feature_transform.json"), df


def _register(registry: Registry, project: Path, model_file: Path, transform_file: Path, gate):
    meta = _metadata()
    return register_model(
        registry=registry,
        project=project,
        schema=SCHEMA,
        model_file=model_file,
        transform_file=transform_file,
        ingest_summary={**meta["data"], "source_sha256": "ab" * 32, "columns": 6},
        split_summary=meta["split"],
        train_summary={"best_iteration": 5},
        metrics=BINARY_METRICS,
        segments=_segments("binary"),
        gate=gate,
        params={"learning_rate": 0.1},
        wandb_run_id="run-xyz",
        run_identity="id-1",
    )


def test_register_model_stores_a_verified_version_with_its_card(tmp_path, git_project):
    registry = Registry(tmp_path / "registry" / "credit_risk")
    model_file, transform_file, df = _products(tmp_path / "models", rounds=5)
    gate = decide("binary", BINARY_METRICS, None, None, 0.005)
    version, created, promoted = _register(registry, git_project, model_file, transform_file, gate)
    assert (version.version, created, promoted) == ("v0001", True, True)
    registry.verify("v0001")
    meta = version.metadata
    commit = subprocess.run(
        ["git", "-C", str(git_project), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert meta["git_commit"] == git_commit(git_project) == commit
    assert (
        meta["lock_sha256"]
        == lock_sha256(git_project)
        == hashlib.sha256((git_project / "requirements.lock").read_bytes()).hexdigest()
    )
    assert meta["package"] == "credit_risk_model"
    assert meta["features"] == ["income", "grade"]
    assert meta["excluded_columns"] == ["loan_id", "email"]
    assert meta["data"] == {**_metadata()["data"], "source_sha256": "ab" * 32}
    assert meta["gate"]["promote"] is True and meta["wandb_run_id"] == "run-xyz"
    assert version.file("model.txt").read_bytes() == model_file.read_bytes()
    assert json.loads(version.file("input_schema.json").read_text())["passthrough"] == [
        "loan_id",
        "issued",
    ]
    card = version.file("card.md").read_text()
    assert card.startswith("# Model card: credit_risk_model v0001\n")
    assert meta["created_at"] in card and commit in card and meta["lock_sha256"] in card
    assert "no production model yet" in card
    html = version.file("card.html").read_text()
    assert "<title>credit_risk_model v0001</title>" in html and "<table>" in html
    aliases = registry.aliases()
    assert (aliases["candidate"], aliases["production"]) == ("v0001", "v0001")
    assert registry.history()[-1]["reason"].startswith("promotion gate: no production model yet")
    assert [e["event"] for e in registry.history()] == ["register", "candidate", "promote"]
    # the registered folder loads and scores like the model that was trained
    model = ScoringModel.from_folder(version.path)
    expected = lgb.Booster(model_file=str(model_file)).predict(FeatureTransform.load(transform_file).transform(df))
    np.testing.assert_allclose(model.predict(df[["income", "grade"]]), expected, rtol=1e-12)


def test_register_model_again_and_a_held_candidate(tmp_path, git_project):
    registry = Registry(tmp_path / "registry" / "credit_risk")
    first = _products(tmp_path / "m1", rounds=5)
    _register(registry, git_project, *first[:2], decide("binary", {"roc_auc": 0.8}, None, None, 0.005))
    # the identical model again: the existing version, re-marked as candidate, not promoted again
    again = _register(
        registry,
        git_project,
        *first[:2],
        decide("binary", {"roc_auc": 0.8}, {"roc_auc": 0.8}, "v0001", 0.005),
    )
    assert (again[0].version, again[1], again[2]) == ("v0001", False, False)
    assert registry.history()[-1] == {
        **registry.history()[-1],
        "event": "candidate",
        "alias": "candidate",
        "reason": "re-registered (identical model)",
    }
    # a different, worse model: registered as candidate, production kept
    second = _products(tmp_path / "m2", rounds=9)
    held = decide("binary", {"roc_auc": 0.70}, {"roc_auc": 0.80}, "v0001", 0.005)
    version, created, promoted = _register(registry, git_project, *second[:2], held)
    assert (version.version, created, promoted) == ("v0002", True, False)
    aliases = registry.aliases()
    assert (aliases["candidate"], aliases["production"]) == ("v0002", "v0001")
    assert "keep production" in version.file("card.md").read_text()


def test_a_gate_decided_against_another_production_is_not_applied(tmp_path, git_project):
    """The rollback that a build undid: evaluate compared with v0002, an operator rolled production
    back to v0001 since, and register must not act on that gate."""
    registry = Registry(tmp_path / "registry" / "credit_risk")
    first = _products(tmp_path / "m1", rounds=5)
    _register(registry, git_project, *first[:2], decide("binary", {"roc_auc": 0.8}, None, None, 0.005))
    second = _products(tmp_path / "m2", rounds=9)
    _register(registry, git_project, *second[:2], decide("binary", {"roc_auc": 0.85}, {"roc_auc": 0.8}, "v0001", 0.005))
    third = _products(tmp_path / "m3", rounds=13)
    stale = decide("binary", {"roc_auc": 0.9}, {"roc_auc": 0.85}, "v0002", 0.005)  # decided while v0002 was production
    assert registry.rollback("v0002 approves too many thin files") == ("v0002", "v0001")
    version, created, promoted = _register(registry, git_project, *third[:2], stale)
    assert (version.version, created, promoted) == ("v0003", True, False)
    assert registry.aliases()["production"] == "v0001"  # the operator's rollback stands
    last = registry.history()[-1]
    assert last["event"] == "gate-not-applied" and last["version"] == "v0003" and last["production"] == "v0001"
    assert "the gate compared with v0002, but production is v0001 now" in last["reason"]
    events = [(e["event"], e["version"]) for e in registry.history()]
    assert ("rollback", "v0001") in events and events.count(("register", "v0003")) == 1
    rollback = next(e for e in registry.history() if e["event"] == "rollback")
    assert rollback["reason"] == "v0002 approves too many thin files" and "@" in rollback["by"]


def test_lineage_outside_a_git_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) is None
    assert lock_sha256(tmp_path) is None
