"""``python -m <package> score IN OUT`` and ``python -m <package> serve``: the wheel's command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from .compiled import ENGINE_COMPILED, CompiledModelWarning
from .model import IntegrityError, ScoringModel
from .schema import InputError

LIMIT_FLAGS = (
    "max_records",
    "max_body_bytes",
    "max_inflight_bytes",
    "max_connections",
    "header_timeout",
    "body_timeout",
    "public_metrics",
)


def _engine(model: ScoringModel) -> str:
    """What scored, in the closing line of a compiled wheel's run (the default wheel's line is unchanged)."""
    if model.engine == ENGINE_COMPILED:
        return "; scored by the compiled trees (lleaves)"
    if model.engine_notice is not None:
        return "; scored by LightGBM: the compiled trees could not be used (see the warning above)"
    return ""


def main(load: Callable[[], ScoringModel], prog: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}", description="Score files or serve a REST API with the packaged model."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score a CSV or Parquet file into a CSV or Parquet file, in chunks")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--chunk-rows", type=int, default=100_000)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser(
        "serve",
        help="serve POST /predict, the Open Inference Protocol (/v2), /health, /metadata, /metrics with uvicorn",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--prediction-log", default=None, help="folder for the JSON-lines prediction log")
    limits = p.add_argument_group("limits (each defaults to its environment variable, then to the value shown)")
    limits.add_argument("--max-records", type=int, help="records per request (NBOPS_MAX_RECORDS; 10000)")
    limits.add_argument(
        "--max-body-bytes", type=int, help="bytes per request body (NBOPS_MAX_BODY_BYTES; 4 KiB a record + 64 KiB)"
    )
    limits.add_argument(
        "--max-inflight-bytes",
        type=int,
        help="bytes of bodies held at once, all requests (NBOPS_MAX_INFLIGHT_BYTES; 4 bodies)",
    )
    limits.add_argument(
        "--max-connections", type=int, help="connections at once, 503 beyond (NBOPS_MAX_CONNECTIONS; 1000)"
    )
    limits.add_argument(
        "--header-timeout", type=float, help="seconds to send a request's headers (NBOPS_HEADER_TIMEOUT; 10)"
    )
    limits.add_argument("--body-timeout", type=float, help="seconds to send a request's body (NBOPS_BODY_TIMEOUT; 30)")
    limits.add_argument(
        "--public-metrics",
        action="store_const",
        const=True,
        help="/metrics answers without the token, for a Prometheus scrape (NBOPS_PUBLIC_METRICS=1)",
    )
    sub.add_parser("info", help="print the model version and metadata")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CompiledModelWarning)
            model = load()
        for warning in caught:  # a compiled wheel that falls back to LightGBM says why, on one line
            if issubclass(warning.category, CompiledModelWarning):
                sys.stderr.write(f"warning: {warning.message}\n")
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        if args.command == "score":
            from .batch import score_file

            rows = score_file(model, args.input, args.output, chunk_rows=args.chunk_rows, progress=not args.quiet)
            sys.stdout.write(f"wrote {rows:,} predictions to {args.output} (model {model.version}{_engine(model)})\n")
        elif args.command == "serve":
            from .serve import Limits, serve

            given = {key: getattr(args, key) for key in LIMIT_FLAGS}
            if model.engine == ENGINE_COMPILED:
                sys.stderr.write(f"model {model.version} scores with the compiled trees (lleaves)\n")
            serve(model, host=args.host, port=args.port, log_dir=args.prediction_log, limits=Limits.from_env(**given))
        else:
            import json

            sys.stdout.write(json.dumps(model.metadata, indent=2) + "\n")
    except (InputError, IntegrityError, FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\nno output was written.\n" if args.command == "score" else f"error: {exc}\n")
        return 1 if isinstance(exc, IntegrityError) else 2
    return 0
