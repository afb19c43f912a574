"""The executed reports are for a reader (issue 9, the reviewer's path).

Fast tests check the display helpers of :mod:`nbops.report`; slow tests build a copy of the project
(the built-in data, then a CSV of your own with another target) and read every HTML product under
the build's reports folder: no absolute path of the project, no parameters cell, no test markers, no
object reprs, no NaN/None cells, counts as integers, and wording that names the data's own target.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.report import (
    MISSING,
    alerts_table,
    format_number,
    format_value,
    monitoring_headline,
    relative_text,
    show_summary,
    table,
)
from tests.support import REPO, copy_project, nbops, output_of

# --- the display helpers -------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every table of an HTML page as (header cells, body rows), cell text unescaped and stripped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self.tables.append(([], []))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            head, body = self.tables[-1]
            (head.extend(self._row) if self._in_head else body.append(self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def tables_of(page: str) -> list[tuple[list[str], list[list[str]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def text_of(page: str) -> str:
    """What a reader sees: the page without styles, scripts and tags, entities unescaped."""
    page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S | re.I)
    page = re.sub(r"<img\b[^>]*>", "", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_numbers_read_as_a_reader_expects():
    assert format_number(6195.0) == "6,195"
    assert format_number(3323) == "3,323"
    assert format_number(0.108035) == "0.1080"
    assert format_number(38.5262) == "38.53"
    assert format_number(58234.56) == "58,235"
    assert format_number(float("nan")) == MISSING
    assert format_number(True) == "yes"
    assert format_number(1.0, "share") == "1.0000"  # beside 0.7650 in a column of metrics


def test_values_are_never_none_or_nan_and_paths_are_relative(tmp_path):
    assert format_value(None) == MISSING and format_value(pd.NA) == MISSING and format_value(np.nan) == MISSING
    assert format_value("2024-09-01 00:00:00") == "2024-09-01"
    assert format_value({"0.05": 0.0128569, "0.5": 0.05}) == "0.05: 0.0129, 0.5: 0.0500"
    assert format_value(["a", "b"]) == "a, b"
    root = tmp_path / "project"
    assert format_value(str(root / "build/test/dist/x.whl"), root) == "build/test/dist/x.whl"
    assert (
        relative_text(f"wrote 2 rows to {root}/data/out.parquet (in {root})", root)
        == "wrote 2 rows to data/out.parquet (in .)"
    )
    assert relative_text(f"{root}-other/file", root) == f"{root}-other/file"  # another folder is not the project


def test_table_formats_cells_hides_the_index_and_escapes_text(tmp_path):
    frame = pd.DataFrame(
        {
            "segment": ["<b>north</b>", "south", "east"],
            "rows": [6195.0, 12.0, np.nan],
            "roc_auc": [0.76501, np.nan, 1.0],
            "note": [
                None,
                "a long message that must never be cut mid-word by a display width, " * 3,
                str(tmp_path / "x.csv"),
            ],
        },
        index=[10, 11, 12],
    )
    page = table(frame, root=tmp_path).to_html()
    [(head, body)] = tables_of(page)
    assert head == ["segment", "rows", "roc_auc", "note"]  # no index column
    assert [row[:3] for row in body] == [
        ["<b>north</b>", "6,195", "0.7650"],
        ["south", "12", MISSING],
        ["east", MISSING, "1.0000"],
    ]
    assert body[0][3] == MISSING and body[1][3].endswith("by a display width,") and "..." not in page
    assert body[2][3] == "x.csv" and str(tmp_path) not in page
    assert "<b>north</b>" not in page and "&lt;b&gt;north&lt;/b&gt;" in page
    assert table(frame, root=tmp_path).to_html() == page  # deterministic (no random table id)


def test_summary_keeps_counts_as_integers_beside_floats():
    page = show_summary(
        {"best_iteration": 65, "valid_rows": 710, "valid_auc": 0.81237, "ok": False, "missing": None}
    ).to_html()
    [(head, body)] = tables_of(page)
    assert head == ["item", "value"]
    assert body == [
        ["best iteration", "65"],
        ["valid rows", "710"],
        ["valid auc", "0.8124"],
        ["ok", "no"],
        ["missing", MISSING],
    ]


def test_empty_tables_are_a_sentence():
    assert table(pd.DataFrame(), empty="No row was quarantined.").data == "No row was quarantined."
    assert alerts_table([]).data == "No alert."


def test_alerts_are_sorted_by_batch_with_messages_in_full():
    message = "dataset drift: 6 feature(s) over PSI 0.2: " + ", ".join(f"feature_{i} (0.{i}1)" for i in range(6))
    alerts = [
        {"batch_id": "2025-05", "kind": "drift", "severity": "warning", "message": "m5"},
        {"batch_id": "2025-02", "kind": "drift", "severity": "warning", "message": message, "extra": 1},
    ]
    [(head, body)] = tables_of(alerts_table(alerts).to_html())
    assert head == ["batch", "kind", "severity", "message"]
    assert [row[0] for row in body] == ["2025-02", "2025-05"] and body[0][3] == message


def test_monitoring_headline_without_ground_truth_never_says_none_of_none():
    history = pd.DataFrame({"batch_id": ["holdout"]})
    line = monitoring_headline(history, {})
    assert line == "batches monitored: 1 (holdout)"
    simulated = monitoring_headline(
        pd.DataFrame({"batch_id": ["2025-01", "2025-02"]}), {"found": 2, "named_features": 3, "false_alarms": 0}
    )
    assert simulated == "months monitored: 2; drifted features found: 2 of 3; false alarms on clean months: 0"


# --- the reports of a build ----------------------------------------------------------------------

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
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy built once with the built-in (simulated) credit-risk data."""
    return _build(copy_project(tmp_path_factory.mktemp("reports-simulated") / "project"))


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
    stages = {name for name in pages if re.match(r"0\d_\w+\.html$", name)}
    assert len(stages) == 8, f"expected the eight stage reports under {folder}, found {sorted(pages)}"
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_figures_saved_for_dense_screens_show_at_their_physical_size() -> None:
    import io

    from matplotlib.figure import Figure

    from nbops.report import png_display_width

    fig = Figure(figsize=(6, 3))
    fig.subplots().plot([1, 2])
    widths = {}
    for dpi in (100, 200):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        widths[dpi] = png_display_width(buffer.getvalue())
    assert widths == {100: 576, 200: 576}  # 6 inches at 96 CSS px per inch, whatever the pixel count
    assert png_display_width(b"not a png") is None
