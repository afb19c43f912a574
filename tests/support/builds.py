"""The pipeline's tasks run in this process, without Ploomber or notebooks: each task's runner
(nbops.pipeline.runners) called in DAG order with the typed parameters and the product paths a
build gives its notebook."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops.config.params import STAGES
from nbops.pipeline.check import CheckedProject, check_project
from nbops.pipeline.context import Stage

# The small sample made smaller: every stage runs, in seconds (W&B is tested in tests/test_tracking.py).
QUICK = {
    "tracking": "disabled",
    "rows": 2000,
    "num_boost_round": 40,
    "shap_sample": 100,
    "batch_rows": 400,
    "production_months": 3,
    "production_rows": 400,
}


def runner(task: str) -> Any:
    """The runner of ``task``: ``nbops.pipeline.runners.<task>.run_<task>``."""
    return getattr(importlib.import_module(f"nbops.pipeline.runners.{task}"), f"run_{task}")


def stage_of(checked: CheckedProject, task: str) -> Stage[Any]:
    """The :class:`Stage` a build resolves for ``task``'s notebook: its typed parameters, its products
    and its upstream products, rooted where the env file puts the pipeline's products."""
    by_name = {t.name: t for t in checked.tasks}
    spec = by_name[task]
    root = Path(checked.settings.root)
    products = {name: {k: Path(v) for k, v in t.product.items()} for name, t in by_name.items()}
    return Stage(
        name=task,
        params=STAGES[task](**spec.params),
        product=products[task],
        upstream={u: products[u] for u in spec.upstream},
        project=Path(checked.project or root),
        interactive=False,
        root=root,
        pipeline_root=root,
    )


def run_in_process(
    project: Path, env_file: str = "env.test.yaml", overrides: Mapping[str, Any] | None = None
) -> tuple[CheckedProject, dict[str, Any]]:
    """Check the project, then call every task's runner in an order its ``upstream`` allows.

    Returns the checked project and what each runner returned (what its notebook shows).
    """
    checked = check_project(project, env_file, dict(overrides or {}))
    done: dict[str, Any] = {}
    pending = list(checked.tasks)
    while pending:
        task = next(t for t in pending if set(t.upstream) <= set(done))
        done[task.name] = runner(task.name)(stage_of(checked, task.name))
        pending.remove(task)
    return checked, done
