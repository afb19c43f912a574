"""What a stage notebook calls first: its typed parameters and its input and output paths.

Under Ploomber the notebook receives ``product`` and ``upstream`` injected. Opened on its own (in
JupyterLab without the extension, or under nbval) ``product`` is None, and the same paths are read
from ``pipeline.yaml`` with the products rooted in ``build/interactive``, so that running the stage
notebooks in order by hand works and never overwrites the pipeline's products.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops.errors import ConfigError
from nbops.params import STAGES, StageParams, validate_params
from nbops.paths import project_root
from nbops.pipeline_spec import load_env, load_tasks

INTERACTIVE_ROOT = "build/interactive"
# Set by `nbops build` for the Ploomber process: {task: run identity}; see nbops.lineage.
IDENTITIES_ENV = "NBOPS_RUN_IDENTITIES"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A stage's typed parameters, its products and its upstream products."""

    name: str
    params: Any
    product: dict[str, Path]
    upstream: dict[str, dict[str, Path]]
    project: Path
    interactive: bool
    identity: str | None = None

    def out(self, key: str) -> Path:
        """Path of product ``key``, with its folder created."""
        if key not in self.product:
            raise ConfigError(f"stage '{self.name}' has no product '{key}' (it has {', '.join(self.product)})")
        self.product[key].parent.mkdir(parents=True, exist_ok=True)
        return self.product[key]

    def inp(self, task: str, key: str) -> Path:
        """Path of upstream ``task``'s product ``key``; it must exist."""
        try:
            path = self.upstream[task][key]
        except KeyError as exc:
            raise ConfigError(f"stage '{self.name}' has no upstream product {task}.{key}") from exc
        if not path.exists():
            raise ConfigError(
                f"stage '{self.name}' needs {path}, made by stage '{task}', which has not run yet; "
                f"run the '{task}' notebook first (or `make run`)"
            )
        return path


def stage(name: str, namespace: Mapping[str, Any]) -> Stage:
    """Resolve a notebook's parameters cell into a :class:`Stage`.

    Args:
        name: the task name in pipeline.yaml (``ingest``, ``features``, ...).
        namespace: the notebook's ``globals()``: parameter values plus ``product`` and ``upstream``.

    Returns:
        The typed parameters and absolute product paths.
    """
    model: type[StageParams] = STAGES[name]
    values = {k: namespace[k] for k in model.model_fields if k in namespace}
    params = validate_params(model, values, where=f"notebook '{name}' parameters")
    product = namespace.get("product")
    upstream = namespace.get("upstream")
    if product is not None and isinstance(upstream, Mapping | type(None)):
        resolved = Stage(
            name=name,
            params=params,
            product={k: Path(v) for k, v in _as_dict(product).items()},
            upstream={t: {k: Path(v) for k, v in _as_dict(p).items()} for t, p in (upstream or {}).items()},
            project=project_root(),
            interactive=False,
            identity=run_identity(name),
        )
        _show_identity(resolved)
        _report_logging(resolved.project)
        return resolved
    project = project_root()
    env = load_env(project, overrides={"root": str(project / INTERACTIVE_ROOT)})
    tasks = {t.name: t for t in load_tasks(project, env)}
    if name not in tasks:
        raise ConfigError(f"pipeline.yaml has no task named '{name}' (it has {', '.join(tasks)})")
    task = tasks[name]
    log.info("running '%s' on its own: products go to %s", name, project / INTERACTIVE_ROOT)
    return Stage(
        name=name,
        params=params,
        product={k: Path(v) for k, v in task.product.items()},
        upstream={u: {k: Path(v) for k, v in tasks[u].product.items()} for u in task.upstream},
        project=project,
        interactive=True,
    )


def _show_identity(stage: Stage) -> None:
    """Head the executed report with the run identity, so the report, the product metadata and the
    W&B run can be matched by one id."""
    if stage.identity is None:
        return
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    build = os.environ.get("NBOPS_BUILD_ID", "")
    display(Markdown(f"*run identity* `{stage.identity}` · *build* `{build}` · `nbops why {stage.name}` explains why it ran"))


class _ReportLog(logging.StreamHandler):  # type: ignore[type-arg]
    """nbops warnings in an executed report: on the stderr of the moment (each cell's, as the kernel
    or ploomber-engine captures it), with the project's paths shown relative to it."""

    def __init__(self, project: Path) -> None:
        super().__init__()
        self.project = project
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it; the current stderr is used instead
        pass

    def format(self, record: logging.LogRecord) -> str:
        from nbops.report import relative_text

        return relative_text(super().format(record), self.project)


def _report_logging(project: Path) -> None:
    """In a report, nbops warnings go to the report with relative paths (a reader's report holds no
    absolute path of the project); once per process, since ploomber-engine runs every notebook in one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    logger = logging.getLogger("nbops")
    for handler in logger.handlers:
        if isinstance(handler, _ReportLog):
            handler.project = project
            return
    handler = _ReportLog(project)
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)


def run_identity(task: str) -> str | None:
    """This task run's identity, computed by ``nbops build`` before Ploomber started (None outside a build)."""
    return run_identities().get(task)


def run_identities() -> dict[str, str]:
    raw = os.environ.get(IDENTITIES_ENV, "")
    try:
        return dict(json.loads(raw)) if raw else {}
    except (ValueError, TypeError):
        log.warning("ignoring %s: not a JSON object", IDENTITIES_ENV)
        return {}


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return {"nb": value}
