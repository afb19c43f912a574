"""The experiments dashboard: the runs table, a parameter against a metric, learning curves of chosen
runs overlaid, and what differs between two chosen runs. Read from the runs index
(nbops.experiments.index) when the page opens; every string from it is escaped."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from nbops.config.paths import project_root
from nbops.config.spec import load_env
from nbops.dashboards.data import ENV_VAR
from nbops.dashboards.widgets import empty_state, esc, page, pill, section, table_html, tile
from nbops.experiments.charts import Point, curves_svg, scatter_svg
from nbops.experiments.diff import diff_html, diff_selections, format_number
from nbops.experiments.index import RunRecord, lineage_params, newest_first, read_runs, run_selection
from nbops.experiments.table import runs_rows, when_text
from nbops.modeling.metrics import metric_direction

MAX_TABLE_ROWS = 60
CURVES_SHOWN = 2


@dataclass
class ExperimentsData:
    """The runs index of the pipeline built with the env file, read once per page view."""

    project: Path
    root: Path
    runs: list[RunRecord]  # oldest first


def load_experiments_data(env_file: str | None = None) -> ExperimentsData:
    """The runs recorded under the products root of ``env_file`` (default: $NBOPS_ENV or env.yaml)."""
    project = project_root()
    root = Path(str(load_env(project, env_file or os.environ.get(ENV_VAR, "env.yaml"))["root"]))
    root = root if root.is_absolute() else project / root
    return ExperimentsData(project, root, read_runs(root))


def run_option(run: RunRecord) -> str:
    """How a run is named in a picker: task, id, when, build."""
    return f"{run.label} · {run.identity[:10]} · {when_text(run.when)}" + (f" · {run.build_id}" if run.build_id else "")


def numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def scatter_choices(runs: Sequence[RunRecord]) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """The numeric parameters (a run's own or those of the runs it read) that differ between runs,
    the metrics, and each run's parameters."""
    ok = [r for r in runs if r.status == "ok" and r.metrics]
    params = {r.identity + str(r.recorded_at): lineage_params(r, runs) for r in ok}
    names: list[str] = []
    for p in params.values():
        names += [k for k, v in p.items() if numeric(v) is not None and k not in names]
    varying = [k for k in names if len({numeric(p.get(k)) for p in params.values() if k in p}) > 1]
    metrics: list[str] = []
    for r in ok:
        metrics += [k for k in r.metrics if k not in metrics]
    metrics.sort(key=lambda k: metric_direction(k) is None)
    return varying or names, metrics, params


def experiments_dashboard(data: ExperimentsData) -> w.Widget:
    """Every recorded run, and tools to compare them."""
    if not data.runs:
        return empty_state(
            "No runs recorded yet",
            "Run `make run`: every task run a build runs is recorded in the runs index (`nbops runs` lists them), "
            "and shows here with its parameters, metrics and learning curves.",
        )
    runs = data.runs
    recent = newest_first(runs)
    builds = {r.build_id for r in runs if r.build_id}
    failed = [r for r in runs if r.status == "failed"]
    evaluated = [r for r in recent if r.task == "evaluate" and r.status == "ok"]
    gate = str(evaluated[0].outputs.get("gate_metric") or "") if evaluated else ""
    tiles = (
        tile("runs recorded", f"{len(runs):,}")
        + tile("builds", f"{len(builds):,}")
        + tile("training runs", f"{sum(1 for r in runs if r.task == 'train'):,}")
        + tile("failed runs", f"{len(failed):,}", "bad" if failed else "good")
    )
    if gate and any(gate in r.metrics for r in evaluated):
        higher = metric_direction(gate) is not False
        best = max((r for r in evaluated if gate in r.metrics), key=lambda r: r.metrics[gate] * (1 if higher else -1))
        tiles += tile(f"best test {gate} (run {best.identity[:8]})", format_number(best.metrics[gate]), "good")
    columns, rows = runs_rows(recent[:MAX_TABLE_ROWS])
    frame = pd.DataFrame(rows, columns=columns).rename(columns={"seconds": "took"})
    frame["took"] = [f"{v:.1f} s" if isinstance(v, int | float) else "" for v in frame["took"]]
    table = table_html(
        frame,
        max_rows=MAX_TABLE_ROWS,
        cls="nbops-runs-table",
        cells={"status": lambda v: pill(str(v)), "run": lambda v: f"<code>{esc(v)}</code>"},
        nowrap=("run", "finished", "status", "took", "build", "version"),
        widths={"metrics": "28%"},
    )
    more = (
        f"<p class='nbops-caption'>The newest {MAX_TABLE_ROWS} of {len(runs):,} runs; `nbops runs --limit 0` lists "
        "all.</p>"
        if len(runs) > MAX_TABLE_ROWS
        else ""
    )
    children: list[w.Widget] = [
        w.HTML(
            f"<p>Every task run recorded under <code>{esc(data.root)}</code> (<code>nbops runs</code>), newest "
            "first.</p><div class='nbops-kpis'>" + tiles + "</div>"
        ),
        section("Runs", "ok or failed, how long it took, the registered version it produced, its first metrics."),
        w.HTML(table + more),
    ]
    children += _scatter(runs, gate)
    children += _curves(recent)
    children += _diff(runs, recent)
    return page(children, "experiments")


def _scatter(runs: list[RunRecord], gate: str) -> list[w.Widget]:
    params, metrics, values = scatter_choices(runs)
    if not params or not metrics:
        return []
    x = w.Dropdown(options=params, value=params[0], description="parameter", layout=w.Layout(width="360px"))
    y_default = gate if gate in metrics else metrics[0]
    y = w.Dropdown(options=metrics, value=y_default, description="metric", layout=w.Layout(width="360px"))
    x.add_class("nbops-scatter-x")
    y.add_class("nbops-scatter-y")
    out = w.HTML(layout=w.Layout(width="100%", max_width="1080px"))
    out.add_class("nbops-scatter-chart")
    ok = [r for r in runs if r.status == "ok"]

    def redraw(_: Any = None) -> None:
        points = []
        for r in ok:
            p = values.get(r.identity + str(r.recorded_at), {})
            px, py = numeric(p.get(x.value)), r.metrics.get(str(y.value))
            if px is not None and py is not None:
                points.append(Point(px, py, r.identity, r.label))
        out.value = scatter_svg(points, str(x.value), str(y.value))

    x.observe(redraw, names="value")
    y.observe(redraw, names="value")
    redraw()
    return [
        section(
            "A parameter against a metric",
            "One point per run that has the metric; a parameter is the run's own or that of the run it read (an "
            "evaluate run has the learning rate of the model it evaluated). The best point is ringed.",
        ),
        w.HBox([x, y]),
        out,
    ]


def _curves(recent: list[RunRecord]) -> list[w.Widget]:
    with_curves = [r for r in recent if r.curves and r.curves.get("valid")]
    if not with_curves:
        return []
    options = [(run_option(r), i) for i, r in enumerate(with_curves)]
    picker = w.SelectMultiple(
        options=options,
        value=tuple(i for _, i in options[:CURVES_SHOWN]),
        rows=min(6, len(options)),
        description="runs",
        layout=w.Layout(width="720px"),
    )
    picker.add_class("nbops-curves-runs")
    out = w.HTML(layout=w.Layout(width="100%", max_width="1080px"))
    out.add_class("nbops-curves-chart")

    def redraw(_: Any = None) -> None:
        out.value = curves_svg([with_curves[i] for i in picker.value])

    picker.observe(redraw, names="value")
    redraw()
    return [
        section(
            "Learning curves",
            "The training metric per boosting round of the chosen runs (Ctrl or Shift to choose several); the dot is "
            "the best iteration, where early stopping kept the model.",
        ),
        picker,
        out,
    ]


def _diff(runs: list[RunRecord], recent: list[RunRecord]) -> list[w.Widget]:
    if len(recent) < 2:
        return [section("Compare two runs", "A second run appears here after the next build.")]
    options = [(run_option(r), i) for i, r in enumerate(recent)]
    trains = [i for i, r in enumerate(recent) if r.task == "train"]
    b = trains[0] if trains else 0
    # Open on the newest training run against the one before it (a single build: choose two yourself).
    same_task = [i for i, r in enumerate(recent) if i > b and r.task == recent[b].task]
    a = same_task[0] if same_task else b
    pick_a = w.Dropdown(options=options, value=a, description="A", layout=w.Layout(width="720px"))
    pick_b = w.Dropdown(options=options, value=b, description="B", layout=w.Layout(width="720px"))
    pick_a.add_class("nbops-diff-a")
    pick_b.add_class("nbops-diff-b")
    out = w.HTML()
    out.add_class("nbops-diff-out")

    def redraw(_: Any = None) -> None:
        ra, rb = recent[int(pick_a.value)], recent[int(pick_b.value)]
        if ra is rb:
            out.value = (
                "<p class='nbops-caption nbops-diff-choose'>Choose two different runs: A and B are the same run. "
                "(Only one run of each task so far? A second build, say with another learning rate, gives two to "
                "compare.)</p>"
            )
            return
        out.value = diff_html(diff_selections(run_selection(ra), run_selection(rb), runs))

    pick_a.observe(redraw, names="value")
    pick_b.observe(redraw, names="value")
    redraw()
    return [
        section(
            "Compare two runs",
            "Only what differs from A to B: parameters, code, data, inputs, outputs and metrics, each metric marked "
            "better or worse by its direction (overall and by segment). `nbops runs diff A B` prints the same.",
        ),
        pick_a,
        pick_b,
        out,
    ]
