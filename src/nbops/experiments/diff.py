"""What differs between two runs, two builds or two model versions, and only that.

Two selections (:func:`nbops.experiments.index.select`) are paired task by task. For each pair the
diff names the parameters that changed (old -> new), the code and data changes its run identities'
components show (which notebook cell, which library file, the feature module, the data fingerprint,
the environment), the inputs that changed, and the metric deltas, each marked better or worse by the
metric's direction (nbops.modeling.metrics), overall and by segment. When a pair read different
inputs and the index holds the runs that made them, those runs are compared too: the diff of two
evaluate runs shows the training parameter that made their models differ.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbops.experiments.index import DATA_PARAMS, RunRecord, Selection
from nbops.modeling.metrics import HIGHER_IS_BETTER, metric_direction

# Differences smaller than this are rounding, not change.
EPSILON = 1e-12
MISSING = "(not set)"
SEGMENT_KEYS = ("segment", "level")


@dataclass(frozen=True)
class ValueChange:
    """A parameter or output whose value differs (``MISSING`` where one side has none)."""

    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class MetricDelta:
    """A metric of both runs (or of one of them), the change, and whether it is for the better."""

    name: str
    old: float | None
    new: float | None
    higher_is_better: bool | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def verdict(self) -> str:
        """``better``, ``worse``, or '' (no direction, or one side missing)."""
        d = self.delta
        if d is None or self.higher_is_better is None or abs(d) <= EPSILON:
            return ""
        return "better" if (d > 0) == self.higher_is_better else "worse"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "delta": self.delta,
            "higher_is_better": self.higher_is_better,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class SegmentDelta:
    """One segment level's metrics in both runs."""

    segment: str
    level: str
    rows: tuple[float | None, float | None]
    metrics: list[MetricDelta]

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "level": self.level,
            "rows": list(self.rows),
            "metrics": [m.to_dict() for m in self.metrics],
        }


@dataclass(frozen=True)
class TaskDiff:
    """What differs between run ``a`` and run ``b`` of one task."""

    task: str
    a: RunRecord
    b: RunRecord
    params: list[ValueChange] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    outputs: list[ValueChange] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    segments: list[SegmentDelta] = field(default_factory=list)
    segment_metric: str | None = None  # the metric the text shows per segment
    via: str | None = None  # the task whose inputs led here, when this pair was followed upstream

    @property
    def same(self) -> bool:
        """Nothing differs: same identity, same outputs and metrics."""
        return not (
            self.params
            or self.code
            or self.data
            or self.inputs
            or self.environment
            or self.outputs
            or self.metrics
            or self.segments
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "a": {"identity": self.a.identity, "build_id": self.a.build_id, "status": self.a.status},
            "b": {"identity": self.b.identity, "build_id": self.b.build_id, "status": self.b.status},
            "via": self.via,
            "params": [{"name": c.name, "old": c.old, "new": c.new} for c in self.params],
            "code": self.code,
            "data": self.data,
            "inputs": self.inputs,
            "environment": self.environment,
            "outputs": [{"name": c.name, "old": c.old, "new": c.new} for c in self.outputs],
            "metrics": [m.to_dict() for m in self.metrics],
            "segment_metric": self.segment_metric,
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class RunDiff:
    """Two selections compared task by task."""

    a: Selection
    b: Selection
    tasks: list[TaskDiff]
    only_a: list[str]
    only_b: list[str]

    @property
    def changed(self) -> list[TaskDiff]:
        return [t for t in self.tasks if not t.same]

    @property
    def unchanged(self) -> list[str]:
        return [t.task for t in self.tasks if t.same]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": {"name": self.a.name, "kind": self.a.kind, "description": self.a.description},
            "b": {"name": self.b.name, "kind": self.b.kind, "description": self.b.description},
            "tasks": [t.to_dict() for t in self.changed],
            "unchanged": self.unchanged,
            "only_a": self.only_a,
            "only_b": self.only_b,
        }


def diff_selections(a: Selection, b: Selection, runs: Sequence[RunRecord] = ()) -> RunDiff:
    """Compare two selections task by task; two single runs are compared whatever their tasks.

    ``runs`` (the index) lets a pair whose inputs differ bring in the pair of runs that made them.
    """
    if len(a.runs) == 1 and len(b.runs) == 1:
        pairs = [(next(iter(a.runs.values())), next(iter(b.runs.values())), None)]
        only_a: list[str] = []
        only_b: list[str] = []
    else:
        pairs = [(a.runs[t], b.runs[t], None) for t in a.runs if t in b.runs]
        only_a = [t for t in a.runs if t not in b.runs]
        only_b = [t for t in b.runs if t not in a.runs]
    by_identity: dict[str, RunRecord] = {}
    for r in sorted(runs, key=lambda r: r.when):
        if r.status == "ok":
            by_identity[r.identity] = r
    out: list[TaskDiff] = []
    seen: set[tuple[str, str]] = set()
    queue: list[tuple[RunRecord, RunRecord, str | None]] = list(pairs)
    while queue:
        ra, rb, via = queue.pop(0)
        if (ra.identity, rb.identity) in seen:
            continue
        seen.add((ra.identity, rb.identity))
        out.append(diff_runs(ra, rb, via=via))
        for task, ident_a in ra.upstream().items():
            ident_b = rb.upstream().get(task)
            if ident_b is None or ident_a == ident_b or (ident_a, ident_b) in seen:
                continue
            if ident_a in by_identity and ident_b in by_identity:
                queue.append((by_identity[ident_a], by_identity[ident_b], ra.label))
    # Runs in the order they ran (upstream first), the named pairs before those followed upstream.
    out.sort(key=lambda d: (d.a.when, d.b.when))
    return RunDiff(a, b, out, only_a, only_b)


def diff_runs(a: RunRecord, b: RunRecord, via: str | None = None) -> TaskDiff:
    """What differs between two runs (usually of one task)."""
    params, data = [], []
    for key in sorted(set(a.params) | set(b.params)):
        old, new = a.params.get(key, MISSING), b.params.get(key, MISSING)
        if _same(old, new):
            continue
        if key in DATA_PARAMS:
            data.append(f"parameter '{key}': {_short(old)} -> {_short(new)}")
        else:
            params.append(ValueChange(key, old, new))
    if a.data_fingerprint != b.data_fingerprint and (a.data_fingerprint or b.data_fingerprint):
        data.insert(0, f"data fingerprint {_digits(a.data_fingerprint)} -> {_digits(b.data_fingerprint)}")
    ca, cb = a.components, b.components
    code: list[str] = []
    if ca.get("code") != cb.get("code") and (ca.get("code") or cb.get("code")):
        code.append(_cell_change(b.source or a.source or a.task, a.cells, b.cells))
    files = sorted(
        f for f in set(a.library_files) | set(b.library_files) if a.library_files.get(f) != b.library_files.get(f)
    )
    if files:
        code.append(f"library code changed: {', '.join(f'src/nbops/{f}' for f in files)}")
    elif ca.get("library") != cb.get("library") and ca.get("library") and cb.get("library"):
        code.append("library code changed")
    pa, pb = ca.get("project_code") or {}, cb.get("project_code") or {}
    changed_code = sorted(f for f in set(pa) | set(pb) if pa.get(f) != pb.get(f))
    if changed_code:
        code.append(f"feature code changed: {', '.join(changed_code)}")
    if ca.get("options") != cb.get("options") and ca.get("options") and cb.get("options"):
        code.append("the task's settings in pipeline.yaml changed")
    if ca.get("products") != cb.get("products") and ca.get("products") and cb.get("products"):
        code.append("product paths changed")
    environment = []
    if a.lock_hash != b.lock_hash:
        environment.append(f"requirements.lock {_digits(a.lock_hash)} -> {_digits(b.lock_hash)}")
    if ca.get("nbops") != cb.get("nbops"):
        environment.append(f"nbops {ca.get('nbops') or '?'} -> {cb.get('nbops') or '?'}")
    if (a.git_commit, a.git_dirty) != (b.git_commit, b.git_dirty) and (a.git_commit or b.git_commit):
        environment.append(f"git commit {_commit(a)} -> {_commit(b)}")
    inputs = []
    ua, ub = a.upstream(), b.upstream()
    for task in sorted(set(ua) | set(ub)):
        if ua.get(task) != ub.get(task):
            inputs.append(f"input from '{task}' changed: run {_digits(ua.get(task))} -> {_digits(ub.get(task))}")
    outputs = []
    if a.status != b.status:
        outputs.append(ValueChange("status", a.status, b.status))
    if a.version != b.version:
        outputs.append(ValueChange("version", a.version or MISSING, b.version or MISSING))
    for key in sorted(set(a.outputs) | set(b.outputs)):
        old, new = a.outputs.get(key, MISSING), b.outputs.get(key, MISSING)
        if not _same(old, new):
            outputs.append(ValueChange(key, old, new))
    metrics = [
        MetricDelta(name, a.metrics.get(name), b.metrics.get(name), metric_direction(name))
        for name in _union(a.metrics, b.metrics)
        if not _same_number(a.metrics.get(name), b.metrics.get(name))
    ]
    segments, focus = segment_deltas(a, b)
    return TaskDiff(
        a.label if a.label == b.label else f"{a.label} vs {b.label}",
        a,
        b,
        params,
        code,
        data,
        inputs,
        environment,
        outputs,
        metrics,
        segments,
        focus,
        via,
    )


def segment_deltas(a: RunRecord, b: RunRecord) -> tuple[list[SegmentDelta], str | None]:
    """Per segment level present in both runs, the metrics (with a direction) that changed; and the
    metric to show first (the gate's, else the first one)."""
    rows_a = {_segment_key(r): r for r in a.segments}
    rows_b = {_segment_key(r): r for r in b.segments}
    out: list[SegmentDelta] = []
    names: list[str] = []
    for key, ra in rows_a.items():
        rb = rows_b.get(key)
        if rb is None:
            continue
        deltas = []
        for name in _union(ra, rb):
            if name in SEGMENT_KEYS or name not in HIGHER_IS_BETTER:
                continue
            old, new = _number(ra.get(name)), _number(rb.get(name))
            if old is None and new is None:
                continue
            if name not in names:
                names.append(name)
            if not _same_number(old, new):
                deltas.append(MetricDelta(name, old, new, HIGHER_IS_BETTER[name]))
        if deltas:
            out.append(SegmentDelta(key[0], key[1], (_number(ra.get("rows")), _number(rb.get("rows"))), deltas))
    gate = b.outputs.get("gate_metric") or a.outputs.get("gate_metric")
    focus = gate if gate in names else (names[0] if names else None)
    return out, focus


# ----------------------------------------------------------------------------- text


def diff_text(diff: RunDiff, segment_limit: int = 40) -> str:
    """The diff for a terminal: each task that differs, with only what differs."""
    lines = [f"A: {diff.a.description}", f"B: {diff.b.description}"]
    if not diff.changed:
        lines += ["", "Nothing differs: the same parameters, code, data and metrics."]
    for t in diff.changed:
        lines += ["", _task_title(t)]
        if t.params:
            lines.append("  parameters")
            lines += [f"    {c.name}: {_short(c.old)} -> {_short(c.new)}" for c in t.params]
        for title, items in (("code", t.code), ("data", t.data), ("inputs", t.inputs), ("environment", t.environment)):
            if items:
                lines.append(f"  {title}")
                lines += [f"    {item}" for item in items]
        if t.outputs:
            lines.append("  outputs")
            lines += [f"    {c.name}: {_short(c.old)} -> {_short(c.new)}" for c in t.outputs]
        if t.metrics:
            lines.append("  metrics")
            width = max(len(m.name) for m in t.metrics)
            lines += [f"    {m.name:<{width}}  {_metric_change(m)}" for m in t.metrics]
        shown = [s for s in t.segments if any(m.name == t.segment_metric for m in s.metrics)]
        if shown and t.segment_metric:
            lines.append(f"  by segment ({t.segment_metric}, A -> B)")
            names = [f"{s.segment} = {s.level}" for s in shown]
            width = max(len(n) for n in names)
            for name, s in list(zip(names, shown, strict=True))[:segment_limit]:
                m = next(m for m in s.metrics if m.name == t.segment_metric)
                lines.append(f"    {name:<{width}}  {_metric_change(m)}")
            if len(shown) > segment_limit:
                lines.append(f"    ... and {len(shown) - segment_limit} more (--json has every segment and metric)")
    if diff.unchanged:
        lines += ["", f"The same in both: {', '.join(diff.unchanged)}"]
    if diff.only_a or diff.only_b:
        lines.append("")
        if diff.only_a:
            lines.append(f"Only in A: {', '.join(diff.only_a)}")
        if diff.only_b:
            lines.append(f"Only in B: {', '.join(diff.only_b)}")
    return "\n".join(lines)


def _task_title(t: TaskDiff) -> str:
    ids = f"run {t.a.identity} -> {t.b.identity}" if t.a.identity != t.b.identity else f"run {t.a.identity}"
    via = f", read by {t.via}" if t.via else ""
    return f"{t.task} ({ids}{via})"


def _metric_change(m: MetricDelta) -> str:
    old, new = format_pair(m.old, m.new)
    text = f"{old} -> {new}"
    if m.delta is not None:
        text += f"  ({format_delta(m.delta, m.old, m.new)}{', ' + m.verdict if m.verdict else ''})"
    return text


# ----------------------------------------------------------------------------- HTML


def diff_html(diff: RunDiff, segment_limit: int = 40) -> str:
    """The diff as HTML for the dashboard and the static site: every data-derived string escaped.

    Classes: ``nbops-diff`` (the whole), ``nbops-diff-task`` (one task, ``data-task``), and
    ``nbops-better`` / ``nbops-worse`` on each marked change.
    """
    e = _esc
    parts = [
        "<div class='nbops-diff'>",
        f"<p class='nbops-diff-sides'><b>A</b>: {e(diff.a.description)}<br><b>B</b>: {e(diff.b.description)}</p>",
    ]
    if not diff.changed:
        parts.append("<p class='nbops-diff-none'>Nothing differs: the same parameters, code, data and metrics.</p>")
    for t in diff.changed:
        parts.append(f"<div class='nbops-diff-task' data-task='{e(t.task)}'><h4>{e(_task_title(t))}</h4>")
        rows: list[tuple[str, str, str, str]] = []
        rows += [("parameter", c.name, f"{_short(c.old)} → {_short(c.new)}", "") for c in t.params]
        for kind, items in (("code", t.code), ("data", t.data), ("input", t.inputs), ("environment", t.environment)):
            rows += [(kind, item, "", "") for item in items]
        rows += [("output", c.name, f"{_short(c.old)} → {_short(c.new)}", "") for c in t.outputs]
        for m in t.metrics:
            old, new = format_pair(m.old, m.new)
            change = f"{old} → {new}"
            delta = format_delta(m.delta, m.old, m.new) if m.delta is not None else ""
            rows.append(("metric", m.name, change + (f" ({delta})" if delta else ""), m.verdict))
        parts.append(
            "<table class='nbops-table nbops-diff-table'><thead><tr><th class='nbops-text'>what</th>"
            "<th class='nbops-text'>name</th><th class='nbops-text'>A → B</th><th class='nbops-text'>verdict</th>"
            "</tr></thead><tbody>"
            + "".join(
                f"<tr class='nbops-diff-{e(kind)}'><td class='nbops-text'>{e(kind)}</td>"
                f"<td class='nbops-text'>{e(name)}</td><td class='nbops-text'>{e(change)}</td>"
                f"<td class='nbops-text'>{_verdict_html(verdict)}</td></tr>"
                for kind, name, change, verdict in rows
            )
            + "</tbody></table>"
        )
        shown = [s for s in t.segments if any(m.name == t.segment_metric for m in s.metrics)]
        if shown and t.segment_metric:
            body = []
            for s in shown[:segment_limit]:
                m = next(m for m in s.metrics if m.name == t.segment_metric)
                delta = format_delta(m.delta, m.old, m.new) if m.delta is not None else ""
                old, new = format_pair(m.old, m.new)
                body.append(
                    f"<tr><td class='nbops-text'>{e(s.segment)}</td><td class='nbops-text'>{e(s.level)}</td>"
                    f"<td class='nbops-num'>{e(old)}</td>"
                    f"<td class='nbops-num'>{e(new)}</td><td class='nbops-num'>{e(delta)}</td>"
                    f"<td class='nbops-text'>{_verdict_html(m.verdict)}</td></tr>"
                )
            more = (
                f"<p class='nbops-caption'>Showing {segment_limit} of {len(shown)} segment levels.</p>"
                if len(shown) > segment_limit
                else ""
            )
            parts.append(
                f"<p class='nbops-caption'>By segment: {e(t.segment_metric)}</p>"
                "<table class='nbops-table nbops-diff-segments'><thead><tr><th class='nbops-text'>segment</th>"
                "<th class='nbops-text'>level</th><th class='nbops-num'>A</th><th class='nbops-num'>B</th>"
                "<th class='nbops-num'>change</th><th class='nbops-text'>verdict</th></tr></thead><tbody>"
                + "".join(body)
                + "</tbody></table>"
                + more
            )
        parts.append("</div>")
    if diff.unchanged:
        parts.append(f"<p class='nbops-caption'>The same in both: {e(', '.join(diff.unchanged))}</p>")
    if diff.only_a:
        parts.append(f"<p class='nbops-caption'>Only in A: {e(', '.join(diff.only_a))}</p>")
    if diff.only_b:
        parts.append(f"<p class='nbops-caption'>Only in B: {e(', '.join(diff.only_b))}</p>")
    parts.append("</div>")
    return "".join(parts)


def _verdict_html(verdict: str) -> str:
    if not verdict:
        return ""
    colour = "#1e6b2c" if verdict == "better" else "#9b1c1c"
    return f"<b class='nbops-{_esc(verdict)}' style='color:{colour}'>{_esc(verdict)}</b>"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------- values


def format_number(value: float | None) -> str:
    """A metric as a reader wants it: whole numbers as such, others to four decimals."""
    if value is None or not math.isfinite(value):
        return MISSING if value is None else str(value)
    if value == round(value) and abs(value) < 1e15:
        return f"{int(round(value)):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def format_pair(old: float | None, new: float | None) -> tuple[str, str]:
    """Both sides of a change alike: whole numbers when both are, else four decimals (1.0000 -> 0.9815)."""
    whole = all(v is not None and math.isfinite(v) and v == round(v) for v in (old, new))
    if whole:
        return format_number(old), format_number(new)

    def decimals(v: float | None) -> str:
        if v is None or not math.isfinite(v) or abs(v) >= 1000:
            return format_number(v)
        return f"{v:.4f}"

    return decimals(old), decimals(new)


def format_delta(delta: float | None, old: float | None, new: float | None) -> str:
    if delta is None:
        return ""
    whole = all(v is not None and v == round(v) for v in (old, new))
    return f"{int(round(delta)):+,}" if whole else f"{delta:+.4f}"


def _short(value: Any, limit: int = 80) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _digits(value: str | None, n: int = 12) -> str:
    return value[:n] if value else MISSING


def _commit(run: RunRecord) -> str:
    return (run.git_commit or "none")[:12] + (" (uncommitted changes)" if run.git_dirty else "")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool | str):
        return _same_number(float(a), float(b))
    return bool(a == b)


def _same_number(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= EPSILON * max(1.0, abs(a), abs(b))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return list(a) + [k for k in b if k not in a]


def _segment_key(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row.get("segment", "")), str(row.get("level", ""))


def _cell_change(source: str, old: Sequence[str], new: Sequence[str]) -> str:
    if not old or not new:
        return f"notebook code changed ({source})"
    if len(old) != len(new):
        return f"notebook code changed ({source}: {len(old)} -> {len(new)} code cells)"
    changed = [str(i + 1) for i, (x, y) in enumerate(zip(old, new, strict=True)) if x != y]
    return f"notebook code changed ({source}: code cell {', '.join(changed)} of {len(new)})"
