"""What the stage notebooks show a reader, so the notebooks stay a few lines each.

The executed notebooks are exported to HTML as the pipeline's reports. A report is for a reader, so
every table goes through :func:`table`: no index column unless it carries meaning, counts as
integers, other numbers to about four significant digits, missing values as a dash (never NaN or
None), text in full (never cut mid-word), every string HTML-escaped, and no absolute path of the
project: paths are shown relative to the project root.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from nbops.config.paths import project_root
from nbops.data.schema import outcome_label  # noqa: F401 (re-exported for the notebooks)
from nbops.errors import ConfigError

if TYPE_CHECKING:
    from pandas.io.formats.style_render import CSSDict

MISSING = "–"
_MIDNIGHT = re.compile(r"\b(\d{4}-\d{2}-\d{2})[ T]00:00:00(?![\d.:])")
_NUMBER_TEXT = re.compile(r"^[<>]?-?[\d,]+(\.\d+)?%?$")
# Tables read like the reports' text: text left-aligned, numbers right-aligned (Jupyter's own style
# right-aligns every cell), words wrapped at spaces only.
_TABLE_STYLES: list[CSSDict] = [
    {"selector": "", "props": "border-collapse: collapse; margin: 0.4em 0 1em 0; font-size: 0.92em;"},
    {
        "selector": "th",
        "props": "text-align: left; padding: 3px 10px; border-bottom: 1px solid #999; vertical-align: bottom;",
    },
    {"selector": "td", "props": "text-align: left; padding: 3px 10px; vertical-align: top; overflow-wrap: break-word;"},
    {"selector": "tbody tr:nth-child(odd)", "props": "background: #f5f5f5;"},
]


def project_root_or_none() -> Path | None:
    """The project folder if one can be found from here (paths in tables are shown relative to it)."""
    try:
        return project_root()
    except ConfigError:  # outside a project there is nothing to make relative
        return None


def relative_text(text: str, root: Path | str | None) -> str:
    """``text`` with every occurrence of the project folder replaced by a path relative to it."""
    if root is None:
        return text
    base = str(root).rstrip("/")
    if not base or base == "/":
        return text
    text = text.replace(base + "/", "")
    return re.sub(re.escape(base) + r"(?![\w.-])", ".", text)


def format_number(value: float | int | np.number[Any] | np.bool, style: str | None = None) -> str:
    """A number as a reader wants it.

    Integers (and whole floats) without ``.0``, thousands separated; other values to about four
    significant digits; NaN as a dash. ``style`` is decided per column by :func:`table`: ``"int"``
    (a column of counts), ``"share"`` (every value within [0, 1]: rates, probabilities, metrics, all
    to four decimals, so 1 reads 1.0000 beside 0.7650) or None (each value on its own).
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer) and style != "share":
        return f"{int(value):,}"
    v = float(value)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if style == "share":
        return f"{v:.4f}"
    if style == "int" or (v.is_integer() and abs(v) < 1e15):
        return f"{round(v):,}"
    # Rounded to four significant digits first, so 999.95 reads 1,000 and 99.995 reads 100.0.
    v = float(f"{v:.4g}") if 1 <= abs(v) < 1000 else v
    size = abs(v)
    if size >= 1000:
        return f"{v:,.0f}"
    if size >= 1:  # 1.235, 38.53, 123.5
        return f"{v:.{4 - len(str(int(size)))}f}"
    if size >= 0.0001:
        return f"{v:.4f}"
    return f"{v:.2e}"


def format_value(value: Any, root: Path | str | None = None, style: str | None = None) -> str:
    """Any cell value as text for a reader (see the module docstring); ``root`` relativises paths."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, bool | np.bool_ | int | np.integer | float | np.floating):
        return format_number(value, style)
    if isinstance(value, pd.Timestamp | datetime | date):
        stamp = pd.Timestamp(value)
        return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else str(stamp)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        text = _MIDNIGHT.sub(r"\1", relative_text(value, root))
        return text if text.strip() else MISSING
    if isinstance(value, Mapping):
        return ", ".join(f"{format_value(k, root)}: {format_value(v, root)}" for k, v in value.items()) or MISSING
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        items = sorted(value) if isinstance(value, set) else list(value)
        return ", ".join(format_value(v, root) for v in items) or MISSING
    return relative_text(str(value), root)


def _is_numeric(column: pd.Series) -> bool:
    """Numbers (or numbers already written as text, such as shares in percent): right-aligned."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    present = column.dropna()
    if len(present) == 0:
        return False
    if all(isinstance(v, str) for v in present):
        return all(_NUMBER_TEXT.match(v) for v in present)
    return all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_) for v in present
    )


def _number_style(column: pd.Series) -> str | None:
    """How a numeric column's values are written (see :func:`format_number`)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    if np.all(np.mod(values, 1) == 0) and np.all(np.abs(values) < 1e15):
        return "int"
    if np.all((values >= 0) & (values <= 1)):
        return "share"
    return None


def table(
    data: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    columns: Mapping[str, str] | None = None,
    index: bool = False,
    root: Path | str | None = None,
    empty: str = "Nothing to show.",
) -> Styler | Any:
    """A table for a reader, as a pandas Styler (it renders as HTML in the notebook and its report).

    Args:
        data: a DataFrame, a mapping of column to values, or a list of row mappings.
        columns: display names for columns (the others keep theirs).
        index: show the DataFrame's index (only when it carries meaning).
        root: the project folder, whose paths are shown relative (default: found from here).
        empty: the sentence shown instead of an empty table.
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    root = root if root is not None else project_root_or_none()
    if frame.empty:
        return note(empty)
    if index:
        frame = frame.reset_index()
    numeric = [_is_numeric(frame[c]) for c in frame.columns]
    shown = pd.DataFrame(
        {
            i: [format_value(v, root, _number_style(frame[c]) if numeric[i] else None) for v in frame[c].tolist()]
            for i, c in enumerate(frame.columns)
        }
    )
    labels = [relative_text(str((columns or {}).get(c, c)), root) for c in frame.columns]
    digest = hashlib.sha256(repr((labels, shown.to_numpy().tolist())).encode()).hexdigest()[:10]
    styler = (
        Styler(shown, uuid=f"nbops{digest}", cell_ids=False)
        .format(escape="html")
        .relabel_index([html.escape(label) for label in labels], axis=1)
        .hide(axis="index")
    )
    numbers: list[CSSDict] = [
        {"selector": f"{cell}.col{i}", "props": "text-align: right; white-space: nowrap;"}
        for i, is_number in enumerate(numeric)
        if is_number
        for cell in ("td", "th")
    ]
    # Short single tokens (2025-01, new-category, prediction_drift) never break at their hyphens.
    tokens: list[CSSDict] = [
        {"selector": f"td.col{i}", "props": "white-space: nowrap;"}
        for i in range(shown.shape[1])
        if not numeric[i] and shown[i].map(lambda v: " " not in v and len(v) <= 32).all()
    ]
    return styler.set_table_styles(_TABLE_STYLES + numbers + tokens).set_table_attributes(
        'class="dataframe nbops-table"'
    )


def humanize(key: str) -> str:
    """``rows_read`` -> ``rows read``: a summary key as a reader's words."""
    return key.replace("_", " ")


def show_summary(summary: Mapping[str, Any], drop: Iterable[str] = (), root: Path | str | None = None) -> Styler | Any:
    """A key/value mapping as a two-column table (item, value), each value formatted by its type."""
    skip = set(drop)
    rows = [(humanize(str(k)), v) for k, v in summary.items() if k not in skip]
    # Object columns keep each value's own type: 65 stays a count beside 0.8124.
    frame = pd.DataFrame({"item": [k for k, _ in rows], "value": pd.Series([v for _, v in rows], dtype=object)})
    return table(frame, root=root, empty="Nothing to show.")


def note(text: str) -> Any:
    """A sentence for the reader (Markdown in Jupyter, the plain text elsewhere)."""
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - outside Jupyter the text is the note
        return text
    return Markdown(text)


def markdown(text: str, root: Path | str | None = None) -> Any:
    """Markdown text (a model card, say) with the project folder shown as relative paths."""
    return note(relative_text(text, root if root is not None else project_root_or_none()))


def section(title: str, *bodies: Any) -> None:
    """Display a heading and what follows it (for sections shown only in some runs)."""
    try:
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - outside Jupyter there is nothing to show
        return
    display(Markdown(f"## {title}"))
    for body in bodies:
        display(body)


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (shown as an image under any executor)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_display_width(png: bytes) -> int | None:
    """The width in CSS pixels at which a PNG shows at its physical size: a figure saved at 200 dpi
    for sharpness on high-density screens is shown at half its pixel width, not stretched to it.
    Read from the PNG's pHYs chunk (matplotlib writes the dpi there); None without one."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width = int.from_bytes(png[16:20], "big")
    at = png.find(b"pHYs")
    if at < 0 or png[at + 12] != 1:  # unit 1: pixels per metre
        return None
    dpi = int.from_bytes(png[at + 4 : at + 8], "big") * 0.0254
    return round(width * 96 / dpi) if dpi > 0 else None


def show_figures(
    figures: Mapping[str, Figure | Path], include: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> None:
    """Display figures in order (inside Jupyter; a no-op elsewhere).

    A figure already saved as PNG is shown from its file: drawing it again would double the cost. A
    figure object is drawn to PNG here, so it shows as an image (never as ``<Figure ...>``) whether
    or not the kernel has matplotlib's inline backend.
    """
    try:
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - outside Jupyter there is nothing to show
        return
    wanted = list(include) if include is not None else [k for k in figures if k not in set(exclude)]
    pngs: dict[str, bytes] = {}
    for name in wanted:
        item = figures[name]
        pngs[name] = item.read_bytes() if isinstance(item, Path) else figure_png(item)
    # As <img> with its display width (ploomber-engine drops an Image's width metadata); several
    # figures side by side, wrapping on narrow screens (a long column of plots is hard to compare).
    images = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{html.escape(name)}"'
        + (f' width="{png_display_width(png)}"' if png_display_width(png) else "")
        + ' style="max-width: 100%; height: auto;">'
        for name, png in pngs.items()
    )
    display(HTML(f'<div style="display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start;">{images}</div>'))


def histogram(values: Sequence[float] | np.ndarray | pd.Series, *, title: str, xlabel: str, bins: int = 40) -> Figure:
    """A histogram of ``values`` (a batch's scores, say)."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(np.asarray(values, dtype=float), bins=bins, color="#3b6ea8")
    ax.set(xlabel=xlabel, ylabel="rows", title=title)
    fig.tight_layout()
    return fig


def batch_scores_figure(scored: pd.DataFrame) -> Figure:
    """The scores of a batch-scored file: a histogram of ``prediction``, or for a multiclass model
    (``proba_<class>`` columns) the rows per most likely class and each class's probabilities."""
    from nbops.runtime.model import LABEL_COLUMN, PROBABILITY_PREFIX

    if "prediction" in scored.columns:
        return histogram(scored["prediction"], title="Scores of the new batch", xlabel="prediction")
    columns = [c for c in scored.columns if c.startswith(PROBABILITY_PREFIX)]
    classes = [c.removeprefix(PROBABILITY_PREFIX) for c in columns]
    fig = Figure(figsize=(9, 3.5))
    left, right = fig.subplots(1, 2)
    counts = scored[LABEL_COLUMN].astype("string").value_counts().reindex(classes, fill_value=0)
    left.bar(classes, counts.to_numpy(), color="#3b6ea8")
    left.set(xlabel="most likely class", ylabel="rows", title="Predicted class of the new batch")
    bins = np.linspace(0, 1, 31).tolist()
    for column, name in zip(columns, classes, strict=True):
        right.hist(scored[column].to_numpy(dtype=float), bins=bins, histtype="step", linewidth=1.5, label=name)
    right.set(xlabel="probability of the class", ylabel="rows", title="Class probabilities")
    right.legend(title="class", fontsize="small")
    fig.tight_layout()
    return fig


def show_classes(evaluation: Any) -> None:
    """The section "By class" of a multiclass model's evaluation: precision, recall and F1 of each
    class, its one-vs-rest AUC and calibration in brief, and the confusion matrix as a table.

    ``evaluation`` is the evaluate stage's result; for a binary or regression model nothing is shown,
    not even the heading.
    """
    if getattr(evaluation, "task_type", None) != "multiclass":
        return
    section(
        "By class",
        note(
            "Each class against the rest on the test split: precision (of the rows predicted as the class, the "
            "share that are), recall (of the class's rows, the share predicted as it), F1, the one-vs-rest ROC AUC "
            "of its probability, and its share of the rows against its mean predicted probability (close when the "
            "class's probability is calibrated)."
        ),
        table(evaluation.per_class_table()),
        note("Confusion matrix: a row per true class, a column per predicted class (the most likely), row counts."),
        table(evaluation.confusion_table()),
    )


def alerts_table(alerts: Sequence[Mapping[str, Any]], root: Path | str | None = None) -> Styler | Any:
    """The monitoring alerts, by batch, messages in full."""
    if not alerts:
        return note("No alert.")
    frame = pd.DataFrame(list(alerts))
    keep = [c for c in ("batch_id", "kind", "severity", "message") if c in frame.columns]
    frame = frame[keep].sort_values("batch_id", kind="stable") if "batch_id" in keep else frame[keep]
    return table(frame, columns={"batch_id": "batch"}, root=root)


def monitoring_headline(history: pd.DataFrame, ground_truth: Mapping[str, Any]) -> str:
    """One line on what monitoring did; against the simulator's ground truth only when there is one
    (your own data has none, and "None of None" tells a reader nothing)."""
    if ground_truth:
        return (
            f"months monitored: {len(history)}; drifted features found: {ground_truth.get('found')} of "
            f"{ground_truth.get('named_features')}; false alarms on clean months: {ground_truth.get('false_alarms')}"
        )
    batches = ", ".join(str(b) for b in history["batch_id"]) if "batch_id" in history.columns else ""
    return f"batches monitored: {len(history)}" + (f" ({batches})" if batches else "")


def ground_truth_table(truth: pd.DataFrame) -> Styler | Any:
    """Per simulated month: the drift the simulator injected against what the monitor found."""
    frame = truth.copy()
    for column in ("injected", "found"):
        if column in frame.columns:
            frame[column] = frame[column].map(
                lambda v: ", ".join(f for f in str(v).split(",") if f) if isinstance(v, str) else v
            )
    return table(
        frame,
        columns={
            "injected": "drift injected in",
            "concept_drift": "concept drift injected",
            "dataset_drift": "drift detected",
            "found": "drifted features found",
        },
        empty="No ground truth: these batches are your own data, not simulated.",
    )


def show_tables(tables: Mapping[str, pd.DataFrame | Styler | Any]) -> None:
    """Display several tables, each under its name in bold (inside Jupyter; a no-op elsewhere)."""
    try:
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - outside Jupyter there is nothing to show
        return
    for title, body in tables.items():
        display(Markdown(f"**{title}**"))
        display(table(body) if isinstance(body, pd.DataFrame) else body)


def show_ground_truth(monitoring: Any) -> None:
    """The section "Against the simulator's ground truth", shown only for simulated batches.

    ``monitoring`` is the monitor stage's result (its ``truth`` is empty for your own data, which has
    no ground truth to compare with: then nothing is shown, not even the heading).
    """
    if monitoring.truth.empty:
        return
    section(
        "Against the simulator's ground truth",
        note("Per simulated month: the drift the simulator injected, and what the monitor found."),
        ground_truth_table(monitoring.truth_table()),
    )
