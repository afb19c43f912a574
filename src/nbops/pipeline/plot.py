"""A picture of the pipeline: every task of pipeline.yaml, its products, and its state.

Drawn here as SVG, with no library and no network (``ploomber plot`` loads d3 from a CDN and is blank
offline). Each task is coloured by what ``nbops why`` says of it: up to date, will run (and why),
failed in the last build, or never built. ``nbops plot`` writes the picture; every build writes it to
``<root>/reports/pipeline.svg`` and ``pipeline.html``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops.config.spec import TaskSpec
from nbops.pipeline import lineage

# state -> (fill, border, label)
STATES: dict[str, tuple[str, str, str]] = {
    "up to date": ("#e8f5e9", "#2e7d32", "up to date"),
    "will run": ("#fff8e1", "#f59f00", "will run"),
    "failed": ("#ffebee", "#c62828", "failed in the last build"),
    "never built": ("#eef2f7", "#607d8b", "never built"),
}
BOX_WIDTH, PRODUCTS_WIDTH, COLUMN_GAP, ROW_GAP, MARGIN, LEFT_LANE = 250, 250, 40, 38, 24, 70
LINE = 15  # px per text line
BOX_HEIGHT = 3 * LINE + 22


@dataclass
class TaskState:
    """One task as the picture shows it."""

    name: str
    state: str
    reasons: list[str]
    products: dict[str, str]
    upstream: list[str]
    source: str
    identity: str
    error: str | None = None
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    height: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def task_states(
    tasks: list[TaskSpec], root: Path, project: Path, failure: dict[str, Any] | None = None
) -> list[TaskState]:
    """Each task's state, from the same run identities and records as ``nbops why``.

    Args:
        failure: the last build's failure record (``reports/builds.jsonl``), if it failed.
    """
    pending = lineage.changes(tasks, root)
    ids = lineage.identities(tasks)
    failed_task = (failure or {}).get("task")
    out = []
    for t in tasks:
        reasons = pending[t.name]
        if not reasons:
            state = "up to date"
        elif t.name == failed_task:
            state = "failed"
        elif reasons == ["never built"]:
            state = "never built"
        else:
            state = "will run"
        out.append(
            TaskState(
                name=t.name,
                state=state,
                reasons=list(reasons),
                products={k: _relative(v, root) for k, v in t.product.items()},
                upstream=list(t.upstream),
                source=_relative(str(t.source), project),
                identity=ids[t.name]["identity"],
                error=str((failure or {}).get("message") or "").splitlines()[0]
                if state == "failed" and failure
                else None,
            )
        )
    return out


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _layout(states: list[TaskState]) -> tuple[float, float]:
    """Rows by longest path from the sources (a task sits below everything it needs), side by side
    within a row in the order pipeline.yaml declares them; each task's products are listed to the
    right of its box. Returns the drawing's width and height."""
    by_name = {s.name: s for s in states}
    memo: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in memo:
            return memo[name]
        ups = [u for u in by_name[name].upstream if u in by_name and u not in seen]
        memo[name] = 0 if not ups else 1 + max(depth(u, seen | {name}) for u in ups)
        return memo[name]

    rows: dict[int, list[TaskState]] = {}
    for s in states:
        s.layer = depth(s.name)
        s.height = BOX_HEIGHT
        rows.setdefault(s.layer, []).append(s)
    y = MARGIN + 40.0
    widest = 1
    for layer in sorted(rows):
        row = rows[layer]
        widest = max(widest, len(row))
        row_height = max(max(BOX_HEIGHT, LINE * len(s.products) + 8) for s in row)
        for i, s in enumerate(row):
            s.x = MARGIN + LEFT_LANE + i * (BOX_WIDTH + PRODUCTS_WIDTH + COLUMN_GAP)
            s.y = y
        y += row_height + ROW_GAP
    width = MARGIN * 2 + LEFT_LANE + widest * (BOX_WIDTH + PRODUCTS_WIDTH) + (widest - 1) * COLUMN_GAP
    return width, y - ROW_GAP + MARGIN


def _implied(states: list[TaskState]) -> set[tuple[str, str]]:
    """Dependencies already implied through another path (drawn faintly: the picture stays readable
    and still shows every declared dependency)."""
    by_name = {s.name: s for s in states}

    def reaches(start: str, goal: str, skip: tuple[str, str]) -> bool:
        stack, seen = [start], set()
        while stack:
            current = stack.pop()
            for up in by_name[current].upstream:
                if (up, current) == skip or up not in by_name or up in seen:
                    continue
                if up == goal:
                    return True
                seen.add(up)
                stack.append(up)
        return False

    return {(u, s.name) for s in states for u in s.upstream if u in by_name and reaches(s.name, u, (u, s.name))}


def _clip(text: str, limit: int) -> str:
    """Shorten at a word boundary, marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


def render_svg(states: list[TaskState], title: str = "pipeline.yaml") -> str:
    """The picture as a standalone SVG document (hover a task for its reasons and products)."""
    width, height = _layout(states)
    by_name = {s.name: s for s in states}
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbops-dag" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" '
        f'role="img" aria-label="{esc(title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    x: float = MARGIN
    for fill, border, label in STATES.values():
        parts.append(
            f'<rect x="{x}" y="{MARGIN}" width="14" height="14" rx="3" fill="{fill}" stroke="{border}" '
            'stroke-width="2"/>'
        )
        parts.append(f'<text x="{x + 20}" y="{MARGIN + 12}" font-size="13" fill="#37474f">{esc(label)}</text>')
        x += 30 + 7.2 * len(label)
    implied = _implied(states)
    lane = 0
    for s in states:
        for up in s.upstream:
            if up not in by_name:
                continue
            u = by_name[up]
            attrs = (
                f'class="nbops-edge" data-from="{esc(up)}" data-to="{esc(s.name)}" fill="none" marker-end="url(#arrow)"'
            )
            if (up, s.name) in implied:
                # along the left of the boxes, each in its own lane
                lane += 1
                bulge = max(8.0, LEFT_LANE - 6 - 5 * (lane % 12))
                x1, y1, x2, y2 = u.x, u.y + BOX_HEIGHT / 2, s.x - 2, s.y + BOX_HEIGHT / 2
                parts.append(
                    f'<path {attrs} d="M{x1:.1f},{y1:.1f} C{x1 - bulge:.1f},{y1:.1f} {x2 - bulge:.1f},{y2:.1f} '
                    f'{x2:.1f},{y2:.1f}" stroke="#cfd8dc" stroke-width="1.2" stroke-dasharray="4 3"/>'
                )
            else:
                x1, y1, x2, y2 = u.x + BOX_WIDTH / 2, u.y + BOX_HEIGHT, s.x + BOX_WIDTH / 2, s.y - 2
                mid = (y1 + y2) / 2
                parts.append(
                    f'<path {attrs} d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}" '
                    'stroke="#78909c" stroke-width="1.8"/>'
                )
    for s in states:
        fill, border, label = STATES[s.state]
        why = "; ".join(s.reasons) if s.reasons else "nothing changed since the last build"
        tooltip = [f"{s.name} ({s.source}): {label}", f"why: {why}"]
        if s.error:
            tooltip.append(f"error: {s.error}")
        tooltip += [f"{k}: {v}" for k, v in s.products.items()]
        caption = (
            label
            if s.state in ("up to date", "never built")
            else (f"error: {s.error}" if s.error else f"{label}: {why}")
        )
        dash = ' stroke-dasharray="5 3"' if s.state == "never built" else ""
        parts.append(
            f'<g class="nbops-task" data-task="{esc(s.name)}" data-state="{esc(s.state)}" '
            f'transform="translate({s.x:.1f},{s.y:.1f})">'
        )
        parts.append(f"<title>{esc(chr(10).join(tooltip))}</title>")
        parts.append(
            f'<rect width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="8" fill="{fill}" stroke="{border}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="12" y="22" font-size="15" font-weight="600" fill="#263238">{esc(s.name)}</text>')
        parts.append(
            f'<text x="12" y="{22 + LINE + 3}" font-size="11.5" fill="#37474f" '
            f'class="nbops-caption">{esc(_clip(caption, 40))}</text>'
        )
        parts.append(
            f'<text x="12" y="{22 + 2 * LINE + 6}" font-size="10.5" fill="#78909c">{esc(_clip(s.source, 42))}</text>'
        )
        for i, (key, path) in enumerate(s.products.items()):
            parts.append(
                f'<text x="{BOX_WIDTH + 14}" y="{11 + i * LINE}" font-size="11" fill="#455a64"><tspan '
                f'font-weight="600">{esc(key)}</tspan> {esc(_clip(path, 40))}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(states: list[TaskState], svg: str, title: str) -> str:
    """A page for the picture and, below it, each task's state and reasons as text."""
    esc = html.escape
    rows = "".join(
        f'<tr data-task="{esc(s.name)}"><td><b>{esc(s.name)}</b></td><td><span class="state" '
        f'style="border-color:{STATES[s.state][1]};background:{STATES[s.state][0]}">{esc(s.state)}</span></td>'
        f"<td>{esc('; '.join(s.reasons) or 'nothing changed since the last build')}"
        f"{('<br><i>error: ' + esc(s.error) + '</i>') if s.error else ''}</td>"
        f"<td><code>{esc(s.identity)}</code></td></tr>"
        for s in states
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title>"
        "<style>body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#263238}"
        "table{border-collapse:collapse;margin-top:18px;max-width:1100px}td,th{border-bottom:1px solid "
        "#e0e0e0;padding:6px 10px;text-align:left;vertical-align:top;overflow-wrap:break-word}"
        ".state{border:2px solid;border-radius:10px;padding:1px "
        "8px;white-space:nowrap}.dag{overflow-x:auto}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>Each task of <code>pipeline.yaml</code> with its products, coloured by what the next "
        "build will do (<code>nbops why TASK</code> says the same). Hover a task for its reasons and product "
        "paths.</p>"
        f"<div class='dag'>{svg}</div>"
        "<table><thead><tr><th>task</th><th>state</th><th>why</th><th>run "
        f"identity</th></tr></thead><tbody>{rows}</tbody></table>"
        "</body></html>\n"
    )


def write_pipeline_picture(
    tasks: list[TaskSpec], root: Path, project: Path, out_dir: Path, failure: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``pipeline.svg`` and ``pipeline.html`` into ``out_dir``; returns both paths."""
    from nbops.data.io import write_text

    states = task_states(tasks, root, project, failure)
    svg = render_svg(states)
    out_dir.mkdir(parents=True, exist_ok=True)
    svg_path, html_path = out_dir / "pipeline.svg", out_dir / "pipeline.html"
    write_text('<?xml version="1.0" encoding="utf-8"?>\n' + svg + "\n", svg_path)
    write_text(render_html(states, svg, f"Pipeline of {project.name}"), html_path)
    return svg_path, html_path
