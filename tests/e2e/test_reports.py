"""The executed reports of a build are for a reader (issue 9, the reviewer's path).

Two builds of a copy of the project (the built-in data, then a CSV of your own with another target);
every HTML product under the build's reports folder is read: no absolute path of the project, no
parameters cell, no test markers, no object reprs, no NaN/None cells, counts as integers, and
wording that names the data's own target.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.report import (
    MISSING,
)
from tests.support import REPO, copy_project, nbops, output_of, tables_of, text_of

pytestmark = pytest.mark.slow

OBJECT_REPRS = ("<Axes", "<Figure size", "object at 0x", "<IPython.core.display", "<pandas.io.formats.style.Styler")
MISSING_CELLS = {"NaN", "nan", "None", "NaT", "<NA>"}
COUNT_HEADERS = {"rows", "distinct", "levels", "alerts"}
COUNT_ITEMS = re.compile(
    r"(^|\s)(rows|rows read|rows valid|rows quarantined|train rows|valid rows|best iteration|trees trained)$"
)


def _build(project: Path, *args: str) -> Path:
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "tracking=disabled", *args)
    assert proc.returncode == 0, output_of(proc)[-5000:]
    return project


@pytest.fixture(scope="module")
def simulated(packaged_project: Path) -> Path:
    """A build with the built-in (simulated) credit-risk data, W&B offline: the session's packaged
    project (read-only)."""
    return packaged_project


def _churn_table(n: int = 1200, seed: int = 3) -> pd.DataFrame:
    """A table of your own: another target (churned, yes/no), no time column, two bad rows."""
    rng = np.random.default_rng(seed)
    tenure = rng.exponential(24, n).round(1)
    plan = rng.choice(["basic", "plus", "pro"], n)
    logit = -0.8 - 0.04 * tenure + 1.2 * (plan == "basic") + rng.normal(0, 0.5, n)
    df = pd.DataFrame(
        {
            "customer_id": [f"K{i:05d}" for i in range(n)],
            "tenure_months": tenure,
            "monthly_fee": rng.normal(40, 12, n).round(2),
            "plan": plan,
            "churned": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"),
        }
    )
    df["tenure_months"] = df["tenure_months"].astype(object)
    df.loc[[4, 9], "tenure_months"] = "unknown"  # quarantined, with the reason
    return df


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy built once with a CSV of your own (target `churned`), kept inside the project."""
    project = copy_project(tmp_path_factory.mktemp("reports-own") / "project")
    (project / "mydata").mkdir()
    _churn_table().to_csv(project / "mydata" / "churn.csv", index=False)
    return _build(
        project,
        "--set",
        "data=mydata/churn.csv",
        "--set",
        "target=churned",
        "--set",
        "time_column=none",
        "--set",
        "id_columns=[customer_id]",
    )


def _reports(project: Path) -> dict[str, str]:
    folder = project / "build/test/reports"
    pages = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.html"))}
    stages = {name for name in pages if re.match(r"0\d\w*_\w+\.html$", name)}
    assert len(stages) == 9, f"expected the nine stage reports under {folder}, found {sorted(pages)}"
    return pages


def _reader_problems(name: str, page: str, project: Path) -> list[str]:
    """What a reader should never see in a report, each as a sentence naming the report."""
    problems = []
    text = text_of(page)
    for where in {str(project), str(project.resolve()), str(REPO)}:
        if where in page or where in text:
            problems.append(f"{name}: absolute project path {where}")
    if re.search(r"#\s*Parameters|\b(product|upstream)\s*=\s*[{N]", text):
        problems.append(f"{name}: a parameters cell (injected or default) is in the report")
    if "nbval" in page.lower():
        problems.append(f"{name}: an nbval marker is in the report")
    problems += [f"{name}: object repr {r!r}" for r in OBJECT_REPRS if r in text]
    # a report opens offline (file://, a CI artifact, the static site): nothing loaded from the network
    for url in re.findall(r"""<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)=["']?(https?://[^"'\s>]+)""", page):
        problems.append(f"{name}: loads {url} from the network")
    for url in re.findall(r"""\bimport\b[^;"'<]*["'](https?://[^"']+)""", page):
        problems.append(f"{name}: imports {url} from the network")
    if "Unnamed: 0" in text:
        problems.append(f"{name}: a saved index column ('Unnamed: 0')")
    for head, body in tables_of(page):
        for row in body:
            cells = dict(zip(head, row, strict=False)) if len(head) == len(row) else {}
            for cell in row:
                if cell in MISSING_CELLS:
                    problems.append(f"{name}: a {cell!r} cell in the table headed {head}")
                if cell.endswith("...") or cell.endswith("…"):
                    problems.append(f"{name}: a cell cut short: {cell!r}")
            for header, cell in cells.items():
                counted = header in COUNT_HEADERS or (header == "value" and COUNT_ITEMS.search(cells.get("item", "")))
                if counted and cell != MISSING and not re.fullmatch(r"\d{1,3}(,\d{3})*", cell):
                    problems.append(f"{name}: a count written {cell!r} (column {header!r}, row {row[:2]})")
    return problems


def test_simulated_build_reports_are_for_a_reader(simulated: Path) -> None:
    pages = _reports(simulated)
    problems = [p for name, page in pages.items() for p in _reader_problems(name, page, simulated)]
    assert problems == [], "\n".join(problems)
    # Test scaffolding stays out of the reports; what a reader needs is there.
    assert "roc_auc above 0.7" not in text_of(pages["04_evaluate.html"])
    assert "wheel built: True" not in text_of(pages["06_package.html"])
    evaluate = text_of(pages["04_evaluate.html"])
    assert "observed rate of default = 1" in evaluate and "rate of default = 1" in evaluate
    monitor = text_of(pages["08_monitor.html"])
    assert "Against the simulator's ground truth" in monitor and "drifted features found" in monitor
    assert "rows read: 5,000" in text_of(pages["01_ingest.html"])


def test_cells_left_out_of_the_html_stay_in_the_executed_notebook(simulated: Path) -> None:
    """The HTML leaves the parameters cells and the scaffolding out; the executed .ipynb (for
    debugging, re-running and nbval) keeps every cell, the injected parameters included."""
    reports = simulated / "build/test/reports"
    for source in sorted((REPO / "notebooks").glob("*.ipynb")):
        executed = json.loads((reports / source.name).read_text())
        assert len(executed["cells"]) == len(json.loads(source.read_text())["cells"]) + 1, source.name
        injected = next(c for c in executed["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", []))
        page = text_of((reports / source.name).with_suffix(".html").read_text())
        first_line = next(line for line in "".join(injected["source"]).splitlines()[1:] if line.strip())
        assert first_line not in page, f"{source.stem}.html shows the injected parameters ({first_line!r})"
        hidden = [c for c in executed["cells"] if "report-hide" in c.get("metadata", {}).get("tags", [])]
        for cell in hidden:
            shown = "".join("".join(o.get("text", "")) for o in cell["outputs"]).strip()
            assert shown and shown not in page, f"{source.stem}.html shows the scaffolding output {shown!r}"


def test_own_data_reports_name_its_target_and_show_no_simulator_sections(own_data: Path) -> None:
    pages = _reports(own_data)
    stage_reports = {name: page for name, page in pages.items() if "/" not in name}
    problems = [p for name, page in stage_reports.items() for p in _reader_problems(name, page, own_data)]
    assert problems == [], "\n".join(problems)
    evaluate = text_of(pages["04_evaluate.html"])
    assert "observed rate of churned = yes" in evaluate and "rate of churned = yes" in evaluate
    assert "default" not in evaluate.lower()
    features = text_of(pages["02_features.html"])
    assert "split by random, stratified by churned" in features and "rate of churned = yes" in features
    split = json.loads((own_data / "build/test/data/processed/split_summary.json").read_text())
    overall = sum(s["rows"] * s["target_mean"] for s in split["splits"].values()) / sum(
        s["rows"] for s in split["splits"].values()
    )
    for name, entry in split["splits"].items():
        assert abs(entry["target_mean"] - overall) <= 1 / entry["rows"] + 0.01, f"{name}: {entry} against {overall:.3f}"
    monitor = text_of(pages["08_monitor.html"])
    assert "ground truth" not in monitor and "None of None" not in monitor and "drifted features found" not in monitor
    assert "batches monitored: 1 (holdout)" in monitor
    ingest = pages["01_ingest.html"]
    assert (
        "WARNING: mydata/churn.csv: quarantined 2 of 1200 rows (build/test/data/interim/quarantine.parquet)"
        in text_of(ingest)
    )
    quarantine = [body for head, body in tables_of(ingest) if head == ["column", "problem", "rows", "first rows"]]
    assert quarantine == [[["tenure_months", "… is not a number", "2", "5, 10"]]]
