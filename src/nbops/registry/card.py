"""Model cards: what a version is for, what it was trained on, how well it does and where it is weak."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from nbops.modeling.metrics import HEADLINE, HIGHER_IS_BETTER, MEANING


def code(text: object) -> str:
    """``text`` as a Markdown code span whatever it holds: the fence is longer than any run of
    backticks inside it (CommonMark), so a column name with a backtick cannot break out of it."""
    value = str(text).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table_text(value: object) -> str:
    """Text for a Markdown table cell: a pipe or a line break in data cannot split the row."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(table_text(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, col) for v, col in zip(row, cols, strict=True)) + " |")
    return "\n".join(lines)


def _cell(value: object, column: str) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if column == "rows" else f"{value:.4f}"
    return table_text(value)


HISTORY_COLUMNS = ("at", "event", "version", "previous", "by", "reason")


def history_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Registry events as rows a reader scans: when, what, which version (and the one before), who, why."""
    return [{c: (e.get(c) or "") for c in HISTORY_COLUMNS} for e in events]


def history_markdown(events: Iterable[Mapping[str, Any]]) -> str:
    """The registry events of a version as a Markdown section (when, what, who, why)."""
    rows = history_rows(events)
    body = markdown_table(pd.DataFrame(rows)) if rows else "No registry events yet."
    return "## History\n" + body + "\n"


def derived_line(metadata: dict[str, Any]) -> list[str]:
    """The card's line on derived features, when the model has some (empty list otherwise)."""
    derived = metadata.get("derived_features")
    if not derived:
        return []
    source = derived["feature_code"]
    return [
        f"- derived features, computed from the raw features by the project's {code(source['name'])} (carried in "
        f"the wheel as {code(source['file'])}, sha256 {code(source['sha256'][:12])}): "
        + ", ".join(f"{code(name)} ({kind})" for name, kind in derived["kinds"].items())
    ]


def model_card_markdown(metadata: dict[str, Any], segments: pd.DataFrame) -> str:
    """The card as Markdown."""
    task = metadata["task_type"]
    metrics = metadata["metrics"]
    headline = pd.DataFrame({"metric": HEADLINE[task], "test": [metrics.get(k) for k in HEADLINE[task]]})
    if task == "multiclass":  # the metrics' names are less familiar: say what each measures
        headline["what it measures"] = [MEANING[k] for k in HEADLINE[task]]
    seg_cols = ["segment", "level", "rows"] + [m for m in HEADLINE[task] if m in segments.columns][:3]
    weakest = segments.dropna(subset=[seg_cols[3]]) if len(seg_cols) > 3 and not segments.empty else segments
    if not weakest.empty and len(seg_cols) > 3:
        # the weakest first: the lowest of a metric where higher is better, the highest of a loss
        weakest = weakest.sort_values(seg_cols[3], ascending=HIGHER_IS_BETTER.get(seg_cols[3], True)).head(5)
    gate = metadata.get("gate", {})
    lines = [
        f"# Model card: {metadata['package']} {metadata['version']}",
        "",
        "## Intended use",
        f"Scores {metadata['dataset']} records for **{metadata['target']}** ({task}). "
        + (
            "It returns a probability of the positive class, for ranking and thresholding by a reviewer who owns the "
            "decision. "
            if task == "binary"
            else (
                f"It returns a probability for each of its {len(metadata.get('classes') or [])} classes ("
                + ", ".join(code(c) for c in metadata.get("classes") or [])
                + ") and the most likely one. "
            )
            if task == "multiclass"
            else "It returns a point estimate of the target. "
        )
        + "It is not validated for populations, products or periods outside its training data, and it must not be the "
        "sole basis of a decision about a person.",
        "",
        "## Training data",
        f"- source: {code(metadata['data']['source'])}",
        f"- rows: {metadata['data']['rows_valid']:,} valid of {metadata['data']['rows_read']:,} read "
        f"({metadata['data']['rows_quarantined']:,} quarantined)",
        f"- fingerprint: {code(metadata['data']['fingerprint'])}",
        f"- split: {metadata['split']['method']}; "
        + ", ".join(
            f"{k} {v['rows']:,} rows" + (f" ({v['from'][:10]} to {v['to'][:10]})" if "from" in v else "")
            for k, v in metadata["split"]["splits"].items()
        ),
        f"- features ({len(metadata['features'])}): " + ", ".join(code(f) for f in metadata["features"]),
        *derived_line(metadata),
        "- never used as features: identifiers and personal data "
        f"({', '.join(code(c) for c in metadata.get('excluded_columns', [])) or 'none'})",
        "",
        "## Metrics (test split)",
        markdown_table(headline),
        "",
        "## Weakest segments",
        markdown_table(weakest[seg_cols]) if not weakest.empty else "No segment metrics.",
        "",
        "## Promotion",
        gate.get("reason", "not evaluated"),
        "",
        "## Lineage",
        f"- created: {metadata['created_at']}",
        f"- git commit: {code(metadata.get('git_commit') or 'unknown')}",
        f"- dependency lock sha256: {code(metadata.get('lock_sha256') or 'unknown')}",
        f"- W&B run: {code(metadata.get('wandb_run_id') or 'not tracked')}",
        f"- model file sha256: {code(metadata['model_sha256'])}",
        "",
        "## Limits and caveats",
        "- Trained on one period; performance decays as the population drifts. Watch the monitoring dashboard and "
        "retrain on drift.",
        "- Segment metrics on small segments are noisy; read them with their row counts.",
        "- Categories unseen in training are refused by the scoring API; extend the schema and retrain to accept them.",
    ]
    return "\n".join(lines) + "\n"


def markdown_html(markdown: str) -> str:
    """Markdown as HTML with every raw HTML tag in it escaped: a category value or a column name
    such as ``<script>...`` is shown as text, never run (links to ``javascript:`` are dropped)."""
    import mistune

    return str(mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])(markdown))


def model_card_html(markdown: str, title: str) -> str:
    """The card as a standalone HTML page."""
    body = markdown_html(markdown)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;line-height:1.45}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}code{background:#f4f4f4}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head>"
        f"<body>{body}</body></html>\n"
    )
