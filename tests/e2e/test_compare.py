"""`nbops compare` on a real registry: the session's packaged project (built with env.test.yaml)
copied, then rebuilt up to `register` with another learning rate, so two different versions exist.
Every number in the report is checked against metrics recomputed here with scikit-learn from each
version's own files (LightGBM text model + JSON transform), not through nbops' evaluation helpers.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from nbops.cli import main
from nbops.registry.store import Registry
from nbops.runtime.transform import FeatureTransform
from tests.support import nbops, output_of

pytestmark = pytest.mark.slow
ROOT = Path("build/test")  # env.test.yaml's root, under the project
REGISTRY = ROOT / "registry" / "credit_risk"


@pytest.fixture(scope="module")
def two_versions(packaged_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged project copied, plus a second version (learning_rate 0.2); production is v0001,
    candidate v0002 (as if the gate had kept production), whatever the gate decided."""
    project = tmp_path_factory.mktemp("compare") / "project"
    shutil.copytree(packaged_project, project, symlinks=True)
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "learning_rate=0.2", "--until", "register")
    assert proc.returncode == 0, output_of(proc)[-5000:]
    registry = Registry(project / REGISTRY)
    assert [v.version for v in registry.versions()] == ["v0001", "v0002"]
    registry.set_candidate("v0002", "test")
    registry.promote("v0001", "test: production stays the first model")
    return project


def _recomputed(project: Path, version: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The test rows and ``version``'s predictions, from its files, without nbops' scoring model."""
    folder = project / REGISTRY / "versions" / version
    rows = pd.read_parquet(project / ROOT / "data" / "processed" / "test.parquet")
    transform = FeatureTransform.from_dict(json.loads((folder / "feature_transform.json").read_text()))
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    return rows, booster.predict(transform.transform(rows))


def _sklearn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    fpr, tpr, _ = skm.roc_curve(y, p)
    return {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "brier": skm.brier_score_loss(y, p),
        "ks": float(np.max(tpr - fpr)),
    }


def _table_after(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(heading + "\n", 1)[1].lstrip("\n")
    body = []
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return body


def test_report_numbers_equal_metrics_recomputed_independently(two_versions: Path) -> None:
    proc = nbops(two_versions, "compare", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)
    out = two_versions / ROOT / "reports" / "compare.md"
    assert f"comparison written to {out}" in proc.stdout
    md = out.read_text()
    assert md.startswith("# Model comparison: candidate v0002 vs production v0001")
    assert "# Model comparison" in proc.stdout  # small enough to print

    rows, p_cand = _recomputed(two_versions, "v0002")
    _, p_prod = _recomputed(two_versions, "v0001")
    assert not np.allclose(p_cand, p_prod)  # two really different models
    y = rows["default"].to_numpy(float)
    cand, prod = _sklearn_metrics(y, p_cand), _sklearn_metrics(y, p_prod)
    overall = {r[0].strip("*"): r for r in _table_after(md, "## Overall (test split)")}
    assert set(cand) <= set(overall)
    for name in cand:
        _, shown_prod, shown_cand, delta = overall[name]
        assert float(shown_prod) == pytest.approx(prod[name], abs=5e-5), name
        assert float(shown_cand) == pytest.approx(cand[name], abs=5e-5), name
        assert float(delta.split()[0]) == pytest.approx(cand[name] - prod[name], abs=5e-5), name
        better = cand[name] > prod[name] if name in ("roc_auc", "pr_auc", "ks") else cand[name] < prod[name]
        if abs(cand[name] - prod[name]) >= 5e-5:
            assert delta.endswith("(better)" if better else "(worse)"), (name, delta)
    assert overall["rows"][1:3] == [str(len(rows))] * 2

    # The gate on these rows, with env.test.yaml's tolerance.
    tolerance = 0.005
    promote = cand["roc_auc"] - prod["roc_auc"] >= -tolerance
    assert f"promotion tolerance: {tolerance:g}" in md
    assert f"**{'promote' if promote else 'keep production'}**" in md
    meta = {
        v: json.loads((two_versions / REGISTRY / "versions" / v / "metadata.json").read_text())
        for v in ("v0001", "v0002")
    }
    for v, m in meta.items():
        assert f"| {v} | {m['created_at']} | `{m['data']['fingerprint'][:12]}` |" in md

    # Segments: every level of region and month, recomputed from the rows.
    months = pd.to_datetime(rows["month"]).dt.to_period("M").astype(str)
    for column, values in (("region", rows["region"].astype("string").fillna("(missing)")), ("month", months)):
        table = _table_after(md, f"### {column}")
        assert {r[1] for r in table} == set(values.unique())
        for seg, level, n, shown_prod, shown_cand, _delta in table:
            mask = (values == level).to_numpy()
            assert seg == column and int(n.replace(",", "")) == mask.sum()
            if len(np.unique(y[mask])) == 2:
                assert float(shown_cand) == pytest.approx(skm.roc_auc_score(y[mask], p_cand[mask]), abs=5e-5)
                assert float(shown_prod) == pytest.approx(skm.roc_auc_score(y[mask], p_prod[mask]), abs=5e-5)
    for column in ("education", "employment_type", "home_ownership", "loan_purpose"):
        assert f"### {column}" in md


def test_same_version_missing_production_and_unknown_version(
    two_versions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    out = tmp_path / "same.md"
    assert (
        main(
            [
                "--project",
                str(two_versions),
                "compare",
                "--env",
                "env.test.yaml",
                "--candidate",
                "production",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    md = out.read_text()
    assert "**The candidate is the production model** (v0001)" in md
    assert "| metric | candidate |" in md and "delta" not in md.split("## By segment")[0].split("## Overall")[1]

    assert main(["--project", str(two_versions), "compare", "--env", "env.test.yaml", "--production", "v0042"]) == 2
    err = capsys.readouterr().err
    assert "no model version 'v0042'" in err and "registered: v0001, v0002" in err

    # No production: a copy of the project whose aliases name only a candidate.
    project = tmp_path / "project"
    shutil.copytree(two_versions, project, symlinks=True)
    aliases = project / REGISTRY / "aliases.json"
    aliases.write_text(json.dumps({"candidate": "v0002", "history": []}))
    assert main(["--project", str(project), "compare", "--env", "env.test.yaml"]) == 0
    md = (project / ROOT / "reports" / "compare.md").read_text()
    assert md.startswith("# Model comparison: candidate v0002 vs production (none)")
    assert "**No production model yet**" in md
    assert re.search(r"\*\*promote\*\*: no production model yet", md)
