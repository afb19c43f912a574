"""The ``nbops`` command line. Heavy libraries are imported inside each command, so ``nbops check``
answers in well under a second."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nbops.errors import NbopsError


def _overrides(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise NbopsError(f"--set expects KEY=VALUE, found {pair!r}")
        key, raw = pair.split("=", 1)
        # YAML parsing turns "[a, b]" into a list and "0.1" into a number; the check then validates types.
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def _project(args: argparse.Namespace) -> Path:
    from nbops.paths import project_root

    return project_root(args.project)


def cmd_check(args: argparse.Namespace) -> int:
    from nbops.check import check_project

    t0 = time.perf_counter()
    checked = check_project(_project(args), args.env, _overrides(args.set))
    print(f"parameters OK: {args.env}, {len(checked.tasks)} tasks ({', '.join(t.name for t in checked.tasks)}), checked in {time.perf_counter() - t0:.2f} s")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from nbops.build import run_build, summary_text

    code, outcomes, checked = run_build(_project(args), args.env, _overrides(args.set), force=args.force)
    if code != 0:
        print(f"\nThe build failed (exit {code}); products of the tasks that succeeded are kept, and the next build reruns from the failure.", file=sys.stderr)
        return code
    print(summary_text(outcomes, checked))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from nbops.data import simulate

    return simulate.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbops", description="Notebook-native MLOps: run, check and inspect the pipeline.")
    parser.add_argument("--project", default=None, help="project folder (default: the nearest folder above holding pipeline.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def env_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--env", default="env.yaml", help="env file beside pipeline.yaml (env.test.yaml for the small sample)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override an env key (repeatable)")

    p = sub.add_parser("check", help="validate env and pipeline parameters without running anything")
    env_args(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("build", help="check parameters, run the pipeline (incrementally), print a summary")
    env_args(p)
    p.add_argument("--force", action="store_true", help="rerun every task even if up to date")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("simulate", help="write a simulated credit-risk table (see `nbops simulate --help`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except NbopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
