"""``nbops site``: every product a reader wants, as static pages under ``<root>/site/``.

An index page links the executed report of every task, the model card of every registered
version, the registry (versions, aliases, history), the runs (when the runs index exists), the
monitoring summary with its plots, and the pipeline's picture. Every page is self-contained HTML
(inline styles, images embedded or beside it, no script, no font or stylesheet from anywhere): it
opens from ``file://``, any static file server or a CI artifact, with no network request at all.
Every data-derived string is escaped.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config import paths
from nbops.pipeline.check import CheckedProject
from nbops.pipeline.reports import missing_html_report

SITE_DIR = "site"
STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:4px 10px;"
    "text-align:left;vertical-align:top}th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "nav a{margin-right:1em}.ok{color:#1a7f37}.watch{color:#9a6700}.alert{color:#cf222e;font-weight:600}"
    "code{background:#f4f4f4;padding:0 3px}img{max-width:100%;height:auto}.muted{color:#666}"
    ".nbops-diff{border-left:3px solid #ddd;padding-left:1em;margin-bottom:1.5em}"
    ".nbops-better{color:#1a7f37;font-weight:600}.nbops-worse{color:#cf222e;font-weight:600}"
)


@dataclass
class Site:
    """Where the site was written, and its pages (relative to the site folder)."""

    folder: Path
    pages: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def page(title: str, body: str, *, depth: int = 0) -> str:
    """A standalone page: the title, a navigation bar back to the index, the body."""
    up = "../" * depth
    nav = (
        f'<nav><a href="{up}index.html">index</a><a href="{up}registry.html">registry</a>'
        f'<a href="{up}runs.html">runs</a><a href="{up}monitoring.html">monitoring</a>'
        f'<a href="{up}reports/pipeline.html">pipeline</a></nav>'
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>"
        f"<body>{nav}<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, links: Mapping[str, str] = {}) -> str:
    """Rows as an escaped HTML table; ``links`` maps a column to the href template of its cells."""
    if not rows:
        return "<p class='muted'>Nothing yet.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = _text(value)
            cls = " class='n'" if isinstance(value, int | float) and not isinstance(value, bool) else ""
            if c == "status" and text in ("ok", "watch", "alert"):
                cls = f" class='{text}'"
            if c in links and text:
                text = f'<a href="{html.escape(links[c].format(value=value))}">{html.escape(text)}</a>'
            else:
                text = html.escape(text)
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:
            return f"{value:,.0f}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def write_site(checked: CheckedProject, out: Path | None = None) -> Site:
    """Write the site (replacing an earlier one in one rename) and return where it is."""
    root = Path(checked.settings.root)
    dest = out or root / SITE_DIR
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".site.", dir=dest.parent))
    try:
        site = Site(work)
        reports = _copy_reports(checked, root, work, site)
        versions = _registry_pages(checked, root, work, site)
        runs = _runs_page(root, work, site)
        monitoring = _monitoring_page(checked, work, site)
        _index(checked, work, site, reports, versions, runs, monitoring)
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Site(dest, site.pages)


def _write(site: Site, relative: str, text: str) -> None:
    path = site.folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    site.pages.append(relative)


def _copy_reports(checked: CheckedProject, root: Path, work: Path, site: Site) -> list[dict[str, Any]]:
    """Each task's executed report (self-contained: figures embedded) and the pipeline's picture."""
    rows = []
    for task in checked.tasks:
        source = Path(task.product["html"]) if "html" in task.product else missing_html_report(task)
        if source is None or not source.exists():
            rows.append({"task": task.name, "report": "", "note": "not built yet"})
            continue
        name = f"reports/{task.name}.html"
        (work / "reports").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, work / name)
        site.pages.append(name)
        rows.append({"task": task.name, "report": name, "note": task.source.name})
    picture = root / "reports" / "pipeline.html"
    if picture.exists():
        _write(site, "reports/pipeline.html", picture.read_text(encoding="utf-8"))
    else:
        _write(site, "reports/pipeline.html", page("Pipeline", "<p class='muted'>Not drawn yet.</p>", depth=1))
    return rows


def _registry_pages(checked: CheckedProject, root: Path, work: Path, site: Site) -> list[dict[str, Any]]:
    """A page per version's model card and the registry page (versions, aliases, history)."""
    from nbops.data.ingest import dataset_name
    from nbops.registry.publish import registry_for

    registry = registry_for(paths.registry_dir(root), dataset_name(checked.settings))
    aliases = registry.aliases()
    rows = []
    for v in registry.versions():
        card = v.file("card.html")
        link = ""
        if card.exists():
            link = f"models/{v.version}.html"
            (work / "models").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(card, work / link)
            site.pages.append(link)
        gate = v.metadata.get("gate", {})
        metric = gate.get("metric", "")
        rows.append(
            {
                "version": v.version,
                "aliases": ", ".join(a for a in ("production", "candidate") if aliases.get(a) == v.version),
                "created": v.metadata.get("created_at", ""),
                metric or "metric": v.metadata.get("metrics", {}).get(metric) if metric else None,
                "data": str(v.metadata.get("data", {}).get("fingerprint", ""))[:12],
                "git": str(v.metadata.get("git_commit") or "")[:8],
                "card": link,
            }
        )
    damaged = [{"version": name, "why": why} for name, why in registry.damaged().items()]
    columns = list(rows[0]) if rows else ["version"]
    history = [
        {k: e.get(k, "") for k in ("at", "event", "version", "previous", "by", "reason")} for e in registry.history()
    ]
    body = (
        f"<p>Registry <code>{html.escape(registry.root.name)}</code>: production "
        f"<b>{html.escape(str(aliases.get('production') or 'none'))}</b>, candidate "
        f"<b>{html.escape(str(aliases.get('candidate') or 'none'))}</b>.</p>"
        "<h2>Versions</h2>"
        + table_html(rows, [c for c in columns if c != "card"] + ["card"], links={"card": "{value}"})
        + ("<h2>Damaged versions</h2>" + table_html(damaged, ["version", "why"]) if damaged else "")
        + "<h2>History</h2>"
        + table_html(history[::-1], ["at", "event", "version", "previous", "by", "reason"])
    )
    _write(site, "registry.html", page("Registry", body))
    return rows


def _runs_page(root: Path, work: Path, site: Site) -> int:
    """The runs index, newest first, and what changed between consecutive training runs."""
    from nbops.experiments.diff import diff_html, diff_selections
    from nbops.experiments.index import newest_first, read_runs, run_selection
    from nbops.experiments.table import runs_rows

    runs = newest_first(read_runs(root))
    columns, rows = runs_rows(runs)
    body = table_html(rows, columns) if rows else "<p class='muted'>No run recorded yet.</p>"
    trained = [r for r in runs if r.task == "evaluate" and r.status == "ok" and r.trial is None]
    diffs = []
    for newer, older in zip(trained, trained[1:], strict=False):  # each evaluated model against the one before
        diffs.append(
            f"<h3>{html.escape(older.identity[:12])} &rarr; {html.escape(newer.identity[:12])}</h3>"
            + diff_html(diff_selections(run_selection(older), run_selection(newer), runs))
        )
    if diffs:
        body += "<h2>What changed between evaluated models</h2>" + "".join(diffs[:20])
    _write(site, "runs.html", page("Runs", body))
    return len(runs)


def _monitoring_page(checked: CheckedProject, work: Path, site: Site) -> int:
    """The monitoring summary, each month's status and its alerts, and the monitoring plots."""
    from nbops.monitoring.history import normalise_status, read_alerts, read_history

    monitor = next((t for t in checked.tasks if t.name == "monitor"), None)
    if monitor is None or not Path(monitor.product.get("history", "")).exists():
        _write(site, "monitoring.html", page("Monitoring", "<p class='muted'>No monitoring yet.</p>"))
        return 0
    history = normalise_status(read_history(monitor.product["history"]))
    alerts = read_alerts(monitor.product["alerts"]) if "alerts" in monitor.product else []
    summary_path = Path(monitor.product.get("summary", ""))
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    wanted = [
        c
        # psi_threshold: the highest feature threshold the batch was judged at (raised for a small batch)
        for c in (
            "batch_id",
            "status",
            "status_reason",
            "rows",
            "n_drifted",
            "max_psi",
            "psi_threshold",
            "prediction_psi",
        )
        if c in history.columns
    ]
    wanted += [c for c in history.columns if c.startswith("perf__")][:3]
    rows = _records(history.sort_values("batch_id")[wanted]) if len(history) else []
    images = []
    figures = Path(monitor.product.get("figures", ""))
    for png in sorted(figures.glob("*.png")) if figures.is_dir() else []:
        name = f"monitoring/{png.name}"
        (work / "monitoring").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, work / name)
        images.append(f'<p><img src="{html.escape(name)}" alt="{html.escape(png.stem)}" width="720"></p>')
    facts = ", ".join(
        f"{html.escape(str(k).replace('_', ' '))} <b>{html.escape(_text(v))}</b>"
        for k, v in summary.items()
        if not isinstance(v, dict | list)
    )
    body = (
        (f"<p>{facts}</p>" if facts else "")
        + "<h2>Each batch</h2>"
        + table_html(rows, wanted)
        + "<h2>Alerts</h2>"
        + table_html(
            sorted(
                ({k: a.get(k, "") for k in ("batch_id", "kind", "severity", "message")} for a in alerts),
                key=lambda a: str(a["batch_id"]),
            ),
            ["batch_id", "kind", "severity", "message"],
        )
        + "<h2>Plots</h2>"
        + ("".join(images) or "<p class='muted'>No plots.</p>")
    )
    _write(site, "monitoring.html", page("Monitoring", body))
    return len(rows)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for record in df.to_dict("records"):
        out.append({str(k): (None if _missing(v) else v) for k, v in record.items()})
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _index(
    checked: CheckedProject,
    work: Path,
    site: Site,
    reports: Iterable[Mapping[str, Any]],
    versions: Sequence[Mapping[str, Any]],
    runs: int,
    monitored: int,
) -> None:
    project = checked.project.name if checked.project is not None else "project"
    report_rows = [{"task": r["task"], "report": r["report"], "notebook": r["note"]} for r in reports]
    body = (
        "<p>Everything here opens without a server or a network: copy the folder anywhere.</p>"
        "<h2>Reports</h2>"
        + table_html(report_rows, ["task", "report", "notebook"], links={"report": "{value}"})
        + '<p><a href="reports/pipeline.html">The pipeline\'s picture</a> (what ran, what is up to date).</p>'
        + f"<h2>Models</h2><p>{len(versions)} registered version(s): "
        + ", ".join(
            f'<a href="{html.escape(str(v["card"]))}">{html.escape(str(v["version"]))}</a>'
            for v in versions
            if v["card"]
        )
        + '. <a href="registry.html">The registry</a>: versions, aliases and their history.</p>'
        + f'<h2>Runs</h2><p><a href="runs.html">{runs} recorded run(s)</a>.</p>'
        + f'<h2>Monitoring</h2><p><a href="monitoring.html">{monitored} monitored batch(es)</a> with their '
        "status, alerts and plots.</p>"
    )
    _write(site, "index.html", page(f"nbops · {project}", body))
