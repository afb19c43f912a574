"""Monitoring figures shared by the monitor report and the dashboards.

Each figure exists twice, drawn from the same numbers: a matplotlib ``Figure`` (the PNG in the
monitor stage's report and in W&B) and an SVG chart (:mod:`nbops.monitoring.svg`) for the
dashboards, crisp at any width and with the value of every cell, point and bar on hover. The
monitor stage saves both, side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nbops.monitoring.monitor import watch_level
from nbops.monitoring.profile import ReferenceProfile, bin_shares, category_shares, numeric_values
from nbops.monitoring.svg import GRID, Chart, esc, message_chart, nice_ticks, text_width, tick_text, wrap

# PSI bands: stable, watch, drifted, severe (the same colours in the PNG and the SVG).
BAND_COLOURS = ("#e6f2e1", "#fbe3a1", "#f08a5d", "#b83b5e")
STATUS_COLOURS = {"ok": "#2f9e44", "watch": "#f2b705", "alert": "#c92a2a"}
METRIC_NAMES = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "log_loss": "log loss",
    "brier": "Brier score",
    "ks": "KS",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
    "accuracy": "accuracy",
    "f1_macro": "macro F1",
    "f1_weighted": "weighted F1",
    "roc_auc_ovr": "ROC AUC (one vs rest)",
    "calibration_error": "calibration error",
    "positive_rate": "positive rate",
    "mean_prediction": "mean prediction",
}
LINE, BAD, REFERENCE = "#2b6cb0", "#c92a2a", "#7b8794"
ESTIMATE, ESTIMATE_BAND = "#d9822b", "#fbe3c8"  # performance estimated before the labels (CBPE)
CONCEPT_NOTE = (
    "estimated from the scores alone: it follows shifts in the inputs, not concept drift (a changed relation "
    "between inputs and outcome), which realised performance catches once the labels arrive"
)


def metric_name(metric: str) -> str:
    """'perf__roc_auc' or 'roc_auc' -> 'ROC AUC'."""
    key = metric.removeprefix("perf__")
    return METRIC_NAMES.get(key, key.replace("_", " "))


def psi_matrix(history: pd.DataFrame) -> pd.DataFrame:
    """Feature × batch PSI table from the history's psi__<feature> columns."""
    cols = [c for c in history.columns if c.startswith("psi__")]
    if history.empty or not cols:
        return pd.DataFrame()
    m: pd.DataFrame = (
        history.set_index(history["batch_id"].astype(str))[cols].apply(pd.to_numeric, errors="coerce").astype(float).T
    )
    m.index = [c.removeprefix("psi__") for c in m.index]
    return m


def psi_bands(threshold: float, watch: float | None = None) -> list[tuple[float, float, str]]:
    """(low, high, name) of the PSI bands: stable, watch (from ``watch``, by default
    :func:`watch_level`), drifted (from the threshold), severe (from twice the threshold, where a drift
    alert turns critical). A small batch's levels are raised (see :mod:`nbops.monitoring.drift`)."""
    watch = watch_level(threshold) if watch is None else watch
    return [
        (0.0, watch, "stable"),
        (watch, threshold, "watch"),
        (threshold, 2 * threshold, "drifted"),
        (2 * threshold, math.inf, "severe"),
    ]


def psi_band(value: float, threshold: float, watch: float | None = None) -> int:
    """Index of the band ``value`` falls in (0 stable .. 3 severe)."""
    return next(i for i, (_, high, _) in enumerate(psi_bands(threshold, watch)) if value < high)


def level_matrix(history: pd.DataFrame, m: pd.DataFrame, prefix: str, default: float) -> np.ndarray:
    """Per feature (rows of ``m``) and batch (its columns) the level the monitor used, from the
    history's ``<prefix><feature>`` columns (``psi_threshold__`` / ``psi_watch__``); ``default`` (the
    configured level) where the history has none (a history written before the levels were recorded)."""
    by_batch = history.set_index(history["batch_id"].astype(str))
    out = np.full(m.shape, default, dtype=np.float64)
    for i, feature in enumerate(m.index):
        col = f"{prefix}{feature}"
        if col in by_batch.columns:
            values = pd.to_numeric(by_batch[col], errors="coerce").reindex(m.columns).to_numpy(dtype=np.float64)
            out[i] = np.where(np.isfinite(values), values, default)
    return out


def raised_note(history: pd.DataFrame, threshold: float) -> str:
    """'' when every batch was judged at the configured threshold, else where the batch's size raised
    it, e.g. '; higher for small batches: up to 0.50 (2025-02 and 2025-03, 98 rows)'."""
    if "psi_threshold" not in history.columns or history.empty:
        return ""
    levels = pd.to_numeric(history["psi_threshold"], errors="coerce").to_numpy(dtype=np.float64)
    raised = np.flatnonzero(levels > threshold + 1e-12)
    if raised.size == 0:
        return ""
    raised = raised[np.argsort(-levels[raised], kind="stable")]
    rows = (
        pd.to_numeric(history["rows"], errors="coerce").to_numpy(dtype=np.float64)
        if "rows" in history.columns
        else np.full(len(history), np.nan)
    )
    batches = history["batch_id"].astype(str).to_numpy()
    shown = [str(batches[i]) for i in raised[:3]]
    names = ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]
    more = f" and {raised.size - 3} more" if raised.size > 3 else ""
    sizes = sorted({int(rows[i]) for i in raised if np.isfinite(rows[i])})
    span = f"{sizes[0]:,}" if len(sizes) == 1 else (f"{sizes[0]:,}-{sizes[-1]:,}" if sizes else "")
    size = f", {span} rows" if span else ""
    return f"; higher for small batches: up to {levels[raised[0]]:.2f} ({names}{more}{size})"


def band_labels(threshold: float) -> list[str]:
    (_, w, _), _, _, _ = psi_bands(threshold)
    return [
        f"stable < {w:g}",
        f"watch {w:g}–{threshold:g}",
        f"drifted {threshold:g}–{2 * threshold:g}",
        f"severe ≥ {2 * threshold:g}",
    ]


@dataclass
class PerformanceSeries:
    """One metric per batch (NaN where the labels are pending), with its reference and alert level."""

    batches: list[str]
    values: np.ndarray
    pending: np.ndarray
    rows: np.ndarray
    metric: str
    reference: float | None
    limit: float | None
    lower_is_better: bool
    estimated: np.ndarray | None = None  # est__<metric> per batch (NaN without an estimate), and its band
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @property
    def has_estimate(self) -> bool:
        return self.estimated is not None and bool(np.isfinite(self.estimated).any())

    def breached(self, value: float) -> bool:
        if self.limit is None or not math.isfinite(value):
            return False
        return value > self.limit if self.lower_is_better else value < self.limit


def performance_series(
    history: pd.DataFrame, metric: str, reference: float | None, limit: float | None
) -> PerformanceSeries:
    """The series the performance charts draw: every batch, its metric once labelled, and whether its
    labels are still pending (no metric yet for a batch that could be compared)."""
    batches = history["batch_id"].astype(str).tolist() if "batch_id" in history.columns else []
    values = (
        pd.to_numeric(history[metric], errors="coerce").to_numpy(dtype=float)
        if metric in history.columns
        else np.full(len(batches), np.nan)
    )
    if "labels" in history.columns:
        pending = (history["labels"].astype(object) == "pending").to_numpy()
    else:
        pending = np.isnan(values)
    rows = pd.to_numeric(
        history.get("perf__labelled_rows", pd.Series(np.nan, index=history.index)), errors="coerce"
    ).to_numpy(dtype=float)
    key = metric.removeprefix("perf__")

    def column(name: str) -> np.ndarray | None:
        return pd.to_numeric(history[name], errors="coerce").to_numpy(dtype=float) if name in history.columns else None

    estimated, low, high = column(f"est__{key}"), column(f"est__{key}_low"), column(f"est__{key}_high")
    return PerformanceSeries(
        batches,
        values,
        pending & np.isnan(values),
        rows,
        key,
        reference,
        limit,
        key in ("rmse", "mae", "log_loss", "brier", "calibration_error"),
        estimated,
        low if low is not None and high is not None else None,
        high if low is not None and high is not None else None,
    )


def distribution_shares(
    profile: ReferenceProfile, feature: str, values: pd.Series
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(bin labels, reference shares, batch shares) of ``feature``: the reference's deciles for a
    numeric feature, its levels (then unseen, missing) for a categorical one."""
    if feature in profile.numeric:
        ref = profile.numeric[feature]
        edges = np.asarray(ref.edges)
        current = bin_shares(numeric_values(values), edges)
        if len(edges):
            labels = (
                [f"≤ {compact(edges[0])}"]
                + [f"{compact(a)}–{compact(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
                + [f"> {compact(edges[-1])}", "missing"]
            )
        else:
            labels = ["all", "missing"]
        return labels, np.asarray(ref.shares, dtype=float), current
    cat = profile.categorical[feature]
    return [*cat.levels, "unseen", "missing"], np.asarray(cat.shares, dtype=float), category_shares(values, cat.levels)


def compact(value: float) -> str:
    """A bin edge in three significant digits, thousands as k and millions as M."""
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


# --------------------------------------------------------------------------- PNG (matplotlib)


def drift_heatmap(history: pd.DataFrame, threshold: float = 0.2) -> Figure:
    """PSI per feature (rows) and batch (columns), in the four bands of :func:`psi_bands`, under a
    strip with each batch's status."""
    m = psi_matrix(history)
    if m.empty:
        fig = Figure(figsize=(10, 2))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "No monitored batch yet", ha="center", va="center")
        ax.axis("off")
        return fig
    fig = Figure(figsize=(10, 2.2 + 0.22 * m.shape[0]), layout="constrained")
    strip, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, max(m.shape[0], 1)]})
    statuses = (
        history.set_index(history["batch_id"].astype(str))["status"].astype(object).reindex(m.columns)
        if "status" in history.columns
        else pd.Series("", index=m.columns)
    )
    codes = np.array(
        [[("ok", "watch", "alert").index(v) if v in ("ok", "watch", "alert") else np.nan for v in statuses]],
        dtype=float,
    )
    strip.imshow(
        np.ma.masked_invalid(codes),
        aspect="auto",
        cmap=ListedColormap([STATUS_COLOURS[k] for k in ("ok", "watch", "alert")]),
        vmin=-0.5,
        vmax=2.5,
        interpolation="nearest",
    )
    strip.set_yticks([0], ["status"], fontsize=8, fontweight="bold")
    strip.tick_params(axis="x", bottom=False)
    cmap = ListedColormap(list(BAND_COLOURS)).with_extremes(bad="#eeeeee")
    alert = level_matrix(history, m, "psi_threshold__", threshold)
    watch = level_matrix(history, m, "psi_watch__", watch_level(threshold))
    scores = m.to_numpy(dtype=np.float64)
    bands = np.array(
        [
            [psi_band(v, a, w) if np.isfinite(v) else np.nan for v, a, w in zip(row, arow, wrow, strict=True)]
            for row, arow, wrow in zip(scores, alert, watch, strict=True)
        ],
        dtype=float,
    )
    ax.imshow(
        np.ma.masked_invalid(bands),
        aspect="auto",
        cmap=cmap,
        norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], cmap.N),
        interpolation="nearest",
    )
    ax.set_yticks(range(m.shape[0]), m.index, fontsize=8)
    ax.set_xticks(range(m.shape[1]), m.columns, rotation=60, ha="right", fontsize=8)
    for (i, j), value in np.ndenumerate(scores):
        if np.isfinite(value) and bands[i, j] >= 2:
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if bands[i, j] == 3 else "black",
            )
    fig.suptitle(
        f"Feature drift (PSI) by batch; alert at PSI ≥ {threshold:g}{raised_note(history, threshold)}", fontsize=10
    )
    handles = [Patch(color=c, label=t) for c, t in zip(BAND_COLOURS, band_labels(threshold), strict=True)]
    handles += [Patch(color=STATUS_COLOURS[k], label=f"status {k}") for k in ("ok", "watch", "alert")]
    fig.legend(handles=handles, loc="outside lower center", ncol=7, fontsize=7.5, frameon=False)
    return fig


def performance_over_time(
    history: pd.DataFrame, metric: str = "perf__roc_auc", reference: float | None = None, limit: float | None = None
) -> Figure:
    """A performance metric per batch once labels arrived, with the test-set value, the alert level
    and the batches whose labels are still pending."""
    s = performance_series(history, metric, reference, limit)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.subplots()
    if not np.isfinite(s.values).any() and not s.has_estimate:
        ax.text(0.5, 0.5, "No labelled batch yet: labels arrive after a delay", ha="center", va="center")
        ax.axis("off")
        return fig
    x = np.arange(len(s.batches))
    known = np.isfinite(s.values)
    if s.estimated is not None and s.has_estimate:
        e = np.isfinite(s.estimated)
        if s.low is not None and s.high is not None:
            ax.fill_between(x[e], s.low[e], s.high[e], color=ESTIMATE_BAND, label="estimate's band", zorder=1)
        ax.plot(
            x[e],
            s.estimated[e],
            color=ESTIMATE,
            linestyle="--",
            marker=".",
            label="estimated (no labels needed)",
            zorder=2,
        )
    ax.plot(
        x[known],
        s.values[known],
        color=LINE,
        marker="o",
        markersize=4,
        label=f"{metric_name(s.metric)} realised",
        zorder=3,
    )
    bad = np.array([s.breached(v) for v in s.values])
    if bad.any():
        ax.plot(
            x[bad], s.values[bad], linestyle="none", marker="o", markersize=6, color=BAD, label="past the alert level"
        )
    if reference is not None:
        ax.axhline(reference, color=REFERENCE, linestyle="--", linewidth=1, label=f"test split {reference:.3f}")
    if limit is not None:
        ax.axhline(
            limit,
            color=BAD,
            linestyle=":",
            linewidth=1.2,
            label=f"alert {'above' if s.lower_is_better else 'below'} {limit:.3f}",
        )
    pending = np.flatnonzero(s.pending)
    for i in pending:
        ax.axvspan(i - 0.5, i + 0.5, color="#e9ecef", zorder=0, label="labels pending" if i == pending[0] else None)
    ax.set_xticks(x, s.batches, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_ylabel(f"{metric_name(s.metric)} (labelled rows)")
    ax.grid(axis="y", color=GRID)
    ax.set_title(
        f"{metric_name(s.metric)} by batch: estimated before the labels, realised once they arrived"
        if s.has_estimate
        else f"{metric_name(s.metric)} by batch, once its labels arrived",
        fontsize=10,
    )
    fig.legend(loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- SVG (dashboards)


@dataclass(frozen=True)
class BatchAxis:
    """The horizontal layout the heatmap and the performance chart share, so that a batch sits at
    the same x in both (read the status strip straight down to the batch's performance)."""

    left: float
    step: float
    width: float

    def x(self, i: int) -> float:
        return self.left + self.step * (i + 0.5)


def batch_axis(history: pd.DataFrame) -> BatchAxis:
    features = [c.removeprefix("psi__") for c in history.columns if c.startswith("psi__")]
    left = max(text_width(f) for f in [*features, "status", "ROC AUC (labelled rows)  0.000"]) + 14
    n = max(len(history), 1)
    step = min(56.0, max(16.0, (1000 - left - 12) / n))
    return BatchAxis(left, step, max(left + n * step + 12, 760.0))


def drift_heatmap_svg(history: pd.DataFrame, threshold: float = 0.2, standalone: bool = False) -> str:
    """The drift heatmap as an SVG chart: a status strip (ok / watch / alert) above the PSI of every
    feature and batch, values written in the drifted cells, every cell explained on hover."""
    m = psi_matrix(history)
    if m.empty:
        return message_chart("heatmap", "No monitored batch yet", standalone=standalone)
    batches = list(m.columns)
    by_batch = history.set_index(history["batch_id"].astype(str))
    status = (
        by_batch["status"].astype(object).reindex(batches)
        if "status" in by_batch.columns
        else pd.Series("", index=batches)
    )
    reason = (
        by_batch["status_reason"].astype(object).reindex(batches)
        if "status_reason" in by_batch.columns
        else pd.Series("", index=batches)
    )
    axis = batch_axis(history)
    label_w, cell_w, width = axis.left, axis.step, axis.width
    row_h = 20.0
    strip_top = 40.0
    grid_top = strip_top + row_h + 8
    grid_bottom = grid_top + row_h * m.shape[0]
    note = raised_note(history, threshold).removeprefix("; ")
    # Said on the chart, not only in its title: the legend's bands are the configured threshold's.
    note_lines = wrap(f"Alert at PSI {threshold:g}, {note}; hover a cell for its own.", 110) if note else []
    strip_top += 16 * len(note_lines)
    grid_top += 16 * len(note_lines)
    grid_bottom += 16 * len(note_lines)
    rotate = cell_w < 60
    label_room = max(text_width(b, 11) for b in batches) * (0.8 if rotate else 0) + 24
    height = grid_bottom + label_room
    chart = Chart(
        width,
        height,
        kind="heatmap",
        title=f"Feature drift (PSI) by batch; alert at PSI ≥ {threshold:g}{raised_note(history, threshold)}",
        attrs={"data-threshold": f"{threshold:g}"},
    )
    swatch = '<rect width="18" height="12" rx="2" fill="{}"/>'
    x = chart.legend([(swatch.format(c), t) for c, t in zip(BAND_COLOURS, band_labels(threshold), strict=True)], 0, 16)
    chart.legend([(swatch.format(STATUS_COLOURS[s]), s) for s in ("ok", "watch", "alert")], x + 10, 16)
    for k, line in enumerate(note_lines):
        chart.text(0, 38 + 16 * k, line, size=11, cls="nbops-muted")

    chart.text(label_w - 8, strip_top + row_h / 2 + 4, "status", anchor="end", weight="600")
    for j, batch in enumerate(batches):
        x = label_w + j * cell_w
        value = str(status.get(batch) or "")
        chart.rect(x + 1, strip_top, cell_w - 2, row_h, STATUS_COLOURS.get(value, "#ced4da"), 'rx="2"')
        said = str(reason.get(batch)) if isinstance(reason.get(batch), str) else ""
        chart.tip(
            f'<rect class="nbops-hit" x="{x:.1f}" y="{strip_top:.1f}" width="{cell_w:.1f}" height="{row_h:.1f}"/>',
            [f"{batch}: {value or 'not graded'}", *([said] if said else [])],
            x + cell_w / 2,
            strip_top,
            f'data-batch="{esc(batch)}" data-status="{esc(value)}"',
        )
        cx, cy = x + cell_w / 2, grid_bottom + 14
        if rotate:
            chart.text(cx + 4, cy - 2, batch, anchor="end", size=11, rotate=-50, cls="nbops-muted")
        else:
            chart.text(cx, cy, batch, anchor="middle", size=11, cls="nbops-muted")
    scores = m.to_numpy(dtype=np.float64)
    alert = level_matrix(history, m, "psi_threshold__", threshold)
    watch = level_matrix(history, m, "psi_watch__", watch_level(threshold))
    for i, feature in enumerate(m.index):
        y = grid_top + i * row_h
        chart.text(label_w - 8, y + row_h / 2 + 4, feature, anchor="end")
        for j, batch in enumerate(batches):
            x = label_w + j * cell_w
            score = float(scores[i, j])
            if not math.isfinite(score):
                chart.rect(x, y, cell_w, row_h, "#f1f3f5", 'stroke="#ffffff"')
                lines = [f"{batch} · {feature}", "not measured (the batch could not be compared)"]
            else:
                a, wl = float(alert[i, j]), float(watch[i, j])
                band = psi_band(score, a, wl)
                chart.rect(x, y, cell_w, row_h, BAND_COLOURS[band], 'stroke="#ffffff"')
                if band >= 2 and cell_w >= 28:
                    chart.text(
                        x + cell_w / 2,
                        y + row_h / 2 + 4,
                        f"{score:.2f}",
                        anchor="middle",
                        size=10,
                        fill="#ffffff" if band == 3 else "#1f2933",
                    )
                lines = [f"{batch} · {feature}", f"PSI {score:.3f}: {psi_bands(a, wl)[band][2]}"]
                if a > threshold + 1e-12:
                    lines.append(f"alert at {a:.2f} for this batch's size ({threshold:g} configured)")
            chart.tip(
                f'<rect class="nbops-hit" x="{x:.1f}" y="{y:.1f}" width="{cell_w:.1f}" height="{row_h:.1f}"/>',
                lines,
                x + cell_w / 2,
                y,
                f'data-feature="{esc(feature)}" data-batch="{esc(batch)}"',
            )
    return chart.render(standalone)


def performance_svg(
    history: pd.DataFrame, metric: str, reference: float | None, limit: float | None, standalone: bool = False
) -> str:
    """The performance chart as SVG: the metric per labelled batch (past the alert level in red), the
    test-split value, the alert level, a y-axis label, and a grey band over the batches whose labels
    are pending. Each point and pending batch says its value or state on hover."""
    s = performance_series(history, metric, reference, limit)
    name = metric_name(s.metric)
    if not np.isfinite(s.values).any() and not s.has_estimate:
        pending = int(s.pending.sum())
        return message_chart(
            "performance",
            f"No labelled batch yet: labels pending for {pending} batch(es); they arrive a few months after a batch is "
            "scored",
            standalone=standalone,
        )
    axis = batch_axis(history)
    width, height = axis.width, 340.0
    top, bottom = (62.0 if s.has_estimate else 44.0), 62.0  # with an estimate the legend takes two rows
    n = len(s.batches)
    x0, x1, y0, y1 = axis.left, axis.left + axis.step * n, top, height - bottom
    step_x = axis.step
    xpos = axis.x

    known = np.isfinite(s.values)
    span = [*s.values[known].tolist(), *(v for v in (reference, limit) if v is not None)]
    for extra in (s.estimated, s.low, s.high):
        if extra is not None:
            span += extra[np.isfinite(extra)].tolist()
    lo, hi = min(span), max(span)
    pad = (hi - lo) * 0.12 or 0.05
    ticks = nice_ticks(lo - pad, hi + pad, 5)
    ymin, ymax = ticks[0], ticks[-1]
    step_y = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    def ypos(v: float) -> float:
        return y1 - (v - ymin) / (ymax - ymin) * (y1 - y0)

    attrs = {"data-metric": s.metric}
    if limit is not None:
        attrs["data-limit"] = f"{limit:.6g}"
    title = (
        f"{name} by batch: estimated before the labels arrive, realised once they do"
        if s.has_estimate
        else f"{name} by batch once its labels arrived"
    )
    chart = Chart(width, height, kind="performance", title=title, attrs=attrs)
    # Pending labels: a grey band per run of pending batches, labelled once.
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(s.pending).tolist():
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    for a, b in runs:
        bx, bw = x0 + step_x * a, step_x * (b - a + 1)
        chart.rect(bx, y0, bw, y1 - y0, "#eef0f3", 'data-role="pending"')
        if bw >= 96:
            chart.text(
                bx + bw / 2,
                y0 + 16,
                "labels pending",
                anchor="middle",
                size=11,
                cls="nbops-muted",
                extra='data-role="pending-label"',
            )
        else:
            chart.text(
                bx + bw / 2 + 4,
                y0 + 8,
                "labels pending",
                anchor="end",
                size=11,
                cls="nbops-muted",
                rotate=-90,
                extra='data-role="pending-label"',
            )
    for t in ticks:
        chart.line(x0, ypos(t), x1, ypos(t))
        chart.text(x0 - 8, ypos(t) + 4, tick_text(t, step_y), anchor="end", cls="nbops-muted")
    chart.line(x0, y1, x1, y1, stroke="#9aa5b1")
    chart.text(
        x0 - 56,
        (y0 + y1) / 2,
        f"{name} (labelled rows)",
        anchor="middle",
        rotate=-90,
        weight="600",
        cls="nbops-axis-label",
        extra='data-role="y-label"',
    )
    every = max(1, math.ceil(n / 36))
    for i, batch in enumerate(s.batches):
        if i % every == 0:
            chart.text(xpos(i) + 4, y1 + 14, batch, anchor="end", size=11, rotate=-50, cls="nbops-muted")
    if reference is not None:
        chart.line(
            x0,
            ypos(reference),
            x1,
            ypos(reference),
            stroke=REFERENCE,
            width=1.2,
            dash="6 4",
            extra='data-role="reference"',
        )
    if limit is not None:
        chart.line(x0, ypos(limit), x1, ypos(limit), stroke=BAD, width=1.5, dash="3 3", extra='data-role="alert-level"')
    if s.estimated is not None and s.has_estimate:
        if s.low is not None and s.high is not None:
            band = [i for i in range(n) if math.isfinite(s.low[i]) and math.isfinite(s.high[i])]
            outline = [(xpos(i), ypos(float(s.high[i]))) for i in band] + [
                (xpos(i), ypos(float(s.low[i]))) for i in reversed(band)
            ]
            if len(band) > 1:
                shape = " ".join(f"{px:.1f},{py:.1f}" for px, py in outline)
                chart.add(f'<polygon fill="{ESTIMATE_BAND}" stroke="none" data-role="estimate-band" points="{shape}"/>')
        est = [(xpos(i), ypos(float(v))) for i, v in enumerate(s.estimated) if math.isfinite(v)]
        chart.add(
            '<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="6 3" data-role="estimate" '
            'points="{}"/>'.format(ESTIMATE, " ".join(f"{px:.1f},{py:.1f}" for px, py in est))
        )
        for px, py in est:
            chart.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{ESTIMATE}"/>')

    def estimate_text(i: int) -> list[str]:
        if s.estimated is None or not math.isfinite(s.estimated[i]):
            return []
        band = (
            f" (band {s.low[i]:.3f}-{s.high[i]:.3f})"
            if s.low is not None and s.high is not None and math.isfinite(s.low[i])
            else ""
        )
        return [f"estimated {s.estimated[i]:.3f}{band}"]

    points = [(xpos(i), ypos(float(v))) for i, v in enumerate(s.values) if math.isfinite(v)]
    if len(points) > 1:
        chart.add(
            '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                LINE, " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            )
        )
    for i, v in enumerate(s.values):
        if not math.isfinite(v):
            continue
        px, py = xpos(i), ypos(float(v))
        bad = s.breached(float(v))
        chart.add(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{5 if bad else 4}" fill="{BAD if bad else LINE}" stroke="#ffffff" '
            'stroke-width="1.5"/>'
        )
        state = (
            (f"past the alert level ({limit:.3f})" if bad else f"within the alert level ({limit:.3f})")
            if limit is not None
            else ""
        )
        rows = f"{int(s.rows[i]):,} labelled rows" if math.isfinite(s.rows[i]) else ""
        chart.tip(
            f'<circle class="nbops-hit" cx="{px:.1f}" cy="{py:.1f}" r="9"/>',
            [s.batches[i], f"{name} {v:.3f}", *(t for t in (state, rows) if t), *estimate_text(i)],
            px,
            py - 6,
            f'data-batch="{esc(s.batches[i])}" data-value="{v:.3f}"',
        )
    for i in np.flatnonzero(s.pending).tolist():
        chart.tip(
            f'<rect class="nbops-hit" x="{x0 + step_x * i:.1f}" y="{y0:.1f}" width="{step_x:.1f}" '
            f'height="{y1 - y0:.1f}"/>',
            [s.batches[i], "labels pending: no realised performance yet", *estimate_text(int(i))],
            xpos(int(i)),
            y0 + 40,
            f'data-batch="{esc(s.batches[i])}" data-value="labels pending"',
        )
    line = '<line x1="0" y1="6" x2="18" y2="6" stroke="{}" stroke-width="2"{}/>'
    items = [
        (
            line.format(LINE, "") + f'<circle cx="9" cy="6" r="3.5" fill="{LINE}"/>',
            f"{name} realised" if s.has_estimate else f"{name} per batch",
        )
    ]
    if s.has_estimate:
        items.append((line.format(ESTIMATE, ' stroke-dasharray="6 3"'), "estimated (no labels needed)"))
        if s.low is not None:
            items.append((f'<rect width="18" height="12" fill="{ESTIMATE_BAND}"/>', "estimate's band"))
    if reference is not None:
        items.append((line.format(REFERENCE, ' stroke-dasharray="6 4"'), f"test split {reference:.3f}"))
    if limit is not None:
        items.append(
            (
                line.format(BAD, ' stroke-dasharray="3 3"'),
                f"alert {'above' if s.lower_is_better else 'below'} {limit:.3f}",
            )
        )
    if runs:
        items.append(('<rect width="18" height="12" fill="#eef0f3" stroke="#ced4da"/>', "labels pending"))
    if s.has_estimate:  # realised, estimated and its band on the first row; the levels below
        chart.legend(items[:3], x0, 20)
        chart.legend(items[3:], x0, 40)
    else:
        chart.legend(items, x0, 20)
    return chart.render(standalone)


def distribution_svg(
    labels: Sequence[str], reference: np.ndarray, current: np.ndarray, *, feature: str, batch: str
) -> str:
    """Reference against one batch as grouped bars (share of rows per bin or level), each pair with
    both shares on hover."""
    width, height = 1000.0, 330.0
    longest = max(text_width(str(t), 11) for t in labels)
    rotate = longest > (1000 - 80) / max(len(labels), 1) - 6
    bottom = (longest * 0.72 + 28) if rotate else 36
    left, right, top = 64.0, 16.0, 46.0
    height = top + 230 + bottom
    x0, x1, y0, y1 = left, width - right, top, top + 230
    vmax = float(np.nanmax(np.concatenate([reference, current]))) if len(labels) else 1.0
    ticks = nice_ticks(0, max(vmax, 0.01), 5)
    step_y = ticks[1] - ticks[0]

    def ypos(v: float) -> float:
        return y1 - v / ticks[-1] * (y1 - y0)

    chart = Chart(
        width,
        height,
        kind="distribution",
        title=f"{feature}: training reference against {batch}",
        attrs={"data-feature": feature, "data-batch": batch},
    )
    chart.text(x0, 16, f"{feature}: training reference against {batch}", weight="600", size=13)
    for t in ticks:
        chart.line(x0, ypos(t), x1, ypos(t))
        chart.text(x0 - 8, ypos(t) + 4, tick_text(t, step_y, percent=True), anchor="end", cls="nbops-muted")
    chart.text(
        16,
        (y0 + y1) / 2,
        "share of rows",
        anchor="middle",
        rotate=-90,
        weight="600",
        cls="nbops-axis-label",
        extra='data-role="y-label"',
    )
    group = (x1 - x0) / max(len(labels), 1)
    bar = min(group * 0.38, 40)
    for i, (label, r, c) in enumerate(zip(labels, reference, current, strict=True)):
        gx = x0 + group * i + group / 2
        chart.rect(gx - bar, ypos(r), bar, y1 - ypos(r), "#7aa6d6")
        chart.rect(gx, ypos(c), bar, y1 - ypos(c), "#e07b39")
        if rotate:
            chart.text(gx + 4, y1 + 14, str(label), anchor="end", size=11, rotate=-40, cls="nbops-muted")
        else:
            chart.text(gx, y1 + 16, str(label), anchor="middle", size=11, cls="nbops-muted")
        chart.tip(
            f'<rect class="nbops-hit" x="{gx - group / 2:.1f}" y="{y0:.1f}" width="{group:.1f}" '
            f'height="{y1 - y0:.1f}"/>',
            [f"{feature}: {label}", f"reference {r:.1%}", f"{batch} {c:.1%}"],
            gx,
            min(ypos(r), ypos(c)),
            f'data-bin="{esc(label)}"',
        )
    chart.line(x0, y1, x1, y1, stroke="#9aa5b1")
    swatch = '<rect width="18" height="12" rx="2" fill="{}"/>'
    legend_w = sum(24 + text_width(t) + 18 for t in ("reference (training)", batch))
    chart.legend(
        [(swatch.format("#7aa6d6"), "reference (training)"), (swatch.format("#e07b39"), batch)], x1 - legend_w, 16
    )
    return chart.render()
