"""Small SVG charts that stay crisp at any width and show values on hover, without JavaScript.

A chart is an inline ``<svg>`` with a ``viewBox``: it scales to its container (never wider than its
natural width, so text never grows past its design size) and its text stays text. Every data mark
gets a hover target with a ``<title>`` (the browser's own tooltip, also read by screen readers) and a
label drawn on hover by CSS alone, so the same markup works in Voila, in an executed notebook's HTML
and in a static page. The hover targets and their labels are drawn last, above every mark, so a
label is never hidden behind the next bar or cell.

Every string that reaches the markup goes through :func:`esc`: feature names, batch ids and
categories come from the user's data.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Iterable, Sequence

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK, MUTED, GRID = "#1f2933", "#52606d", "#e4e7eb"
CSS = f"""
.nbops-chart {{ font-family: {FONT}; }}
.nbops-chart text {{ fill: {INK}; font-size: 12px; }}
.nbops-chart .nbops-muted {{ fill: {MUTED}; }}
.nbops-chart .nbops-tip {{ outline: none; }}
.nbops-chart .nbops-hit {{ fill: transparent; }}
.nbops-chart .nbops-tip:hover .nbops-hit, .nbops-chart .nbops-tip:focus .nbops-hit {{ \
stroke: {INK}; stroke-width: 1.5; }}
.nbops-chart .nbops-tip-label {{ visibility: hidden; pointer-events: none; }}
.nbops-chart .nbops-tip:hover .nbops-tip-label, .nbops-chart .nbops-tip:focus .nbops-tip-label {{ \
visibility: visible; }}
.nbops-chart .nbops-tip-label rect {{ fill: #ffffff; stroke: #9aa5b1; }}
.nbops-chart .nbops-tip-label text {{ font-size: 12px; }}
"""


def esc(value: object) -> str:
    """Text or attribute value, escaped for HTML and SVG."""
    return html.escape(str(value), quote=True)


def text_width(text: str, size: float = 12) -> float:
    """A generous estimate of the width of ``text`` in the sans-serif font (no font metrics here)."""
    return len(text) * size * 0.6


def wrap(text: str, width: int = 56) -> list[str]:
    """``text`` broken at word boundaries into lines of at most ``width`` characters."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [text]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 10))
    return ticks


def tick_text(value: float, step: float, percent: bool = False) -> str:
    """A tick value with as many decimals as the step needs."""
    if percent:
        decimals = max(0, -math.floor(math.log10(step * 100)) if step * 100 < 1 else 0)
        return f"{value * 100:.{decimals}f}%"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    if step < 1 and round(step * 10**decimals) % 1:
        decimals += 1
    return f"{value:,.{decimals}f}"


class Chart:
    """An SVG canvas in ``viewBox`` units: marks go to the body, hover targets and labels on top."""

    def __init__(
        self, width: float, height: float, *, kind: str, title: str, attrs: dict[str, str] | None = None
    ) -> None:
        self.width, self.height = float(width), float(height)
        self.kind, self.title = kind, title
        self.attrs = attrs or {}
        self.body: list[str] = []
        self.tips: list[str] = []

    def add(self, markup: str) -> None:
        self.body.append(markup)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> None:
        self.add(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}" {extra}/>'
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        stroke: str = GRID,
        width: float = 1,
        dash: str | None = None,
        extra: str = "",
    ) -> None:
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
            f'stroke-width="{width}"{dashed} {extra}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        anchor: str = "start",
        size: float = 12,
        weight: str = "normal",
        rotate: float = 0,
        cls: str = "",
        fill: str | None = None,
        extra: str = "",
    ) -> None:
        transform = f' transform="rotate({rotate:g} {x:.1f} {y:.1f})"' if rotate else ""
        klass = f' class="{cls}"' if cls else ""
        colour = f' style="fill:{fill}"' if fill else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size:g}" '
            f'font-weight="{weight}"{transform}{klass}{colour} {extra}>{esc(text)}</text>'
        )

    def tip(self, hit: str, lines: Sequence[str], x: float, y: float, extra: str = "") -> None:
        """A hover target (``hit``: SVG markup with class ``nbops-hit``) whose label shows ``lines``
        near (x, y): above it when there is room, else below, always inside the canvas."""
        shown = [part for line in lines for part in wrap(line)]
        w = max([text_width(shown[0])] + [text_width(t) * 0.9 for t in shown[1:]]) + 16  # the first line is bold
        h = 18 * len(shown) + 8
        left = min(max(x - w / 2, 2.0), self.width - w - 2)
        top = y - h - 10 if y - h - 10 >= 2 else min(y + 12, self.height - h - 2)
        bold = ' font-weight="600"'
        spans = "".join(
            f'<tspan x="{left + 8:.1f}" y="{top + 18 * (i + 1):.1f}"{bold if i == 0 else ""}>{esc(t)}</tspan>'
            for i, t in enumerate(shown)
        )
        title = esc("\n".join(lines))
        self.tips.append(
            f'<g class="nbops-tip" tabindex="0" {extra}><title>{title}</title>{hit}'
            f'<g class="nbops-tip-label"><rect x="{left:.1f}" y="{top:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'rx="4"/><text>{spans}</text></g></g>'
        )

    def legend(self, items: Iterable[tuple[str, str]], x: float, y: float) -> float:
        """Swatches in a row from (x, y): (svg swatch markup at 0,0 spanning 18x12, label). Returns the end x."""
        for swatch, label in items:
            self.add(f'<g transform="translate({x:.1f} {y - 10:.1f})">{swatch}</g>')
            self.text(x + 24, y, label, cls="nbops-muted")
            x += 24 + text_width(label) + 18
        return x

    def render(self, standalone: bool = False) -> str:
        """The chart as markup: inline (scales to its container, at most its natural width) or as a
        standalone .svg file (its natural size)."""
        attrs = "".join(f' {k}="{esc(v)}"' for k, v in self.attrs.items())
        size = (
            f'width="{self.width:g}" height="{self.height:g}"'
            if standalone
            else f'width="100%" style="max-width:{self.width:g}px;height:auto;display:block"'
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="nbops-chart nbops-{self.kind}" viewBox="0 0 '
            f'{self.width:g} {self.height:g}" {size} role="img" aria-label="{esc(self.title)}"{attrs}>'
            f"<title>{esc(self.title)}</title><style>{CSS}</style>" + "".join(self.body) + "".join(self.tips) + "</svg>"
        )


def message_chart(kind: str, message: str, width: float = 1000, height: float = 120, standalone: bool = False) -> str:
    """A chart-sized box that says why there is no chart yet."""
    chart = Chart(width, height, kind=kind, title=message)
    chart.rect(0.5, 0.5, width - 1, height - 1, "#f8f9fa", f'stroke="{GRID}" rx="6"')
    chart.text(width / 2, height / 2 + 4, message, anchor="middle", size=14, cls="nbops-muted")
    return chart.render(standalone)


def hbar_chart(
    names: Sequence[str],
    values: Sequence[float],
    *,
    kind: str,
    title: str,
    value_label: str,
    fmt: str = "{:.3f}",
    colour: str = "#3b7dd8",
) -> str:
    """Horizontal bars, largest first as given, each with its value on hover and at the bar's end."""
    label_w = max([text_width(n) for n in names] + [60]) + 16
    row = 24
    width = 1000.0
    top, bottom = 30, 40
    height = top + row * len(names) + bottom
    chart = Chart(width, height, kind=kind, title=title)
    right = 80
    x0, x1 = label_w, width - right
    vmax = max([v for v in values if math.isfinite(v)] + [1e-12])
    ticks = nice_ticks(0, vmax, 5)
    scale = (x1 - x0) / ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else ticks[-1]
    for t in ticks:
        x = x0 + t * scale
        chart.line(x, top - 4, x, top + row * len(names))
        chart.text(x, top + row * len(names) + 16, tick_text(t, step), anchor="middle", cls="nbops-muted")
    chart.text((x0 + x1) / 2, height - 6, value_label, anchor="middle", cls="nbops-muted", extra='data-role="x-label"')
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        y = top + i * row
        w = max(value, 0) * scale
        chart.text(x0 - 8, y + row / 2 + 4, name, anchor="end")
        chart.rect(x0, y + 4, w, row - 8, colour, 'rx="2"')
        chart.text(x0 + w + 6, y + row / 2 + 4, fmt.format(value), cls="nbops-muted")
        chart.tip(
            f'<rect class="nbops-hit" x="{x0 - label_w + 4:.1f}" y="{y:.1f}" width="{x1 - x0 + label_w - 4:.1f}" '
            f'height="{row:.1f}"/>',
            [name, f"{value_label}: {fmt.format(value)}"],
            x0 + w,
            y,
            f'data-value="{esc(fmt.format(value))}"',
        )
    return chart.render()
