"""Charts of runs as inline SVG (nbops.monitoring.svg): a parameter against a metric, and learning
curves overlaid. No JavaScript and no network: the same markup works in Voila and in a static page,
with each point's values on hover. Every string from the runs (ids, names, values) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nbops.experiments.diff import format_number
from nbops.experiments.index import RunRecord
from nbops.modeling.metrics import metric_direction
from nbops.monitoring.svg import Chart, esc, message_chart, nice_ticks, tick_text

# One colour per run in an overlay (repeating past ten runs).
PALETTE = (
    "#2b6cb0",
    "#e07b39",
    "#2f9e44",
    "#9c36b5",
    "#c92a2a",
    "#0b7285",
    "#5c940d",
    "#d6336c",
    "#495057",
    "#e67700",
)


@dataclass(frozen=True)
class Point:
    """One run in a scatter: its parameter value, its metric value and who it is."""

    x: float
    y: float
    identity: str
    label: str  # the run's task (train, tune #3)


def scatter_svg(points: Sequence[Point], x_name: str, y_name: str) -> str:
    """``y_name`` against ``x_name``, one point per run; the best point (by the metric's direction)
    ringed. Hover a point for its run and values."""
    if not points:
        return message_chart("scatter", f"No run has both {x_name} and {y_name}")
    width, height = 1000.0, 380.0
    left, right, top, bottom = 90.0, 24.0, 40.0, 56.0
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    xs, ys = [p.x for p in points], [p.y for p in points]

    def axis(values: list[float]) -> list[float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or (abs(lo) * 0.1 or 0.1)
        return nice_ticks(lo - pad, hi + pad, 6)

    xt, yt = axis(xs), axis(ys)
    xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
    ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0

    def xpos(v: float) -> float:
        return x0 + (v - xt[0]) / (xt[-1] - xt[0]) * (x1 - x0)

    def ypos(v: float) -> float:
        return y1 - (v - yt[0]) / (yt[-1] - yt[0]) * (y1 - y0)

    chart = Chart(
        width,
        height,
        kind="scatter",
        title=f"{y_name} against {x_name}",
        attrs={"data-x": x_name, "data-y": y_name, "data-points": str(len(points))},
    )
    chart.text(x0, 18, f"{y_name} against {x_name}, one point per run", weight="600", size=13)
    for t in yt:
        chart.line(x0, ypos(t), x1, ypos(t))
        chart.text(x0 - 8, ypos(t) + 4, tick_text(t, ystep), anchor="end", cls="nbops-muted")
    for t in xt:
        chart.line(xpos(t), y0, xpos(t), y1)
        chart.text(xpos(t), y1 + 16, tick_text(t, xstep), anchor="middle", cls="nbops-muted")
    chart.line(x0, y1, x1, y1, stroke="#9aa5b1")
    chart.text((x0 + x1) / 2, height - 8, x_name, anchor="middle", weight="600", extra='data-role="x-label"')
    chart.text(20, (y0 + y1) / 2, y_name, anchor="middle", rotate=-90, weight="600", extra='data-role="y-label"')
    higher = metric_direction(y_name)
    best = None
    if higher is not None:
        best = max(points, key=lambda p: p.y if higher else -p.y)
    for p in points:
        px, py = xpos(p.x), ypos(p.y)
        if p is best:
            chart.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="9" fill="none" stroke="#2f9e44" stroke-width="2"/>')
        chart.add(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="#2b6cb0" fill-opacity="0.8" stroke="#ffffff" '
            'stroke-width="1" data-role="point"/>'
        )
        lines = [f"{p.label} {p.identity}", f"{x_name} {format_number(p.x)}", f"{y_name} {format_number(p.y)}"]
        if p is best:
            lines.append(f"best {y_name} ({'higher' if higher else 'lower'} is better)")
        chart.tip(
            f'<circle class="nbops-hit" cx="{px:.1f}" cy="{py:.1f}" r="10"/>',
            lines,
            px,
            py - 6,
            f'data-run="{esc(p.identity)}"',
        )
    return chart.render()


def curves_svg(runs: Sequence[RunRecord]) -> str:
    """The learning curves of ``runs`` overlaid: validation solid, training dashed, one colour per
    run, each run's best iteration marked. Hover a curve's end for its run and values."""
    drawn = [r for r in runs if r.curves and r.curves.get("valid")]
    if not drawn:
        return message_chart("curves", "Choose runs with learning curves (train runs) to overlay them")
    metrics = sorted({str(r.curves.get("metric", "")) for r in drawn if r.curves})
    metric = metrics[0] if len(metrics) == 1 else " / ".join(metrics)
    width, height = 1000.0, 380.0
    left, right, top, bottom = 80.0, 24.0, 48.0, 48.0
    legend_rows = math.ceil(len(drawn) / 3)
    height += 18 * legend_rows
    top += 18 * legend_rows
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    values = [v for r in drawn for split in ("train", "valid") for v in (r.curves or {}).get(split, []) if _finite(v)]
    rounds = max(len((r.curves or {}).get("valid", [])) for r in drawn)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    yt = nice_ticks(lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05, 5)
    xt = nice_ticks(0, max(rounds, 1), 6)
    ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0

    def xpos(i: float) -> float:
        return x0 + i / xt[-1] * (x1 - x0)

    def ypos(v: float) -> float:
        return y1 - (v - yt[0]) / (yt[-1] - yt[0]) * (y1 - y0)

    chart = Chart(
        width, height, kind="curves", title=f"Learning curves ({metric})", attrs={"data-runs": str(len(drawn))}
    )
    chart.text(
        x0, 18, f"Learning curves: {metric} per boosting round (validation solid, training dashed)", weight="600"
    )
    for t in yt:
        chart.line(x0, ypos(t), x1, ypos(t))
        chart.text(x0 - 8, ypos(t) + 4, tick_text(t, ystep), anchor="end", cls="nbops-muted")
    for t in xt:
        chart.text(xpos(t), y1 + 16, f"{t:g}", anchor="middle", cls="nbops-muted")
    chart.line(x0, y1, x1, y1, stroke="#9aa5b1")
    chart.text((x0 + x1) / 2, height - 8, "boosting round", anchor="middle", weight="600", extra='data-role="x-label"')
    chart.text(18, (y0 + y1) / 2, metric, anchor="middle", rotate=-90, weight="600", extra='data-role="y-label"')
    legend = []
    for n, run in enumerate(drawn):
        colour = PALETTE[n % len(PALETTE)]
        curves = run.curves or {}
        for split, dash, role in (("train", "5 4", "train-curve"), ("valid", None, "valid-curve")):
            series = [float(v) for v in curves.get(split, [])]
            pts = [(xpos(i + 1), ypos(v)) for i, v in enumerate(series) if _finite(v)]
            if len(pts) < 1:
                continue
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            chart.add(
                f'<polyline fill="none" stroke="{colour}" stroke-width="{1.4 if dash else 2.2}"{dashed} '
                f'stroke-opacity="{0.6 if dash else 1}" data-role="{role}" data-run="{esc(run.identity)}" points="'
                + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
                + '"/>'
            )
        valid = [float(v) for v in curves.get("valid", [])]
        best = curves.get("best_iteration")
        if isinstance(best, int) and 0 < best <= len(valid) and _finite(valid[best - 1]):
            bx, by = xpos(best), ypos(valid[best - 1])
            chart.add(f'<circle cx="{bx:.1f}" cy="{by:.1f}" r="4.5" fill="{colour}" stroke="#ffffff"/>')
            chart.tip(
                f'<circle class="nbops-hit" cx="{bx:.1f}" cy="{by:.1f}" r="10"/>',
                [
                    f"{run.label} {run.identity}",
                    f"best iteration {best}: validation {metric} {valid[best - 1]:.4f}",
                    f"{len(valid)} rounds trained",
                ],
                bx,
                by - 6,
                f'data-run="{esc(run.identity)}"',
            )
        name = f"{run.label} {run.identity[:8]}"
        legend.append((colour, name))
    per_row = 3
    for row in range(legend_rows):
        items = legend[row * per_row : (row + 1) * per_row]
        chart.legend(
            [(f'<line x1="0" y1="6" x2="18" y2="6" stroke="{c}" stroke-width="3"/>', label) for c, label in items],
            x0,
            40 + 18 * row,
        )
    return chart.render()


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))
