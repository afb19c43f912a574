"""``nbops simulate``: write a simulated credit-risk table (the history, or a later month under a
drift scenario) and its ground-truth sidecar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The simulator (numpy, pandas) is imported when the command runs: `nbops --help` and the other
# commands build this parser too, and must not pay for it.


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Parsed by main() itself (argparse cannot pass "--rows" through REMAINDER); listed for --help.
    p = sub.add_parser(
        "simulate", help="write a simulated credit-risk table (see `nbops simulate --help`)", add_help=False
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.rest))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from nbops.data.simulate.catalogue import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="nbops simulate",
        description=(
            "Simulate a credit-risk table: the two-year history (default) or, with --batch K, "
            "the K-th monthly batch after it under a drift scenario. Writes the table "
            "(.csv/.parquet/.pq) and a <out>.truth.json sidecar."
        ),
    )
    parser.add_argument("--rows", type=_positive_int, default=100_000, help="rows (default 100000)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--drift",
        choices=SCENARIOS,
        default="none",
        help="drift scenario for --batch (default none)",
    )
    parser.add_argument("--batch", type=_positive_int, default=None, help="monthly batch K >= 1 after the history")
    parser.add_argument("--start", default="2023-01", help="first history month YYYY-MM (default 2023-01)")
    parser.add_argument("--months", type=_positive_int, default=24, help="months in the history (default 24)")
    parser.add_argument("--out", required=True, help="output path (.csv, .parquet or .pq)")
    return parser


def _fail(parser: argparse.ArgumentParser, message: str) -> int:
    """Report a usage error the way argparse does and return exit code 2."""
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"{parser.prog}: error: {message}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    """``nbops simulate``.

    Without ``--batch`` it writes the two-year history; with ``--batch K`` the K-th
    monthly batch after it under ``--drift``.  Prints where it wrote.

    Args:
        argv: Arguments without the program name (``None`` -> ``sys.argv[1:]``).

    Returns:
        Exit code: 0 on success, 2 on bad arguments, 1 if writing failed.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and the message (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    from nbops.data.io import SUPPORTED_SUFFIXES
    from nbops.data.simulate import simulate_batch, simulate_history, write_simulation

    if args.batch is None and args.drift != "none":
        return _fail(
            parser,
            f"--drift {args.drift} needs --batch K: drift scenarios apply to later monthly "
            "batches, not to the history; pass --batch K (K >= 1) to simulate the K-th month "
            "after the history under this scenario",
        )
    suffix = Path(args.out).suffix
    if suffix.lower() not in SUPPORTED_SUFFIXES:
        return _fail(
            parser,
            f"unsupported output suffix {suffix!r} in --out {args.out}; "
            f"supported suffixes: {', '.join(SUPPORTED_SUFFIXES)}",
        )
    try:
        if args.batch is None:
            df, truth = simulate_history(rows=args.rows, seed=args.seed, start=args.start, months=args.months)
        else:
            df, truth = simulate_batch(
                args.batch,
                rows=args.rows,
                seed=args.seed,
                drift=args.drift,
                start=args.start,
                months=args.months,
            )
    except ValueError as exc:
        return _fail(parser, str(exc))
    try:
        table_path, truth_path = write_simulation(df, truth, args.out)
    except OSError as exc:
        sys.stderr.write(f"{parser.prog}: error: could not write {args.out}: {exc}\n")
        return 1
    what = "history" if truth.batch is None else f"batch {truth.batch} ({truth.scenario})"
    sys.stdout.write(
        f"wrote {truth.rows} rows of {what}, months {truth.months[0]}..{truth.months[-1]}, "
        f"default rate {truth.default_rate:.4f}, to {table_path}\n"
        f"wrote truth to {truth_path}\n"
    )
    return 0
