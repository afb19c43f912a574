"""The HTML report of a task whose pipeline.yaml entry does not have Ploomber write one.

A built-in stage declares an ``html`` product and the report settings (``nb_product_key`` and the
shared ``nbconvert_export_kwargs``). A task of your own needs only ``source``, ``upstream``,
``product`` (with ``nb``) and ``params``: after it ran, ``nbops build`` writes ``<nb>.html`` beside
its executed notebook with the same settings as the built-in reports (parameters cells, test
scaffolding and prompts left out), so every task has a report a reader can open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbops.config.spec import TaskSpec
from nbops.files import write_text


def report_settings(tasks: list[TaskSpec]) -> dict[str, Any]:
    """The HTML export settings the pipeline's reports share (the first task that declares them)."""
    for task in tasks:
        kwargs = task.options.get("nbconvert_export_kwargs")
        if isinstance(kwargs, dict) and kwargs:
            return dict(kwargs)
    return {}


def missing_html_report(task: TaskSpec) -> Path | None:
    """Where the HTML report of ``task`` goes when Ploomber does not write one, else None."""
    nb = task.product.get("nb")
    if nb is None or "html" in task.product or not nb.endswith(".ipynb"):
        return None
    return Path(nb).with_suffix(".html")


def write_html_report(task: TaskSpec, tasks: list[TaskSpec]) -> Path | None:
    """Write the HTML report of ``task`` (see the module's doc) and return its path, or None when
    Ploomber already writes one or the task has no executed notebook."""
    dest = missing_html_report(task)
    if dest is None or not Path(task.product["nb"]).exists():
        return None
    import nbconvert
    import nbformat

    nb = nbformat.reads(Path(task.product["nb"]).read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
    body, _ = nbconvert.export(nbconvert.HTMLExporter, nb, **report_settings(tasks))  # type: ignore[no-untyped-call]
    write_text(body, dest)
    return dest
