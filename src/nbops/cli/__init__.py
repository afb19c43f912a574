"""The ``nbops`` command line: one module per group of commands, each only parsing and printing.

Heavy libraries are imported inside each command, so ``nbops check`` answers in well under a second.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from nbops.errors import NbopsError

# The modules that add commands, in the order `nbops --help` lists them.
COMMANDS = ("check", "build", "runs", "automation", "models", "monitoring", "simulate")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="nbops", description="Notebook-native MLOps: run, check and inspect the pipeline."
    )
    parser.add_argument(
        "--project", default=None, help="project folder (default: the nearest folder above holding pipeline.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nbops.cli.{name}").add_parser(sub)
    return parser


def _command_at(argv: list[str]) -> int | None:
    """Where the command word is, after the global options (``nbops --project P -v simulate ...``)."""
    i = 0
    while i < len(argv):
        if argv[i] == "--project":
            i += 2
        elif argv[i].startswith("--project=") or argv[i] in ("-v", "--verbose"):
            i += 1
        else:
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if hasattr(signal, "SIGPIPE"):  # `nbops drift ... | head` ends quietly, like other commands
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    at = _command_at(argv)
    if at is not None and argv[at] == "simulate":  # its own parser: argparse cannot pass "--rows" through REMAINDER
        from nbops.cli.simulate import main as simulate

        return simulate(argv[at + 1 :])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except NbopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Imported lazily: loading the scoring runtime costs seconds that `nbops check` must not pay.
        runtime = sys.modules.get("nbops.runtime.integrity")
        if runtime is not None and isinstance(exc, runtime.IntegrityError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
