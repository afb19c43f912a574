"""The dashboard widgets: KPI tiles, tables, charts, and the interactive pickers.

Charts are inline SVG (:mod:`nbops.monitoring.plots`): crisp at any width, sized to the page, the
value of every cell, point and bar on hover. Tables are rendered here rather than by pandas so that
headers align with their columns, numbers read as numbers and long text wraps between words.
Every string that comes from the data (feature names, batch ids, categories, alert messages, the
model card) is escaped before it reaches the page.
"""

from __future__ import annotations

import html
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd

from nbops.dashboards.data import DashboardData
from nbops.modeling.metrics import HIGHER_IS_BETTER
from nbops.monitoring.monitor import performance_limit, performance_metric
from nbops.monitoring.plots import (
    distribution_shares,
    distribution_svg,
    drift_heatmap_svg,
    metric_name,
    performance_svg,
    raised_note,
)
from nbops.monitoring.svg import hbar_chart

PAGE_WIDTH = 1080  # px: charts and tables share this width, so the page reads as one column

STYLE = f"""
<style>
.nbops-page {{ \
max-width: {PAGE_WIDTH}px; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2933; }}
.nbops-page .widget-html-content {{ line-height: 1.45; min-width: 0; }}
.nbops-page, .nbops-page > * {{ min-width: 0; max-width: 100%; }}
.nbops-page h3 {{ font-size: 17px; margin: 22px 0 4px 0; }}
.nbops-caption {{ color: #52606d; font-size: 13px; margin: 0 0 8px 0; max-width: {PAGE_WIDTH}px; }}
.nbops-kpis {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 8px; margin: 6px 0; \
max-width: {PAGE_WIDTH}px; }}
.nbops-tile {{ padding: 10px 12px; border-radius: 8px; min-width: 0; }}
.nbops-tile-label {{ font-size: 12px; color: #52606d; }}
.nbops-tile-value {{ font-size: 21px; font-weight: 600; white-space: nowrap; }}
.nbops-table {{ border-collapse: collapse; width: 100%; font-size: 13px; margin: 4px 0 8px 0; }}
.nbops-table th, .nbops-table td {{ padding: 5px 8px; border-bottom: 1px solid #e4e7eb; vertical-align: top;
  white-space: normal; word-break: normal; overflow-wrap: break-word; }}
.nbops-table th {{ font-weight: 600; background: #f5f7fa; border-bottom: 2px solid #cbd2d9; }}
.nbops-table-wrap {{ overflow-x: auto; max-width: 100%; }}
.nbops-table .nbops-num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.nbops-table td.nbops-num {{ white-space: nowrap; }}
.nbops-table .nbops-text {{ text-align: left; }}
.nbops-table .nbops-nowrap {{ white-space: nowrap; }}
.nbops-muted {{ color: #7b8794; }}
.nbops-table tbody tr:hover {{ background: #f8fafc; }}
.nbops-pill {{ display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; \
white-space: nowrap; }}
.nbops-pending {{ color: #52606d; font-style: italic; }}
.nbops-card {{ max-width: {PAGE_WIDTH}px; font-size: 14px; }}
.nbops-card table {{ border-collapse: collapse; margin: 4px 0 10px 0; font-size: 13px; }}
.nbops-card th, .nbops-card td {{ padding: 4px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; }}
.nbops-card th {{ background: #f5f7fa; }}
.nbops-card code {{ overflow-wrap: anywhere; }}
.nbops-card h1 {{ font-size: 22px; }} .nbops-card h2 {{ font-size: 17px; margin-top: 18px; }}
.nbops-confusion {{ border-collapse: collapse; margin-top: 10px; font-size: 14px; }}
.nbops-confusion th, .nbops-confusion td {{ border: 1px solid #cbd2d9; padding: 6px 12px; }}
.nbops-confusion td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.nbops-confusion th {{ background: #f5f7fa; text-align: left; }}
</style>
"""
TONES = {"good": "#e3f2e1", "warn": "#fdf0c6", "bad": "#f9d6d5", "neutral": "#eef1f5"}
STATUS_TONES = {"ok": "good", "watch": "warn", "alert": "bad"}
PILLS = {
    "ok": ("#e3f2e1", "#1e6b2c"),
    "watch": ("#fdf0c6", "#7a5b00"),
    "alert": ("#f9d6d5", "#9b1c1c"),
    "failed": ("#f9d6d5", "#9b1c1c"),  # a task run (the experiments page)
    "info": ("#e6eefb", "#1c4f9b"),
    "warning": ("#fdf0c6", "#7a5b00"),
    "critical": ("#9b1c1c", "#ffffff"),
}
KIND_WORDS = {
    "data_quality": "data quality",
    "drift": "drift",
    "prediction_drift": "prediction drift",
    "performance": "performance",
    "calibration": "calibration",
}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- building blocks


def tile(label: str, value: str, tone: str = "neutral") -> str:
    return (
        f"<div class='nbops-tile' style='background:{TONES[tone]}'>"
        f"<div class='nbops-tile-label'>{esc(label)}</div><div class='nbops-tile-value'>{esc(value)}</div></div>"
    )


def pill(value: str) -> str:
    """A status (ok / watch / alert) or a severity (info / warning / critical) as a coloured label."""
    bg, fg = PILLS.get(value, ("#eef1f5", "#1f2933"))
    return f"<span class='nbops-pill nbops-pill-{esc(value)}' style='background:{bg};color:{fg}'>{esc(value)}</span>"


def section(title: str, caption: str = "") -> w.HTML:
    return w.HTML(f"<h3>{esc(title)}</h3>" + (f"<p class='nbops-caption'>{esc(caption)}</p>" if caption else ""))


def chart(svg: str, name: str) -> w.HTML:
    """An SVG chart as a widget that fills the page width (at most the chart's natural width)."""
    widget = w.HTML(svg, layout=w.Layout(width="100%", max_width=f"{PAGE_WIDTH}px", margin="2px 0"))
    widget.add_class(f"nbops-{name}")
    return widget


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def number_format(series: pd.Series) -> Callable[[Any], str] | None:
    """How a column's numbers are written: whole numbers with thousands separators when every value
    is whole, else three decimals (fewer digits for large values); None for a text column."""
    if pd.api.types.is_bool_dtype(series):
        return None
    values = pd.to_numeric(series, errors="coerce")
    present = values.dropna()
    if present.empty or pd.to_numeric(series.dropna(), errors="coerce").isna().any():
        return None
    if (present == present.round()).all():
        return lambda v: f"{int(round(float(v))):,}"

    def decimal(v: Any) -> str:
        v = float(v)
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.3f}"

    return decimal


def table_html(
    df: pd.DataFrame,
    max_rows: int = 60,
    *,
    cls: str = "",
    cells: Mapping[str, Callable[[Any], str]] | None = None,
    widths: Mapping[str, str] | None = None,
    nowrap: Sequence[str] = (),
    empty: str = "Nothing to show.",
) -> str:
    """``df`` as an HTML table: numbers right-aligned under right-aligned headers, formatted per
    column (ints as ints, floats to three decimals), text left-aligned and wrapped between words.

    ``cells`` renders a column's values as HTML (the function escapes what it shows); every other
    value is escaped here. ``widths`` suggests column widths (CSS lengths); ``nowrap`` columns (short
    identifiers such as a batch id) never break.
    """
    if df.empty:
        return f"<p class='nbops-caption'><i>{esc(empty)}</i></p>"
    cells = cells or {}
    widths = widths or {}
    shown = df.head(max_rows)
    formats = {c: (None if c in cells else number_format(shown[c])) for c in shown.columns}
    align = {
        c: ("nbops-num" if formats[c] is not None else "nbops-text") + (" nbops-nowrap" if c in nowrap else "")
        for c in shown.columns
    }
    head = "".join(
        f"<th class='{align[c]} nbops-col-{i}'"
        + (f" style='width:{widths[c]}'" if c in widths else "")
        + f" scope='col'>{esc(c)}</th>"
        for i, c in enumerate(shown.columns)
    )
    body = []
    for row in shown.itertuples(index=False, name=None):
        tds = []
        for i, (c, v) in enumerate(zip(shown.columns, row, strict=True)):
            if c in cells:
                text = cells[c](v)
            elif is_missing(v):
                text = "–"
            elif (fmt := formats[c]) is not None:
                text = esc(fmt(v))
            elif isinstance(v, bool | np.bool_):
                text = "yes" if v else "no"
            else:
                text = esc(v)
            tds.append(f"<td class='{align[c]} nbops-col-{i}'>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    more = f"<p class='nbops-caption'>Showing {max_rows} of {len(df):,} rows.</p>" if len(df) > max_rows else ""
    # A narrow window scrolls the table inside its own box rather than cutting the page.
    return (
        f"<div class='nbops-table-wrap'><table class='nbops-table {esc(cls)}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


def empty_state(title: str, message: str) -> w.HTML:
    return w.HTML(
        f"{STYLE}<div class='nbops-empty' style='padding:24px;border:2px dashed "
        f"#bbb;border-radius:8px;font-family:system-ui,sans-serif;max-width:{PAGE_WIDTH}px'><h3>{esc(title)}</h3><p>{esc(message)}</p></div>"
    )


def page(children: Sequence[w.Widget], name: str) -> w.VBox:
    box = w.VBox([w.HTML(STYLE), *children], layout=w.Layout(max_width=f"{PAGE_WIDTH + 20}px"))
    box.add_class("nbops-page")
    box.add_class(f"nbops-{name}-page")
    return box


def png_widget(path: Path) -> w.Image:
    """A PNG at its physical size (pixels over its dpi, at 96 CSS px per inch), never stretched."""
    data = path.read_bytes()
    width, dpi = _png_size(data)
    css = round(width * 96 / dpi) if dpi else width
    return w.Image(value=data, format="png", layout=w.Layout(width=f"{css}px", max_width="100%", height="auto"))


def _png_size(data: bytes) -> tuple[int, float | None]:
    """Width in pixels and dpi (from the pHYs chunk, if any) of a PNG."""
    width = struct.unpack(">I", data[16:20])[0]
    at = data.find(b"pHYs")
    if at < 0:
        return width, None
    x_per_metre, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return width, (x_per_metre * 0.0254 if unit == 1 else None)


# --------------------------------------------------------------------------- monitoring


# What the estimated line is, and what it cannot see (the README says the same).
ESTIMATE_TEXT = (
    "The dashed line is the same metric estimated from the model's scores alone, before the labels arrive "
    "(confidence-based estimation, calibrated on the test split), with its band; a band wholly past the alert level "
    "is an alert too. It follows shifts in the inputs but cannot see concept drift (the relation between inputs and "
    "outcome changing, the simulator's concept scenario): realised performance catches that once the labels arrive. "
)


def _perf_column(history: pd.DataFrame, task_type: str) -> str:
    preferred = performance_metric(task_type)
    if preferred in history.columns:
        return preferred
    return next((c for c in ("perf__roc_auc", "perf__log_loss", "perf__rmse") if c in history.columns), preferred)


def status_table(history: pd.DataFrame, metric: str, limit: float | None = None) -> str:
    """One row per batch, latest first: its status and why, what drifted, and its performance (or
    'labels pending'; in red past the alert level ``limit``)."""
    h = history.iloc[::-1].reset_index(drop=True)
    name = metric_name(metric)
    # 'labels' is 'pending' until a batch's labels arrive and absent for a batch too broken to compare;
    # a history written before it existed has no such column: there, no metric means pending.
    labels = h["labels"].astype(object) if "labels" in h.columns else pd.Series("pending", index=h.index, dtype=object)
    perf = pd.to_numeric(h[metric], errors="coerce") if metric in h.columns else pd.Series(np.nan, index=h.index)
    est_column = f"est__{metric.removeprefix('perf__')}"
    est = pd.to_numeric(h[est_column], errors="coerce") if est_column in h.columns else pd.Series(np.nan, index=h.index)
    perf_text = [
        f"{v:.3f}"
        if math.isfinite(v)
        else (("labels pending" + (f" (estimated {e:.3f})" if math.isfinite(e) else "")) if lab == "pending" else "–")
        for v, lab, e in zip(perf, labels, est, strict=True)
    ]
    drifted = h["drifted_features"].astype(object) if "drifted_features" in h.columns else pd.Series("", index=h.index)
    frame = pd.DataFrame(
        {
            "batch": h["batch_id"].astype(str),
            "status": h["status"].astype(object) if "status" in h.columns else "",
            "why": h["status_reason"].astype(object) if "status_reason" in h.columns else "",
            "rows": h["rows"] if "rows" in h.columns else np.nan,
            "drifted features": [", ".join(str(d).split(",")) if isinstance(d, str) and d else "–" for d in drifted],
            "prediction PSI": pd.to_numeric(h.get("prediction_psi", pd.Series(np.nan, index=h.index)), errors="coerce"),
            name: perf_text,
            "alerts": h["alerts"] if "alerts" in h.columns else np.nan,
        }
    )

    lower_is_better = not HIGHER_IS_BETTER.get(metric.removeprefix("perf__"), True)

    def perf_cell(v: Any) -> str:
        if str(v).startswith("labels pending"):
            return f"<span class='nbops-pending'>{esc(v)}</span>"
        try:
            value = float(v)
        except ValueError:
            return esc(v)
        past = limit is not None and (value > limit if lower_is_better else value < limit)
        return f"<b class='nbops-past-limit' style='color:#c92a2a'>{esc(v)}</b>" if past else esc(v)

    ok = set(frame.loc[frame["status"] == "ok", "why"].astype(str))

    def why_cell(v: Any) -> str:
        if is_missing(v):
            return "–"
        return f"<span class='nbops-muted'>{esc(v)}</span>" if str(v) in ok else esc(v)

    return table_html(
        frame,
        max_rows=len(frame),
        cls="nbops-status-table",
        cells={"status": lambda v: pill(str(v)) if isinstance(v, str) and v else "–", name: perf_cell, "why": why_cell},
        widths={"why": "38%", "drifted features": "22%"},
        nowrap=("batch", "status"),
    )


def alerts_table(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Every alert, latest batch first and the most severe first within a batch."""
    if not alerts:
        return table_html(pd.DataFrame(), empty="No alert.")
    rows = sorted(alerts, key=lambda a: SEVERITY_ORDER.get(str(a.get("severity")), 3))
    rows = sorted(rows, key=lambda a: str(a.get("batch_id", "")), reverse=True)  # stable: severity order kept
    frame = pd.DataFrame(
        {
            "batch": [str(a.get("batch_id", "")) for a in rows],
            "severity": [str(a.get("severity", "")) for a in rows],
            "kind": [KIND_WORDS.get(str(a.get("kind")), str(a.get("kind", ""))) for a in rows],
            "message": [str(a.get("message", "")) for a in rows],
        }
    )
    return table_html(
        frame, max_rows=200, cls="nbops-alerts-table", cells={"severity": pill}, nowrap=("batch", "severity", "kind")
    )


def distribution_chart(data: DashboardData, feature: str, batch_id: str) -> str:
    """Reference against one batch for ``feature`` (reads only that column of the batch file)."""
    path = data.batch_path(batch_id)
    if data.profile is None or path is None:
        from nbops.monitoring.svg import message_chart

        return message_chart("distribution", f"No batch file for {batch_id}")
    batch = (
        pd.read_parquet(path, columns=[feature]) if path.suffix == ".parquet" else pd.read_csv(path, usecols=[feature])
    )
    labels, reference, current = distribution_shares(data.profile, feature, batch[feature])
    return distribution_svg(labels, reference, current, feature=feature, batch=batch_id)


def monitoring_dashboard(data: DashboardData) -> w.Widget:
    """The stakeholder view of the model in production."""
    if data.production is None:
        return empty_state(
            "No model in production yet",
            "Run `make run`: it trains, registers and promotes a model, then monitors the simulated production months. "
            "This page shows them as soon as they exist.",
        )
    prod = data.production
    meta = prod.metadata
    gate_metric = meta.get("gate", {}).get("metric", "")
    version_rows = pd.DataFrame(
        [
            {
                "version": v.version,
                "alias": "production" if v.version == prod.version else "",
                "created": str(v.metadata.get("created_at", "")).replace("T", " ").removesuffix("Z"),
                metric_name(gate_metric) if gate_metric else "gate metric": v.metadata["metrics"].get(
                    gate_metric, np.nan
                ),
                "data fingerprint": v.metadata["data"]["fingerprint"][:12],
            }
            for v in reversed(data.versions)
        ]
    )
    model_box = w.HTML(
        f"<p>In production: <b>{esc(meta['package'])} {esc(prod.version)}</b> ({esc(meta['task_type'])}, target "
        f"<code>{esc(meta['target'])}</code>). "
        f"Last monitoring run: <b class='nbops-last-run'>{esc(data.last_run_text)}</b>.</p>"
        + table_html(version_rows, 10, cls="nbops-versions-table", nowrap=("version", "alias", "created"))
    )
    history = data.history
    if history.empty or "status" not in history.columns:
        return page(
            [
                model_box,
                empty_state(
                    "No batch monitored yet",
                    "The monitor stage (or `nbops monitor`) adds a row per batch. Drift, data quality and performance "
                    "appear here after the first one.",
                ),
            ],
            "monitoring",
        )
    rules = data.rules
    task_type = meta["task_type"]
    metric = _perf_column(history, task_type)
    status = history["status"].astype(object)
    n_alert, n_watch = int((status == "alert").sum()), int((status == "watch").sum())
    critical = sum(1 for a in data.alerts if a.get("severity") == "critical")
    perf = (
        pd.to_numeric(history[metric], errors="coerce")
        if metric in history.columns
        else pd.Series(np.nan, index=history.index)
    )
    pending = (
        int((history["labels"].astype(object) == "pending").sum())
        if "labels" in history.columns
        else int(perf.isna().sum())
    )
    latest = history.iloc[-1]
    latest_status = str(latest.get("status", ""))
    labelled = perf.dropna()
    latest_perf = f"{labelled.iloc[-1]:.3f}" if len(labelled) else "labels pending"
    latest_labelled = f" ({history.loc[labelled.index[-1], 'batch_id']})" if len(labelled) else ""
    tiles = w.HTML(
        "<div class='nbops-kpis'>"
        + tile(f"latest batch {latest['batch_id']}", latest_status, STATUS_TONES.get(latest_status, "neutral"))
        + tile("batches on alert", f"{n_alert} of {len(history)}", "bad" if n_alert else "good")
        + tile("batches to watch", f"{n_watch}", "warn" if n_watch else "good")
        + tile(
            f"alerts: {len(data.alerts)} in all",
            f"{critical} critical",
            "bad" if critical else ("warn" if data.alerts else "good"),
        )
        + tile(f"latest labelled {metric_name(metric)}{latest_labelled}", latest_perf)
        + tile("labels pending", f"{pending} batch{'es' if pending != 1 else ''}")
        + "</div>"
    )
    limit = performance_limit(task_type, meta["metrics"], rules)
    reference = meta["metrics"].get(metric.removeprefix("perf__"))
    heatmap = chart(drift_heatmap_svg(history, rules.drift.psi), "heatmap")
    performance = chart(performance_svg(history, metric, reference, limit[1] if limit else None), "performance")
    features = list(data.profile.features) if data.profile else []
    ranked = sorted(
        features,
        key=lambda f: -float(pd.to_numeric(history.get(f"psi__{f}", pd.Series([0.0])), errors="coerce").max() or 0.0),
    )
    batches = [b for b in history["batch_id"].astype(str) if data.batch_path(b) is not None]
    feature_picker = w.Dropdown(
        options=ranked, value=ranked[0] if ranked else None, description="feature", layout=w.Layout(width="380px")
    )
    # Open on the most drifted feature, in the batch where it drifted most.
    start_batch = batches[-1] if batches else None
    if ranked and f"psi__{ranked[0]}" in history.columns and batches:
        scores = pd.to_numeric(
            history.set_index(history["batch_id"].astype(str))[f"psi__{ranked[0]}"], errors="coerce"
        ).reindex(batches)
        if scores.notna().any():
            start_batch = str(scores.astype(float).idxmax())
    batch_picker = w.Dropdown(options=batches, value=start_batch, description="batch", layout=w.Layout(width="260px"))
    distribution = chart("", "distribution")

    def redraw(_: Any = None) -> None:
        if feature_picker.value and batch_picker.value:
            distribution.value = distribution_chart(data, feature_picker.value, batch_picker.value)

    feature_picker.observe(redraw, names="value")
    batch_picker.observe(redraw, names="value")
    redraw()
    psi = rules.drift.psi
    higher = HIGHER_IS_BETTER.get(metric.removeprefix("perf__"), True)
    limit_text = (
        f"; alert {'below' if higher else 'above'} {limit[1]:.3f} (the test value "
        f"{'minus' if higher else 'plus'} the allowed {'drop' if higher else 'increase'})"
        if limit
        else ""
    )
    return page(
        [
            model_box,
            tiles,
            section(
                "Drift by batch",
                "Population Stability Index of each feature against the training reference; a batch drifts at PSI ≥ "
                f"{psi:g} in at least {rules.drift.min_drifted_features} feature(s), a threshold raised for a small "
                "batch to what chance alone rarely reaches at its size"
                + (
                    raised_note(history, psi).replace("; higher for small batches:", ":")
                    or " (no batch here was small)"
                )
                + ". The top strip is each batch's status. Hover a cell for its value and the threshold it had.",
            ),
            heatmap,
            section(
                "Performance over time",
                f"{metric_name(metric)} of each batch once its labels have arrived{limit_text}. "
                + (ESTIMATE_TEXT if f"est__{metric.removeprefix('perf__')}" in history.columns else "")
                + "Hover a point for its value.",
            ),
            performance,
            section(
                "Status by batch",
                "Latest first. alert: an alert of severity warning or critical; watch: a signal below the alert level "
                "(PSI from 0.1, a small share of bad values); ok: within every limit.",
            ),
            w.HTML(status_table(history, metric, limit[1] if limit else None)),
            section(
                "Alerts",
                "critical: at least twice past its limit (or a batch that cannot be compared); warning: past its "
                "limit; info: a small share of bad values.",
            ),
            w.HTML(alerts_table(data.alerts)),
            section(
                "Reference against a batch",
                "Share of rows per bin (numeric features: the training deciles) or level, in training and in the "
                "chosen batch.",
            ),
            w.HBox([feature_picker, batch_picker]),
            distribution,
        ],
        "monitoring",
    )


# --------------------------------------------------------------------------- the model


def confusion_at(
    threshold: float, y: np.ndarray, p: np.ndarray, cost_missed: float, cost_false_flag: float
) -> dict[str, float]:
    """Decisions at a score threshold: rows scoring at or above it are flagged as the positive class."""
    flagged = p >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))
    passed = tn + fn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "flagged_rate": (tp + fp) / max(len(y), 1),
        "positive_rate_unflagged": fn / passed if passed else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        # A positive not flagged costs cost_missed; a negative flagged costs cost_false_flag.
        "expected_cost": fn * cost_missed + fp * cost_false_flag,
    }


def card_html(markdown: str) -> str:
    """The model card's Markdown as HTML, with any raw HTML in it escaped (the card quotes names
    and values from the data)."""
    import mistune

    render = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])
    return f"<div class='nbops-card'>{render(markdown)}</div>"


def model_dashboard(data: DashboardData) -> w.Widget:
    """The model for a business audience: card, segments, SHAP, and a decision-threshold explorer."""
    if data.production is None:
        return empty_state("No model yet", "Run `make run` to train, evaluate and register a model.")
    prod = data.production
    meta = prod.metadata
    card = w.HTML(card_html(prod.file("card.md").read_text()) if prod.file("card.md").exists() else "<p>No card.</p>")
    metrics = json.loads(prod.file("metrics.json").read_text())
    segments = pd.DataFrame(metrics.get("segments", []))
    first = [c for c in ("segment", "level", "rows") if c in segments.columns]
    segments = segments[first + [c for c in segments.columns if c not in first]].rename(
        columns=lambda c: c if c in first else metric_name(c)
    )
    evaluate = data.products.get("evaluate", {})
    # The card opens with its own title ("Model card: <package> <version>").
    children: list[w.Widget] = [
        card,
        section("Metrics by segment", "On the test split; small segments are noisy, read them with their row counts."),
        w.HTML(table_html(segments, 80, cls="nbops-segments-table", nowrap=("segment",))),
    ]
    importance = evaluate.get("importance")
    shap_png = evaluate.get("plots")
    children.append(
        section(
            "What drives the predictions (SHAP)",
            "Mean absolute SHAP value per feature on a sample of the test split (hover a bar for its value), then "
            + (
                "what each feature does for each class."
                if meta["task_type"] == "multiclass"
                else "how each feature's values push the score."
            ),
        )
    )
    if importance and importance.exists():
        imp = pd.read_parquet(importance).sort_values("mean_abs_shap", ascending=False).head(20)
        children.append(
            chart(
                hbar_chart(
                    imp["feature"].astype(str).tolist(),
                    imp["mean_abs_shap"].astype(float).tolist(),
                    kind="importance",
                    title="Mean |SHAP| per feature",
                    value_label="mean |SHAP value| (log-odds)"
                    if meta["task_type"] == "binary"
                    else "mean |SHAP value|, summed over the classes"
                    if meta["task_type"] == "multiclass"
                    else "mean |SHAP value|",
                ),
                "importance",
            )
        )
    if shap_png and (shap_png / "shap_summary.png").exists():
        children.append(png_widget(shap_png / "shap_summary.png"))
    predictions_path = evaluate.get("predictions")
    if meta["task_type"] == "binary" and predictions_path and predictions_path.exists():
        children += threshold_explorer(str(meta["target"]), data.class_labels(), pd.read_parquet(predictions_path))
    return page(children, "model")


def threshold_explorer(target: str, classes: tuple[str, str], preds: pd.DataFrame) -> list[w.Widget]:
    """A score threshold and two costs, and what they mean on the test split, in the target's own
    words: ``classes`` is (positive, negative) as :meth:`DashboardData.class_labels` names them."""
    positive, negative = classes
    pos, neg = f"{target} = {positive}", f"{target} = {negative}"
    y = preds[target].to_numpy(dtype=float)
    p = preds["prediction"].to_numpy(dtype=float)
    slider = w.FloatSlider(
        value=float(np.quantile(p, 0.8)),
        min=0.0,
        max=float(min(1.0, p.max() + 0.01)),
        step=0.005,
        description="flag at score ≥",
        readout_format=".3f",
        continuous_update=False,
        style={"description_width": "120px"},
        layout=w.Layout(width="560px"),
    )
    missed = w.FloatText(
        value=5000.0,
        description=f"cost of a missed {pos}",
        style={"description_width": "initial"},
        layout=w.Layout(width="330px"),
    )
    false_flag = w.FloatText(
        value=500.0,
        description=f"cost of flagging a {neg}",
        style={"description_width": "initial"},
        layout=w.Layout(width="330px"),
    )
    result = w.HTML()
    result.add_class("nbops-threshold-result")
    base_rate = float(np.mean(y)) if len(y) else 0.0

    def update(_: Any = None) -> None:
        r = confusion_at(slider.value, y, p, missed.value, false_flag.value)
        result.value = (
            "<div class='nbops-kpis'>"
            + tile("rows flagged", f"{r['flagged_rate']:.1%}")
            + tile(f"{pos} among the flagged", f"{r['precision']:.1%}")
            + tile(f"{pos} caught", f"{r['recall']:.1%}")
            + tile(
                f"{pos} among the not flagged",
                f"{r['positive_rate_unflagged']:.2%}",
                "warn" if r["positive_rate_unflagged"] > base_rate else "good",
            )
            + tile("expected cost (test rows)", f"{r['expected_cost']:,.0f}")
            + "</div>"
            + "<table class='nbops-confusion'><tr><th>test rows</th>"
            + f"<th scope='col'>actual {esc(pos)}</th><th scope='col'>actual {esc(neg)}</th></tr>"
            + "<tr><th scope='row'>flagged (score ≥ "
            f"{slider.value:.3f})</th><td>{r['tp']:,}</td><td>{r['fp']:,}</td></tr>"
            + f"<tr><th scope='row'>not flagged</th><td>{r['fn']:,}</td><td>{r['tn']:,}</td></tr></table>"
        )

    for control in (slider, missed, false_flag):
        control.observe(update, names="value")
    update()
    intro = w.HTML(
        "<h3>Decision threshold explorer</h3><p class='nbops-caption'>Rows scoring at or above the threshold are "
        f"flagged as <code>{esc(pos)}</code>. Move the slider and set what each mistake costs to see the trade-off on "
        f"the {len(y):,} test rows ({esc(pos)} in {base_rate:.1%} of them).</p>"
    )
    return [intro, slider, w.HBox([missed, false_flag]), result]
