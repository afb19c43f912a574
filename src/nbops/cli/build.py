"""``nbops build``, ``nbops why`` and ``nbops plot``: run the pipeline, say why tasks run, draw it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nbops.cli.common import add_env_args, add_wait_arg, overrides, project_of, say_waiting


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build", help="check parameters, run the pipeline (incrementally), print a summary")
    add_env_args(p)
    p.add_argument("--force", action="store_true", help="rerun every task even if up to date")
    p.add_argument("--until", metavar="TASK", help="build only TASK and the tasks it depends on")
    p.add_argument(
        "--task", metavar="TASK", help="build only TASK (its upstream products must exist): what each Airflow task runs"
    )
    add_wait_arg(p)
    p.set_defaults(func=run)
    p = sub.add_parser("why", help="say why a task reran in the last build, or why it would (or would not) run now")
    add_env_args(p)
    p.add_argument("task", nargs="?", help="a task in pipeline.yaml (default: every task)")
    p.set_defaults(func=why)
    p = sub.add_parser(
        "site", help="write <root>/site/: reports, model cards, registry, runs, monitoring and the DAG, all offline"
    )
    add_env_args(p)
    p.add_argument("--out", default=None, help="folder to write the site into (default: <root>/site)")
    p.set_defaults(func=site)
    p = sub.add_parser(
        "plot", help="draw the pipeline (tasks, products, what the next build will run) as SVG + HTML, offline"
    )
    add_env_args(p)
    p.add_argument("--out", default=None, help="folder for pipeline.svg and pipeline.html (default: <root>/reports)")
    p.set_defaults(func=plot)


class BuildProgress:
    """The stages' events drawn on the terminal: one line per task, a live bar while it works.

    On a terminal each task's line is redrawn in place (``\\r``) with its current bar; elsewhere (CI
    logs, a pipe) a task gets one line when it starts and one when it ends, and no bars.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.task: str | None = None
        self.started = 0.0
        self.failed: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        kind, task = event.get("event"), event.get("task")
        if kind == "start" and task:
            self.finish(event.get("at"))
            self.task, self.started = task, float(event.get("at") or time.time())
            self._line(f"  ▸ {task}", final=not self.tty)
        elif kind == "progress" and self.tty and task == self.task:
            self._line(f"  ▸ {task:<12} {progress_bar(event)}")
        elif kind == "failed" and task:
            self.failed.add(task)

    def finish(self, at: float | None = None) -> None:
        """End the current task's line (when the next one starts, or the build ends)."""
        if self.task is None:
            return
        failed = self.task in self.failed
        self._line(
            f"  {'✗' if failed else '✓'} {self.task:<12} {(at or time.time()) - self.started:6.1f} s"
            + (" failed" if failed else ""),
            final=True,
        )
        self.task = None

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


def progress_bar(event: dict[str, Any], width: int = 24) -> str:
    """A progress event as text: ``boosting [██████··········] 57/150 tree``."""
    n, total, unit = int(event.get("n") or 0), event.get("total"), event.get("unit") or ""
    desc = str(event.get("desc") or "")
    if not total:
        return f"{desc} {n:,} {unit}"
    filled = int(min(1.0, n / total) * width)
    return f"{desc} [{'█' * filled}{'·' * (width - filled)}] {n:,}/{total:,} {unit}"


def run(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import failure_text, run_build, summary_text

    display = BuildProgress()
    code, outcomes, checked = run_build(
        project_of(args),
        args.env,
        overrides(args.set),
        force=args.force,
        until=args.until,
        task=args.task,
        on_event=display,
        wait=not args.no_wait,
        on_wait=say_waiting,
    )
    display.finish()
    if code != 0:
        print(failure_text(checked), file=sys.stderr)
        return code
    if args.task and not any(o.ran for o in outcomes):
        note = next(o.reasons[0] for o in outcomes if o.name == args.task and o.reasons)
        print(f"task '{args.task}' is {note}; nothing to do")
        return 0
    print(summary_text(outcomes, checked))
    return 0


def why(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import resolve_project
    from nbops.pipeline.lineage import why_text

    checked = resolve_project(project_of(args), args.env, overrides(args.set))
    print(why_text(checked.tasks, Path(checked.settings.root), args.task))
    return 0


def site(args: argparse.Namespace) -> int:
    from nbops.pipeline.check import check_project
    from nbops.pipeline.site import write_site

    checked = check_project(project_of(args), args.env, overrides(args.set))
    written = write_site(checked, Path(args.out).resolve() if args.out else None)
    print(f"wrote {len(written.pages)} pages to {written.folder}")
    print(f"open {written.index.as_uri()}")
    return 0


def plot(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import last_build_record, resolve_project
    from nbops.pipeline.plot import task_states, write_pipeline_picture

    project = project_of(args)
    checked = resolve_project(project, args.env, overrides(args.set))
    root = Path(checked.settings.root)
    failure = (last_build_record(root) or {}).get("failure")
    out = Path(args.out) if args.out else root / "reports"
    svg, page = write_pipeline_picture(
        checked.tasks, root, project, out if out.is_absolute() else project / out, failure
    )
    for s in task_states(checked.tasks, root, project, failure):
        print(f"  {s.name:<12} {s.state}" + (f": {'; '.join(s.reasons)}" if s.state == "will run" else ""))
    print(f"pipeline picture: {page} (and {svg.name} beside it); it needs no network to open")
    return 0
