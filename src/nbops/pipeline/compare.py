"""``nbops compare`` for a project: the candidate against production on the latest test split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nbops.config.params import EvaluateParams, validate_params
from nbops.data.io import write_text
from nbops.data.schema import TableSchema
from nbops.errors import NbopsError
from nbops.pipeline.check import CheckedProject
from nbops.registry.compare import TestSplit, compare, render_markdown
from nbops.registry.store import Registry


def load_test_split(checked: CheckedProject, project: Path, env_file: str = "env.yaml") -> TestSplit:
    """The latest test split (the features task's ``test`` product) with the ingest schema.

    Args:
        checked: the checked project (its tasks' rendered products).
        project: the project folder (relative products are under it).
        env_file: named in the error when no build has written the split yet.
    """
    tasks = {t.name: t for t in checked.tasks}
    missing = [t for t in ("ingest", "features") if t not in tasks]
    if missing:
        raise NbopsError(
            f"pipeline.yaml has no task {', '.join(missing)}: `nbops compare` scores the features task's test split, "
            "cut from the ingest task's data"
        )

    def product(task: str, key: str) -> Path:
        path = Path(tasks[task].product[key])
        return path if path.is_absolute() else project / path

    test, schema = product("features", "test"), product("ingest", "schema")
    for path in (test, schema):
        if not path.exists():
            raise NbopsError(
                f"{path} does not exist: the comparison scores the latest test split, which a build writes. Run `nbops "
                f"build --env {env_file}` first"
            )
    summary = product("ingest", "summary")
    fingerprint = json.loads(summary.read_text()).get("fingerprint") if summary.exists() else None
    split_file = product("features", "summary")
    split = json.loads(split_file.read_text()) if split_file.exists() else {}
    return TestSplit(pd.read_parquet(test), test, TableSchema.load(schema), fingerprint, split)


def default_output(checked: CheckedProject, project: Path) -> Path:
    """``<root>/reports/compare.md``: beside the evaluate report, where CI picks it up as an artifact."""
    root = Path(checked.settings.root)
    return (root if root.is_absolute() else project / root) / "reports" / "compare.md"


def compare_project(
    registry: Registry,
    checked: CheckedProject,
    project: Path,
    env_file: str,
    *,
    candidate: str | None = None,
    production: str | None = None,
    out: Path | None = None,
) -> tuple[str, Path]:
    """Compare two versions on the project's latest test split; write the Markdown and return it."""
    evaluate = next((t for t in checked.tasks if t.name == "evaluate"), None)
    params = validate_params(
        EvaluateParams,
        {k: v for k, v in (evaluate.params if evaluate else {}).items() if k in EvaluateParams.model_fields},
        where="task 'evaluate' in pipeline.yaml",
    )
    comparison = compare(registry, load_test_split(checked, project, env_file), params, candidate, production)
    text = render_markdown(comparison)
    dest = out or default_output(checked, project)
    write_text(text, dest)
    return text, dest
