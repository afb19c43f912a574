"""The display helpers of :mod:`nbops.report`: numbers as a reader expects them, relative paths,
formatted and escaped tables, headlines (the reports of a real build: tests/e2e/test_reports.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbops.report import (
    MISSING,
    alerts_table,
    format_number,
    format_value,
    ground_truth_table,
    monitoring_headline,
    relative_text,
    show_summary,
    table,
)
from tests.support import tables_of

# --- the display helpers -------------------------------------------------------------------------


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


def test_number_edge_cases_and_dates_read_as_written():
    assert [format_number(v) for v in (1.2345, 12.345, 999.94, 0.00001234)] == ["1.234", "12.35", "999.9", "1.23e-05"]
    assert format_number(float("inf")) == "∞" and format_number(-float("inf")) == "-∞"
    assert format_number(np.int64(1234567)) == "1,234,567" and format_number(7.0, "int") == "7"
    assert format_value(pd.Timestamp("2025-03-01")) == "2025-03-01"  # a date, not a midnight
    assert format_value(pd.Timestamp("2025-03-01 14:30")) == "2025-03-01 14:30:00"
    assert format_value({"b", "a"}) == "a, b" and format_value([]) == MISSING and format_value("  ") == MISSING


def test_a_number_rounded_up_to_the_next_power_of_ten_keeps_four_significant_digits():
    """999.95 reads 1,000 (as 1000.4 does), not 1000.0; 99.995 reads 100.0, not 100.00."""
    assert format_number(999.95) == "1,000" and format_number(99.995) == "100.0"


def test_numbers_are_right_aligned_and_named_columns_escaped(tmp_path):
    rows = [
        {"feature": "income", "share": "12.5%", "psi": 0.31, "note": "x"},
        {"feature": "age", "share": "3%", "psi": 0.02, "note": "y"},
    ]
    styler = table(rows, columns={"psi": "PSI <batch>"}, root=tmp_path)
    page = styler.to_html()
    [(head, body)] = tables_of(page)
    assert head == ["feature", "share", "PSI <batch>", "note"] and "PSI &lt;batch&gt;" in page
    assert body == [["income", "12.5%", "0.3100", "x"], ["age", "3%", "0.0200", "y"]]
    right = {s["selector"] for s in styler.table_styles if ("text-align", "right") in s["props"]}
    assert right == {"td.col1", "th.col1", "td.col2", "th.col2"}  # numbers, also when written as text


def test_an_index_that_carries_meaning_is_a_column():
    frame = pd.DataFrame({"rows": [3, 4]}, index=pd.Index(["train", "test"], name="split"))
    [(head, body)] = tables_of(table(frame, index=True, root=None).to_html())
    assert head == ["split", "rows"] and body == [["train", "3"], ["test", "4"]]


def test_the_ground_truth_table_names_its_columns_in_words():
    truth = pd.DataFrame(
        {
            "month": ["2025-01", "2025-02"],
            "injected": ["", "age,income,"],
            "found": ["", "age"],
            "dataset_drift": [False, True],
        }
    )
    [(head, body)] = tables_of(ground_truth_table(truth).to_html())
    assert head == ["month", "drift injected in", "drifted features found", "drift detected"]
    assert body == [["2025-01", MISSING, MISSING, "no"], ["2025-02", "age, income", "age", "yes"]]
    assert "your own data" in ground_truth_table(pd.DataFrame()).data


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
