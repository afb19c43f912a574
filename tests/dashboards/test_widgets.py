"""The dashboard's building blocks without a browser: tables that format and align, SVG charts that are
well-formed and carry their values, every data-derived string escaped, the target's own words."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.dashboards.data import DashboardData
from nbops.dashboards.widgets import (
    alerts_table,
    card_html,
    status_table,
    table_html,
    threshold_explorer,
)
from nbops.data.schema import ColumnSpec, TableSchema
from nbops.monitoring.plots import (
    distribution_svg,
    drift_heatmap,
    drift_heatmap_svg,
    performance_over_time,
    performance_svg,
)
from nbops.monitoring.svg import hbar_chart

HOSTILE = "<img src=x onerror=alert(1)>"
SVG = "{http://www.w3.org/2000/svg}"


def history(months: int = 6, pending: int = 2, feature: str = "income") -> pd.DataFrame:
    """A monitoring history as the monitor stage writes it: the last ``pending`` months without labels."""
    rows = []
    for k in range(months):
        labelled = k < months - pending
        rows.append(
            {
                "batch_id": f"2025-{k + 1:02d}",
                "rows": 1000,
                "status": "alert" if k == 1 else "ok",
                "status_reason": "critical: 1 feature(s) drifted" if k == 1 else "within every limit",
                "labels": "arrived" if labelled else "pending",
                "drifted_features": feature if k == 1 else "",
                "prediction_psi": 0.01 * k,
                "alerts": 1 if k == 1 else 0,
                f"psi__{feature}": 0.9 if k == 1 else 0.02,
                "psi__age": 0.15 if k == 2 else 0.01,
                "perf__roc_auc": 0.80 - 0.01 * k if labelled else np.nan,
                "perf__labelled_rows": 1000.0 if labelled else np.nan,
            }
        )
    return pd.DataFrame(rows)


def parse(svg: str) -> ET.Element:
    """The chart as XML: fails on any unescaped markup in it."""
    return ET.fromstring(svg)


def test_table_formats_numbers_aligns_headers_with_their_columns_and_escapes() -> None:
    df = pd.DataFrame({"name": ["a", HOSTILE], "rows": [1000.0, 25.0], "auc": [0.76501, np.nan], HOSTILE: ["x", "y"]})
    out = table_html(df)
    assert "<img" not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert ">1,000<" in out and ">25<" in out and "1000.0" not in out  # whole numbers as ints
    assert ">0.765<" in out and ">–<" in out  # three decimals; a missing value as a dash
    root = ET.fromstring(out).find("table")
    heads = root.findall("./thead/tr/th")
    first = root.findall("./tbody/tr")[0].findall("td")
    assert (
        [h.get("class").split()[0] for h in heads]
        == [c.get("class").split()[0] for c in first]
        == ["nbops-text", "nbops-num", "nbops-num", "nbops-text"]
    )


def test_status_table_says_labels_pending_and_escapes_the_reason() -> None:
    h = history()
    h.loc[1, "status_reason"] = HOSTILE
    out = status_table(h, "perf__roc_auc", limit=0.78)
    assert "<img" not in out and out.count("labels pending") == 2
    rows = ET.fromstring(out).findall("./table/tbody/tr")
    assert "".join(rows[0].itertext()).startswith("2025-06")  # latest first
    cells = {"".join(r[0].itertext()): "".join(r[6].itertext()) for r in rows}
    assert cells["2025-06"] == cells["2025-05"] == "labels pending"
    assert cells["2025-01"] == "0.800"
    past = {"".join(r[0].itertext()) for r in rows if r[6].find("b[@class='nbops-past-limit']") is not None}
    assert past == {"2025-04"}  # 0.770 is below the alert level 0.78; 0.780 is not


def test_alerts_table_is_latest_and_most_severe_first_and_escaped() -> None:
    alerts = [
        {"batch_id": "2025-01", "kind": "drift", "severity": "warning", "message": "m1"},
        {"batch_id": "2025-02", "kind": "calibration", "severity": "warning", "message": "m2"},
        {"batch_id": "2025-02", "kind": "performance", "severity": "critical", "message": HOSTILE},
    ]
    out = alerts_table(alerts)
    assert "<img" not in out
    order = ["".join(r.itertext()) for r in ET.fromstring(out).findall("./table/tbody/tr")]
    assert (
        order[0].startswith("2025-02critical")
        and order[1].startswith("2025-02warning")
        and order[2].startswith("2025-01")
    )


def test_heatmap_svg_has_a_status_strip_values_on_hover_and_escapes_names() -> None:
    h = history(feature=HOSTILE).assign(
        batch_id=lambda d: d["batch_id"].where(d.index != 3, "</svg><script>x</script>")
    )
    svg = drift_heatmap_svg(h, 0.2)
    root = parse(svg)
    assert "<script" not in svg and "<img" not in svg
    tips = root.findall(f".//{SVG}g[@class='nbops-tip']")
    strip = [t for t in tips if t.get("data-status") is not None]
    assert [t.get("data-status") for t in strip] == list(h["status"])
    cell = next(t for t in tips if t.get("data-feature") == HOSTILE and t.get("data-batch") == "2025-02")
    assert "PSI 0.900: severe" in "".join(cell.itertext())


def test_performance_svg_has_the_alert_level_a_y_label_pending_months_and_point_values() -> None:
    svg = performance_svg(history(), "perf__roc_auc", 0.80, 0.75)
    root = parse(svg)
    assert root.get("data-limit") == "0.75"
    assert root.find(f".//{SVG}line[@data-role='alert-level']") is not None
    assert "ROC AUC" in "".join(root.find(f".//{SVG}text[@data-role='y-label']").itertext())
    assert len(root.findall(f".//{SVG}rect[@data-role='pending']")) == 1
    values = {t.get("data-batch"): t.get("data-value") for t in root.findall(f".//{SVG}g[@class='nbops-tip']")}
    assert values == {
        "2025-01": "0.800",
        "2025-02": "0.790",
        "2025-03": "0.780",
        "2025-04": "0.770",
        "2025-05": "labels pending",
        "2025-06": "labels pending",
    }


def test_performance_svg_without_labels_says_they_are_pending() -> None:
    svg = performance_svg(history(pending=6), "perf__roc_auc", 0.80, 0.75)
    assert "No labelled batch yet: labels pending for 6 batch(es)" in "".join(parse(svg).itertext())


def test_distribution_and_bar_charts_escape_their_labels() -> None:
    svg = distribution_svg(
        [HOSTILE, "b", "unseen", "missing"],
        np.array([0.5, 0.5, 0, 0]),
        np.array([0.2, 0.5, 0.3, 0]),
        feature=HOSTILE,
        batch="2025-01",
    )
    root = parse(svg)
    assert root.get("data-feature") == HOSTILE and "<img" not in svg
    assert "reference 50.0%" in "".join(root.itertext())
    bars = parse(hbar_chart([HOSTILE, "b"], [0.3, 0.1], kind="importance", title=HOSTILE, value_label="mean |SHAP|"))
    assert [t.get("data-value") for t in bars.findall(f".//{SVG}g[@class='nbops-tip']")] == ["0.300", "0.100"]


def test_report_figures_carry_the_alert_level_and_axis_label() -> None:
    fig = performance_over_time(history(), "perf__roc_auc", 0.80, 0.75)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "ROC AUC (labelled rows)"
    assert any(list(line.get_ydata()) == [0.75, 0.75] for line in ax.get_lines())
    assert any(t.get_text() == "alert below 0.750" for t in fig.legends[0].get_texts())
    heat = drift_heatmap(history(), 0.2)
    assert [t.get_text() for t in heat.axes[0].get_yticklabels()] == ["status"]


def test_the_model_card_is_rendered_with_raw_html_escaped() -> None:
    out = card_html(f"# Model card\n\n{HOSTILE}\n\n| a | b |\n|---|---|\n| <b>x</b> | 1 |\n")
    assert "<img" not in out and "<b>" not in out
    assert "&lt;img" in out and "<table>" in out


def test_class_labels_come_from_the_schema_or_are_one_and_zero() -> None:
    schema = TableSchema(
        "churn",
        "churned",
        "binary",
        [ColumnSpec("churned", "categorical", "target", categories=["no", "yes"])],
        positive_class="yes",
    )
    data = DashboardData(Path("."), {}, pd.DataFrame(), [], None, None, [], None, None, schema=schema)
    assert data.class_labels() == ("yes", "no")
    assert DashboardData(Path("."), {}, pd.DataFrame(), [], None, None, [], None, None).class_labels() == ("1", "0")


@pytest.mark.parametrize(("target", "classes"), [("churned", ("yes", "no")), ("default", ("1", "0"))])
def test_threshold_explorer_speaks_of_the_target_not_of_credit(target: str, classes: tuple[str, str]) -> None:
    rng = np.random.default_rng(0)
    preds = pd.DataFrame({target: rng.integers(0, 2, 200).astype(float), "prediction": rng.random(200)})
    widgets = threshold_explorer(target, classes, preds)
    text = " ".join(
        str(getattr(wd, "value", "")) + " " + str(getattr(wd, "description", ""))
        for wd in [*widgets, *widgets[2].children]
    )
    assert f"actual {target} = {classes[0]}" in text and f"actual {target} = {classes[1]}" in text
    assert f"cost of a missed {target} = {classes[0]}" in text
    for word in ("defaulted", "repaid", "declined", "approved", "approval"):
        assert word not in text.lower()


def estimated(h: pd.DataFrame) -> pd.DataFrame:
    """``h`` with the performance estimated before the labels (the monitor's est__ columns) for every month."""
    est = 0.81 - 0.005 * np.arange(len(h))
    return h.assign(est__roc_auc=est, est__roc_auc_low=est - 0.02, est__roc_auc_high=est + 0.02)


def test_performance_svg_draws_the_estimate_with_its_band_beside_the_realised_line() -> None:
    root = parse(performance_svg(estimated(history()), "perf__roc_auc", 0.80, 0.75))
    line = root.find(f".//{SVG}polyline[@data-role='estimate']")
    band = root.find(f".//{SVG}polygon[@data-role='estimate-band']")
    assert line is not None and band is not None
    assert len(line.get("points", "").split()) == 6 and len(band.get("points", "").split()) == 12
    assert root.find(f".//{SVG}line[@data-role='alert-level']") is not None
    tips = {t.get("data-batch"): "".join(t.itertext()) for t in root.findall(f".//{SVG}g[@class='nbops-tip']")}
    assert "ROC AUC 0.800" in tips["2025-01"] and "estimated 0.810 (band 0.790-0.830)" in tips["2025-01"]
    assert "labels pending: no realised performance yet" in tips["2025-06"] and "estimated 0.785" in tips["2025-06"]
    text = "".join(root.itertext())
    assert "estimated before the labels arrive" in text and "estimated (no labels needed)" in text


def test_performance_svg_with_only_estimates_still_draws_them() -> None:
    root = parse(performance_svg(estimated(history(pending=6)), "perf__roc_auc", 0.80, 0.75))
    assert root.find(f".//{SVG}polyline[@data-role='estimate']") is not None
    assert "No labelled batch yet" not in "".join(root.itertext())


def test_status_table_shows_the_estimate_of_a_month_whose_labels_are_pending() -> None:
    rows = ET.fromstring(status_table(estimated(history()), "perf__roc_auc", limit=0.78)).findall("./table/tbody/tr")
    cells = {"".join(r[0].itertext()): "".join(r[6].itertext()) for r in rows}
    assert cells["2025-06"] == "labels pending (estimated 0.785)"
    assert cells["2025-01"] == "0.800"  # the realised figure once the labels are here


def test_matplotlib_performance_chart_draws_the_estimate_and_its_band() -> None:
    fig = performance_over_time(estimated(history()), "perf__roc_auc", 0.80, 0.75)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "estimated (no labels needed)" in labels and "estimate's band" in labels
