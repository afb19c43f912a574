"""``nbops runs`` (the runs index, newest first) and ``nbops runs diff A B`` (only what differs)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from nbops.cli.common import add_env_args, overrides, project_of, say, text_table

if TYPE_CHECKING:
    from nbops.pipeline.check import CheckedProject

DEFAULT_LIMIT = 30


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "runs",
        help="list the recorded task runs (newest first), or `nbops runs diff A B` to compare two",
        description="Every task run a build ran is recorded in <root>/.nbops/runs.jsonl. A and B of `runs diff` "
        "are run ids (the start of a run identity), build ids or registry versions (v0002: the train and evaluate "
        "runs that produced it).",
    )
    add_env_args(p)
    p.add_argument("--task", default=None, help="only the runs of this task (its parameters and metrics as columns)")
    p.add_argument("--sort", default=None, metavar="METRIC", help="best first by this metric (e.g. roc_auc)")
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"at most this many (default {DEFAULT_LIMIT}; 0: all)"
    )
    p.add_argument("--json", action="store_true", help="the records as JSON")
    p.set_defaults(func=runs)
    runs_sub = p.add_subparsers(dest="runs_command")
    d = runs_sub.add_parser("diff", help="what differs between two runs, builds or versions")
    # Given before `diff` or after it: the subcommand's defaults must not undo `nbops runs --env X diff`.
    d.add_argument("--env", default=argparse.SUPPRESS, help="env file beside pipeline.yaml")
    d.add_argument("--set", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE", help="override an env key")
    d.add_argument("a", help="run id, build id or version (vNNNN)")
    d.add_argument("b", help="run id, build id or version (vNNNN)")
    d.add_argument("--json", action="store_true", help="the diff as JSON (every segment and metric)")
    d.set_defaults(func=diff)


def _checked(args: argparse.Namespace) -> CheckedProject:
    from nbops.pipeline.check import check_project

    return check_project(project_of(args), args.env, overrides(args.set))


def runs(args: argparse.Namespace) -> int:
    """``nbops runs [--task T] [--sort METRIC] [--limit N] [--json]``."""
    from nbops.experiments.index import index_path, read_runs
    from nbops.experiments.table import as_text, runs_rows, sort_runs
    from nbops.pipeline.runs import runs_root

    root = runs_root(_checked(args))
    records = read_runs(root)
    shown = sort_runs(records, task=args.task, sort=args.sort, limit=args.limit or None)
    if args.json:
        say(json.dumps([r.to_dict() for r in shown], indent=1))
        return 0
    if not records:
        say(f"No runs recorded yet in {index_path(root)}: `nbops build` records every task run it runs.")
        return 0
    columns, rows = runs_rows(shown, task=args.task, sort=args.sort)
    say(text_table([{c: as_text(r.get(c), c) for c in columns} for r in rows], columns))
    total = len([r for r in records if args.task is None or r.task == args.task])
    if len(shown) < total:
        say(f"({len(shown)} of {total} runs; --limit 0 shows all)")
    say("`nbops runs diff A B` compares two runs, builds or versions.")
    return 0


def diff(args: argparse.Namespace) -> int:
    """``nbops runs diff A B [--json]``."""
    from nbops.experiments.diff import diff_text
    from nbops.pipeline.runs import diff as run_diff

    result = run_diff(_checked(args), args.a, args.b)
    say(json.dumps(result.to_dict(), indent=1) if args.json else diff_text(result))
    return 0
