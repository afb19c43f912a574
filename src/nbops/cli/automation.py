"""``nbops export``, ``nbops schedule``, ``nbops retrain`` and ``nbops compare``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from nbops.cli.common import add_env_args, add_wait_arg, overrides, project_of, registry_of, say, say_waiting
from nbops.errors import NbopsError

# `nbops compare` prints the report up to this many lines; the whole of it is in the file.
PRINT_LINES = 150


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="export the pipeline to an orchestrator (Airflow)")
    add_env_args(p)
    p.add_argument("target", choices=["airflow"])
    p.add_argument("out_dir", help="folder to write the DAG file into (e.g. your Airflow dags/ folder)")
    p.add_argument("--dag-id", default=None, help="Airflow DAG id (default: nbops_<project folder>)")
    p.add_argument("--schedule", default=None, help="cron expression (default: `schedule` in the env file)")
    p.set_defaults(func=export)
    p = sub.add_parser("schedule", help="install or remove a crontab entry that runs the pipeline on a schedule")
    add_env_args(p)
    p.add_argument("action", choices=["install", "remove", "show"])
    p.add_argument("--cron", default=None, help="cron expression (default: `schedule` in the env file)")
    p.set_defaults(func=schedule)
    p = sub.add_parser(
        "retrain", help="retrain, evaluate and register (with the promotion gate) when monitoring says so"
    )
    add_env_args(p)
    p.add_argument("--if-needed", action="store_true", help="decide from the monitoring history and say why")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, run nothing")
    add_wait_arg(p)
    p.set_defaults(func=retrain)
    p = sub.add_parser("compare", help="Markdown table of a candidate model against production, overall and by segment")
    add_env_args(p)
    p.add_argument(
        "--candidate", default=None, help="version to compare (default: the candidate alias, else the newest)"
    )
    p.add_argument("--production", default=None, help="version to compare against (default: production)")
    p.add_argument("--out", default=None, help="write the Markdown here (default: <root>/reports/compare.md)")
    p.set_defaults(func=compare)


def export(args: argparse.Namespace) -> int:
    """``nbops export airflow OUT_DIR [--env] [--set]... [--dag-id] [--schedule]``."""
    from nbops.pipeline.airflow import export_airflow, usage_text

    if args.target != "airflow":
        raise NbopsError(f"export target {args.target!r} is not supported; expected 'airflow'")
    result = export_airflow(
        project_of(args),
        args.out_dir,
        env_file=args.env,
        overrides=overrides(args.set),
        set_pairs=list(args.set),
        dag_id=args.dag_id,
        schedule=args.schedule,
    )
    print(usage_text(result))
    return 0


def schedule(args: argparse.Namespace) -> int:
    """``nbops schedule install|remove|show [--env ENV] [--cron EXPR]``."""
    from nbops.config.cron import validate_cron
    from nbops.pipeline import schedule as cron
    from nbops.pipeline.check import check_project

    project = project_of(args)
    cron.check_path(project, "the project folder")
    if args.action == "remove":
        removed = cron.remove(project, args.env)
        print(
            f"removed the schedule of {project} ({args.env}):\n  {removed[0]}"
            if removed
            else f"no nbops schedule for {project} ({args.env}) in the crontab: nothing removed"
        )
        return 0
    if args.action == "show":
        line = cron.find(project, args.env)
        if line is None:
            others = [x for x in cron.read_crontab() if cron.MARKER in x]
            print(f"no nbops schedule for {project} ({args.env}); `nbops schedule install --env {args.env}` adds one")
            if others:
                print("other nbops schedules in this crontab:\n" + "\n".join(f"  {x}" for x in others))
            return 0
        print(
            f"{' '.join(line.split()[:5])}  (minute hour day-of-month month day-of-week, the machine's local "
            f"time)\n{line}"
        )
        return 0
    checked = check_project(project, args.env, overrides(args.set))
    expression = (
        validate_cron(args.cron, "--cron")
        if args.cron is not None
        else validate_cron(checked.settings.schedule, f"{args.env}: schedule")
    )
    nbops, note = cron.nbops_executable(project)
    root = Path(checked.settings.root)
    root = root if root.is_absolute() else project / root
    cron.check_path(root, "the product root")
    entry = cron.ScheduleEntry(
        expression, project, args.env, nbops, root, tuple(args.set), lock=shutil.which("flock") is not None
    )
    line, replaced = cron.install(entry)
    print(
        f"{'replaced' if replaced else 'installed'} the schedule of {project} ({args.env}): {expression}\n  "
        f"{line}\nlog: {entry.log}"
    )
    daemon = cron.cron_daemon_running()
    for warning in (
        note,
        None if entry.lock else "`flock` is missing: a run that outlasts the interval can overlap the next one",
        "no cron daemon is running on this machine: the entry will not fire until one is (`sudo service cron start`)"
        if daemon is False
        else None,
    ):
        if warning:
            print(f"note: {warning}")
    return 0


def retrain(args: argparse.Namespace) -> int:
    from nbops.cli.build import BuildProgress
    from nbops.pipeline.retrain import retrain as run_retrain

    display = BuildProgress()
    try:
        return run_retrain(
            project_of(args),
            args.env,
            overrides(args.set),
            if_needed=args.if_needed,
            dry_run=args.dry_run,
            report=say,
            on_event=display,
            wait=not args.no_wait,
            on_wait=say_waiting,
        )
    finally:
        display.finish()


def compare(args: argparse.Namespace) -> int:
    """``nbops compare [--candidate V] [--production V] [--out FILE]``."""
    from nbops.pipeline.compare import compare_project

    registry, checked = registry_of(args)
    text, out = compare_project(
        registry,
        checked,
        project_of(args),
        args.env,
        candidate=args.candidate,
        production=args.production,
        out=Path(args.out).resolve() if args.out else None,
    )
    lines = text.splitlines()
    if len(lines) <= PRINT_LINES:
        print(text)
    else:
        cut = next((i for i, line in enumerate(lines) if line == "## By segment"), PRINT_LINES)
        print("\n".join(lines[:cut]) + f"\n(segment tables in the file: {len(lines) - cut} more lines)\n")
    print(f"comparison written to {out}")
    return 0
