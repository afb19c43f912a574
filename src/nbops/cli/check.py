"""``nbops check``: validate the env file and every task's parameters, in well under a second."""

from __future__ import annotations

import argparse
import time

from nbops.cli.common import add_env_args, overrides, project_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate env and pipeline parameters without running anything")
    add_env_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nbops.pipeline.check import check_project

    t0 = time.perf_counter()
    checked = check_project(project_of(args), args.env, overrides(args.set))
    print(
        f"parameters OK: {args.env}, {len(checked.tasks)} tasks ({', '.join(t.name for t in checked.tasks)}), checked "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    return 0
