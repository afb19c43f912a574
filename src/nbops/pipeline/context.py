"""What a stage notebook calls first: its typed parameters and its input and output paths.

A stage runs in one of three ways, and only the first writes the pipeline's products:

- under ``nbops build``: Ploomber injects ``product`` and ``upstream`` and ``nbops build`` has set
  ``NBOPS_BUILD_ID``; the injected paths are used as they are;
- in JupyterLab (``make lab``): Ploomber's extension injects the same ``product`` and ``upstream``,
  but no build id is set. The notebook reads the pipeline's upstream products (the real data and
  model) and writes its own products under ``build/interactive/`` (the pipeline root's prefix
  replaced by it), never over the pipeline's;
- opened on its own (JupyterLab without the extension, or nbval): ``product`` is None, and the same
  paths are read from ``pipeline.yaml`` with every product rooted in ``build/interactive/``, so that
  running the stage notebooks in order by hand works.

The last two are interactive: W&B stays off unless asked with ``NBOPS_TRACKING`` (offline or online).
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

from pydantic import BaseModel

from nbops import progress as events
from nbops.config import paths
from nbops.config.notebook_params import is_builtin, task_model
from nbops.config.params import StageParams, validate_params
from nbops.config.paths import project_root
from nbops.config.spec import load_env, load_tasks
from nbops.errors import ConfigError
from nbops.tracking import Tracker

INTERACTIVE_ROOT = "build/interactive"
# Products of an interactive run whose pipeline path is outside the pipeline root go under this
# folder of the interactive root (their absolute path below it), never to their pipeline path.
OUTSIDE_ROOT = "outside-root"
# Set by `nbops build` for the Ploomber process: {task: run identity}; see nbops.pipeline.lineage.
IDENTITIES_ENV = "NBOPS_RUN_IDENTITIES"
# Set by `nbops build` for the Ploomber process: its presence means "this is a pipeline build".
BUILD_ID_ENV = "NBOPS_BUILD_ID"
# An interactive run logs to W&B only when this asks for it ('offline' or 'online').
TRACKING_ENV = "NBOPS_TRACKING"
TRACKING_MODES = ("offline", "online", "disabled")
log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Stage(Generic[P]):
    """A stage's typed parameters, its products and its upstream products.

    ``root`` is where this run writes (the pipeline's root under a build, the interactive root
    otherwise) and ``pipeline_root`` where the pipeline's own products are, which an interactive run
    reads: evaluate's gate compares with the pipeline's production model even in the lab.
    """

    name: str
    params: P
    product: dict[str, Path]
    upstream: dict[str, dict[str, Path]]
    project: Path
    interactive: bool
    identity: str | None = None
    root: Path | None = None
    pipeline_root: Path | None = None
    # The W&B run of a task of your own (None for built-in stages, whose runners open their own).
    run: Tracker | None = None

    @property
    def registry(self) -> Path:
        """The model registry this run writes (``<root>/registry``)."""
        return paths.registry_dir(self.root or self.project)

    @property
    def production_registry(self) -> Path:
        """The pipeline's registry, whose production model this run compares with."""
        return paths.registry_dir(self.pipeline_root or self.root or self.project)

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
            if self.interactive and not path.is_relative_to(self.project / INTERACTIVE_ROOT):
                # injected by the lab: upstream products are the pipeline's, which only a build writes
                raise ConfigError(
                    f"stage '{self.name}' reads the pipeline's {path}, made by stage '{task}', which has not "
                    "been built yet; run `make run` first (a notebook run in JupyterLab writes under "
                    f"{INTERACTIVE_ROOT}/)"
                )
            raise ConfigError(
                f"stage '{self.name}' needs {path}, made by stage '{task}', which has not run yet; "
                f"run the '{task}' notebook first (or `make run`)"
            )
        return path


def stage(name: str, namespace: Mapping[str, Any]) -> Stage[Any]:
    """Resolve a notebook's parameters cell into a :class:`Stage`.

    Args:
        name: the task name in pipeline.yaml (``ingest``, ``features``, ...).
        namespace: the notebook's ``globals()``: parameter values plus ``product`` and ``upstream``.

    Returns:
        The typed parameters and absolute product paths.
    """
    # Under `nbops build`: the build's terminal shows this task's progress, and its error last.
    events.set_task(name)
    events.install_failure_hook()
    model = _model_of(name)
    values = {k: namespace[k] for k in model.model_fields if k in namespace}
    params = validate_params(model, values, where=f"notebook '{name}' parameters")
    product = namespace.get("product")
    upstream = namespace.get("upstream")
    if product is not None and isinstance(upstream, Mapping | type(None)):
        products = {k: Path(v) for k, v in _as_dict(product).items()}
        upstreams = {t: {k: Path(v) for k, v in _as_dict(p).items()} for t, p in (upstream or {}).items()}
        if not os.environ.get(BUILD_ID_ENV):
            return _injected_interactive(name, params, products, upstreams)
        project = project_root()
        root = pipeline_root(project)
        resolved: Stage[Any] = Stage(
            name=name,
            params=params,
            product=products,
            upstream=upstreams,
            project=project,
            interactive=False,
            identity=run_identity(name),
            root=root,
            pipeline_root=root,
        )
        _show_identity(resolved)
        _report_logging(resolved.project)
        return _with_run(resolved)
    project = project_root()
    env = load_env(project, env_file_in_use(), overrides={"root": str(project / INTERACTIVE_ROOT)})
    tasks = {t.name: t for t in load_tasks(project, env)}
    if name not in tasks:
        raise ConfigError(f"pipeline.yaml has no task named '{name}' (it has {', '.join(tasks)})")
    task = tasks[name]
    # On its own a notebook takes the task's values from the env file, as a build would (any value
    # the notebook itself set before this call wins): one home per value, never a notebook default.
    from_env = {k: v for k, v in task.params.items() if k in model.model_fields and k not in values}
    params = validate_params(model, {**from_env, **values}, where=f"task '{name}' run on its own ({env_file_in_use()})")
    log.info("running '%s' on its own: products go to %s", name, project / INTERACTIVE_ROOT)
    interactive_root = project / INTERACTIVE_ROOT
    resolved = Stage(
        name=name,
        params=_interactive_tracking(params),
        product={k: _keep_inside(Path(v), interactive_root) for k, v in task.product.items()},
        upstream={u: {k: Path(v) for k, v in tasks[u].product.items()} for u in task.upstream},
        project=project,
        interactive=True,
        root=interactive_root,
        pipeline_root=interactive_root,
    )
    _show_interactive(resolved, upstream_root=interactive_root)
    return _with_run(resolved)


def _injected_interactive(
    name: str, params: Any, product: dict[str, Path], upstream: dict[str, dict[str, Path]]
) -> Stage[Any]:
    """A notebook Ploomber's Jupyter extension injected, run outside a build (JupyterLab).

    Upstream paths stay the pipeline's, so the notebook explores the real data and model; every
    product (and every path parameter the stage writes into) is re-rooted under the interactive root.
    """
    project = project_root()
    interactive_root = project / INTERACTIVE_ROOT
    root = pipeline_root(project)
    rerooted = {k: interactive_path(p, root, interactive_root) for k, p in product.items()}
    resolved = Stage(
        name=name,
        params=_interactive_tracking(params),
        product=rerooted,
        upstream=upstream,
        project=project,
        interactive=True,
        root=interactive_root,
        pipeline_root=root,
    )
    log.info(
        "'%s' runs outside a pipeline build: reading the pipeline's products under %s, writing under %s",
        name,
        root,
        interactive_root,
    )
    _show_interactive(resolved, upstream_root=root)
    return _with_run(resolved)


def _model_of(name: str) -> type[StageParams]:
    """A built-in stage's parameter model, or the one a notebook of your own declares in its
    annotated parameters cell (its source found through pipeline.yaml)."""
    if is_builtin(name):
        return task_model(name, Path())
    project = project_root()
    tasks = {t.name: t for t in load_tasks(project, load_env(project, env_file_in_use()))}
    if name not in tasks:
        raise ConfigError(
            f"pipeline.yaml has no task named '{name}' (it has {', '.join(tasks)}); "
            f"add a task with 'name: {name}' and this notebook as its source, or call nbops.stage with its name"
        )
    return task_model(name, tasks[name].source)


def _with_run(stage: Stage[Any]) -> Stage[Any]:
    """A task of your own gets its W&B run as a built-in stage does (in the build's group, named by
    its run identity, its parameters as config): ``stage.run.log_metrics({...})`` in the notebook.
    Built-in stages open theirs in their runners."""
    if is_builtin(stage.name):
        return stage
    from dataclasses import replace

    from nbops.tracking import start_run

    mode = getattr(stage.params, "tracking", None)
    if mode is None:
        mode = (
            interactive_tracking()
            if stage.interactive
            else str(load_env(stage.project, env_file_in_use()).get("tracking", "disabled"))
        )
    run = start_run(
        stage.name, config=stage.params.model_dump(), mode=mode, project_dir=stage.project, identity=stage.identity
    )
    return replace(stage, run=run)


def env_file_in_use() -> str:
    """The env file this process runs with: Ploomber's (``PLOOMBER_ENV_FILENAME``, set by
    ``nbops build``), else ``NBOPS_ENV`` (the dashboards, a test), else ``env.yaml``."""
    return os.environ.get("PLOOMBER_ENV_FILENAME") or os.environ.get("NBOPS_ENV") or "env.yaml"


def pipeline_root(project: Path) -> Path:
    """The products root the pipeline's paths were rendered with: ``root`` of the env file in use
    (:func:`env_file_in_use`), relative paths from the project folder."""
    root = Path(str(load_env(project, env_file_in_use()).get("root", ".")))
    return (root if root.is_absolute() else project / root).resolve()


def interactive_path(path: Path, pipeline_root: Path, interactive_root: Path, *, project: Path | None = None) -> Path:
    """Where an interactive run writes what the pipeline writes at ``path``.

    Under the pipeline root: the same relative path under the interactive root. Already under the
    interactive root: unchanged. Anywhere else: under ``<interactive root>/outside-root/`` (by its
    absolute path), so that no pipeline path is ever written in place. A relative path is taken
    from ``project``.
    """
    path = Path(path)
    if not path.is_absolute():
        path = (project or Path.cwd()) / path
    path = path.resolve()
    interactive_root = interactive_root.resolve()
    if path.is_relative_to(interactive_root):
        return path
    if path.is_relative_to(pipeline_root):
        return interactive_root / path.relative_to(pipeline_root)
    return interactive_root / OUTSIDE_ROOT / path.relative_to(path.anchor)


def _keep_inside(path: Path, interactive_root: Path) -> Path:
    """A product of a notebook run on its own: pipeline.yaml rooted it in the interactive root unless
    its template does not use ``{{root}}``; such a product goes under ``outside-root/`` too."""
    return interactive_path(path, interactive_root.resolve(), interactive_root)


def interactive_tracking() -> str:
    """W&B mode of an interactive run: what ``NBOPS_TRACKING`` asks for, else 'disabled'."""
    mode = os.environ.get(TRACKING_ENV, "").strip().lower() or "disabled"
    if mode not in TRACKING_MODES:
        raise ConfigError(
            f"{TRACKING_ENV}={os.environ[TRACKING_ENV]!r}: expected one of {', '.join(TRACKING_MODES)}; "
            f"set {TRACKING_ENV}=offline to log this notebook to W&B, or unset it"
        )
    return mode


def _interactive_tracking(params: Any) -> Any:
    """Interactive runs log to W&B only when asked: ``tracking`` comes from ``NBOPS_TRACKING``, not
    from the env file the extension injected (nor the notebook's default)."""
    if "tracking" not in type(params).model_fields:
        return params
    return params.model_copy(update={"tracking": interactive_tracking()})


def _show_interactive(stage: Stage[Any], *, upstream_root: Path) -> None:
    """One visible line: this run is interactive, where it reads, where it writes, and W&B."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return
    if get_ipython() is None:
        return

    def shown(path: Path) -> str:
        try:
            text = str(path.relative_to(stage.project))
        except ValueError:
            text = str(path)
        return f"<code>{html.escape(text)}</code>"

    tracking = getattr(stage.params, "tracking", None)
    wandb = (
        ""
        if tracking is None
        else f" · W&amp;B <b>{html.escape(tracking)}</b>"
        + (f" (set <code>{TRACKING_ENV}=offline</code> to log)" if tracking == "disabled" else "")
    )
    display(
        HTML(
            f"<p><b>interactive run</b> (not a pipeline build): reads upstream products under "
            f"{shown(upstream_root)}, writes its products under {shown(stage.project / INTERACTIVE_ROOT)}"
            f"{wandb}</p>"
        )
    )


def _show_identity(stage: Stage[Any]) -> None:
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
    build = os.environ.get(BUILD_ID_ENV, "")
    display(
        Markdown(
            f"*run identity* `{stage.identity}` · *build* `{build}` · `nbops why {stage.name}` explains why it ran"
        )
    )


class _ReportLog(logging.StreamHandler[TextIO]):
    """nbops warnings in an executed report: on the stderr of the moment (each cell's, as the kernel
    or ploomber-engine captures it), with the project's paths shown relative to it."""

    def __init__(self, project: Path) -> None:
        super().__init__()
        self.project = project
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    @property
    def stream(self) -> TextIO:
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler sets it; the current stderr is used instead
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
