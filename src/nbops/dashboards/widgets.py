"""The dashboard widgets: KPI tiles, tables, figures, and the interactive pickers."""

from __future__ import annotations

import html
import io
import json
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbops.dashboards.data import DashboardData
from nbops.monitoring.plots import drift_heatmap, performance_over_time
from nbops.monitoring.profile import bin_shares, category_shares, numeric_values

TILE = "display:inline-block;min-width:150px;margin:4px;padding:10px 14px;border-radius:8px;background:{bg};font-family:system-ui,sans-serif"


def figure_widget(fig: Figure) -> w.Image:
    """A matplotlib figure as a PNG image widget (no pyplot, no kernel-side display state)."""
    buffer = io.BytesIO()
    # No bbox_inches="tight": the figures are laid out already, and a tight box draws them twice.
    fig.savefig(buffer, format="png", dpi=90)
    return w.Image(value=buffer.getvalue(), format="png", layout=w.Layout(max_width="100%"))


def tile(label: str, value: str, tone: str = "neutral") -> str:
    bg = {"good": "#e3f2e1", "warn": "#fdf0c6", "bad": "#f9d6d5", "neutral": "#eef1f5"}[tone]
    return f"<div class='nbops-tile' style='{TILE.format(bg=bg)}'><div style='font-size:12px;color:#555'>{html.escape(label)}</div><div style='font-size:22px;font-weight:600'>{html.escape(value)}</div></div>"


def table_html(df: pd.DataFrame, max_rows: int = 50) -> str:
    if df.empty:
        return "<p><i>Nothing to show.</i></p>"
    return df.head(max_rows).to_html(index=False, border=0, classes="nbops-table", float_format=lambda v: f"{v:.4f}", escape=True)


def empty_state(title: str, message: str) -> w.HTML:
    return w.HTML(f"<div class='nbops-empty' style='padding:24px;border:2px dashed #bbb;border-radius:8px;font-family:system-ui,sans-serif'><h3>{html.escape(title)}</h3><p>{html.escape(message)}</p></div>")


def distribution_figure(data: DashboardData, feature: str, batch_id: str) -> Figure:
    """Reference against one batch: bin shares for a numeric feature, level shares for a categorical one."""
    profile = data.profile
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.subplots()
    path = data.batch_path(batch_id)
    if profile is None or path is None:
        ax.text(0.5, 0.5, "No batch file for this month", ha="center", va="center")
        ax.axis("off")
        return fig
    batch = pd.read_parquet(path, columns=[feature]) if path.suffix == ".parquet" else pd.read_csv(path, usecols=[feature])
    if feature in profile.numeric:
        ref = profile.numeric[feature]
        edges = np.asarray(ref.edges)
        cur = bin_shares(numeric_values(batch[feature]), edges)
        labels = [f"≤{edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">{edges[-1]:.3g}", "missing"] if len(edges) else ["all", "missing"]
        reference = np.asarray(ref.shares)
    else:
        ref = profile.categorical[feature]
        cur = category_shares(batch[feature], ref.levels)
        labels = [*ref.levels, "unseen", "missing"]
        reference = np.asarray(ref.shares)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, reference, width=0.4, label="reference (training)", color="#7aa6d6")
    ax.bar(x + 0.2, cur, width=0.4, label=f"{batch_id}", color="#e07b39")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of rows")
    ax.set_title(f"{feature}: reference vs {batch_id}")
    ax.legend()
    fig.tight_layout()
    return fig


def monitoring_dashboard(data: DashboardData) -> w.Widget:
    """The stakeholder view of the model in production."""
    header = w.HTML("")  # the notebook's own title heads the page
    if data.production is None:
        return w.VBox([header, empty_state("No model in production yet", "Run `make run`: it trains, registers and promotes a model, then monitors the simulated production months. This page shows them as soon as they exist.")])
    prod = data.production
    version_rows = pd.DataFrame(
        [
            {
                "version": v.version,
                "production": "●" if v.version == prod.version else "",
                "created": v.metadata.get("created_at", ""),
                v.metadata.get("gate", {}).get("metric", "metric"): v.metadata["metrics"].get(v.metadata.get("gate", {}).get("metric", ""), np.nan),
                "data fingerprint": v.metadata["data"]["fingerprint"][:12],
            }
            for v in reversed(data.versions)
        ]
    )
    model_box = w.HTML(f"<p style='font-family:system-ui,sans-serif'>In production: <b>{html.escape(prod.metadata['package'])} {prod.version}</b> ({prod.metadata['task_type']}, target <code>{html.escape(prod.metadata['target'])}</code>). Last monitoring run: <b class='nbops-last-run'>{data.last_run_text}</b>.</p>" + table_html(version_rows, 10))
    history = data.history
    if history.empty or "status" not in history.columns:
        return w.VBox([header, model_box, empty_state("No batch monitored yet", "The monitor stage (or `nbops monitor`) adds a row per batch. Drift, data quality and performance appear here after the first one.")])
    drifted = int(history.get("dataset_drift", pd.Series(dtype=bool)).fillna(False).astype(bool).sum())
    errors = sum(1 for a in data.alerts if a.get("severity") == "error")
    auc_col = "perf__roc_auc" if "perf__roc_auc" in history.columns else ("perf__rmse" if "perf__rmse" in history.columns else None)
    latest_perf = history[auc_col].dropna().iloc[-1] if auc_col and history[auc_col].notna().any() else None
    tiles = w.HTML(
        "<div class='nbops-kpis'>"
        + tile("batches monitored", f"{len(history)}")
        + tile("batches with drift", f"{drifted}", "bad" if drifted else "good")
        + tile("alerts", f"{len(data.alerts)} ({errors} errors)", "bad" if errors else ("warn" if data.alerts else "good"))
        + tile(f"latest labelled {auc_col.removeprefix('perf__') if auc_col else 'metric'}", f"{latest_perf:.3f}" if latest_perf is not None else "labels pending", "neutral")
        + "</div>"
    )
    threshold = 0.2
    heatmap = figure_widget(drift_heatmap(history, threshold))
    reference_metric = prod.metadata["metrics"].get(auc_col.removeprefix("perf__")) if auc_col else None
    performance = figure_widget(performance_over_time(history, auc_col or "perf__roc_auc", reference_metric))
    features = list(data.profile.features) if data.profile else []
    ranked = sorted(features, key=lambda f: -float(history.get(f"psi__{f}", pd.Series([0.0])).max()))
    batches = [b for b in history["batch_id"].astype(str) if data.batch_path(b) is not None]
    feature_picker = w.Dropdown(options=ranked, value=ranked[0] if ranked else None, description="feature", layout=w.Layout(width="380px"))
    # Open on the most drifted feature, in the batch where it drifted most.
    start_batch = batches[-1] if batches else None
    if ranked and f"psi__{ranked[0]}" in history.columns and batches:
        scores = history.set_index(history["batch_id"].astype(str))[f"psi__{ranked[0]}"].reindex(batches)
        if scores.notna().any():
            start_batch = str(scores.astype(float).idxmax())
    batch_picker = w.Dropdown(options=batches, value=start_batch, description="batch", layout=w.Layout(width="260px"))
    distribution = w.Box([], layout=w.Layout(min_height="320px"))
    distribution.add_class("nbops-distribution")

    def redraw(_: Any = None) -> None:
        if feature_picker.value and batch_picker.value:
            image = figure_widget(distribution_figure(data, feature_picker.value, batch_picker.value))
            image.add_class(f"nbops-dist-{feature_picker.value}")
            distribution.children = [image]

    feature_picker.observe(redraw, names="value")
    batch_picker.observe(redraw, names="value")
    redraw()
    quality_cols = [c for c in ("batch_id", "rows", "status", "quality_issues", "n_drifted", "drifted_features", "alerts") if c in history.columns]
    alerts = pd.DataFrame(data.alerts)[["batch_id", "kind", "severity", "message"]] if data.alerts else pd.DataFrame()
    return w.VBox(
        [
            header,
            model_box,
            tiles,
            w.HTML("<h3>Drift by batch</h3>"),
            heatmap,
            w.HTML("<h3>Reference against a batch</h3>"),
            w.HBox([feature_picker, batch_picker]),
            distribution,
            w.HTML("<h3>Performance over time</h3>"),
            performance,
            w.HTML("<h3>Data quality</h3>" + table_html(history[quality_cols])),
            w.HTML("<h3>Alerts</h3>" + table_html(alerts)),
        ]
    )


def confusion_at(threshold: float, y: np.ndarray, p: np.ndarray, loss_default: float, margin_good: float) -> dict[str, float]:
    """Decisions at a score threshold: approve below it, decline at or above it."""
    decline = p >= threshold
    tp = int(np.sum(decline & (y == 1)))
    fp = int(np.sum(decline & (y == 0)))
    fn = int(np.sum(~decline & (y == 1)))
    tn = int(np.sum(~decline & (y == 0)))
    approved = tn + fn
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "approval_rate": approved / max(len(y), 1),
        "default_rate_approved": fn / approved if approved else 0.0,
        # Approving a defaulter loses the loss given default; declining a good applicant forgoes the margin.
        "expected_loss": fn * loss_default + fp * margin_good,
    }


def model_dashboard(data: DashboardData) -> w.Widget:
    """The model for a business audience: card, segments, SHAP, and a decision-threshold explorer."""
    header = w.HTML("")
    if data.production is None:
        return w.VBox([header, empty_state("No model yet", "Run `make run` to train, evaluate and register a model.")])
    import mistune

    prod = data.production
    card = w.HTML(mistune.html(prod.file("card.md").read_text()) if prod.file("card.md").exists() else "<p>No card.</p>")
    metrics = json.loads(prod.file("metrics.json").read_text())
    segments = pd.DataFrame(metrics.get("segments", []))
    evaluate = data.products.get("evaluate", {})
    shap_png = evaluate.get("plots")
    shap = w.Image(value=(shap_png / "shap_summary.png").read_bytes(), format="png") if shap_png and (shap_png / "shap_summary.png").exists() else w.HTML("<p>No SHAP summary.</p>")
    children: list[w.Widget] = [header, w.HTML("<h3>Model card</h3>"), card, w.HTML("<h3>Metrics by segment</h3>" + table_html(segments.round(4), 60)), w.HTML("<h3>What drives the predictions (SHAP)</h3>"), shap]
    predictions_path = evaluate.get("predictions")
    if prod.metadata["task_type"] == "binary" and predictions_path and predictions_path.exists():
        preds = pd.read_parquet(predictions_path)
        y = preds[prod.metadata["target"]].to_numpy(dtype=float)
        p = preds["prediction"].to_numpy(dtype=float)
        slider = w.FloatSlider(value=float(np.quantile(p, 0.8)), min=0.0, max=float(min(1.0, p.max() + 0.01)), step=0.005, description="decline at ≥", readout_format=".3f", continuous_update=False, layout=w.Layout(width="520px"))
        loss = w.FloatText(value=5000.0, description="loss/default")
        margin = w.FloatText(value=500.0, description="margin/good")
        result = w.HTML()
        result.add_class("nbops-threshold-result")

        def update(_: Any = None) -> None:
            r = confusion_at(slider.value, y, p, loss.value, margin.value)
            result.value = (
                "<div class='nbops-kpis'>"
                + tile("approval rate", f"{r['approval_rate']:.1%}")
                + tile("default rate among approved", f"{r['default_rate_approved']:.2%}", "warn" if r["default_rate_approved"] > np.mean(y) else "good")
                + tile("expected loss (test rows)", f"{r['expected_loss']:,.0f}")
                + "</div>"
                + f"<table class='nbops-confusion' border=1 style='border-collapse:collapse;margin-top:8px'><tr><th></th><th>defaulted</th><th>repaid</th></tr><tr><th>declined</th><td>{r['tp']}</td><td>{r['fp']}</td></tr><tr><th>approved</th><td>{r['fn']}</td><td>{r['tn']}</td></tr></table>"
            )

        for control in (slider, loss, margin):
            control.observe(update, names="value")
        update()
        children += [w.HTML("<h3>Decision threshold explorer</h3><p>Applicants scoring at or above the threshold are declined. Move the slider to see the trade-off on the test split.</p>"), slider, w.HBox([loss, margin]), result]
    return w.VBox(children)
