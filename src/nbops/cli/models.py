"""``nbops models``, ``nbops package`` and ``nbops serve``: the registry, the wheel, the service."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.cli.common import add_env_args, add_wait_arg, project_of, registry_of, say_waiting, text_table
from nbops.errors import NbopsError

if TYPE_CHECKING:
    from nbops.deploy.compiled_trees import CompiledTrees
    from nbops.registry.store import ModelVersion


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "models", help="list, show, promote or roll back registered model versions; their history of events"
    )
    add_env_args(p)
    p.add_argument("action", choices=["list", "show", "promote", "rollback", "history"])
    p.add_argument("version", nargs="?", help="a version such as v0003 (or 3)")
    p.add_argument(
        "--reason", help="why production changes (promote, rollback: required; recorded in the registry's history)"
    )
    p.add_argument("--json", action="store_true", help="history: one JSON object per event")
    add_wait_arg(p)
    p.set_defaults(func=models)
    p = sub.add_parser(
        "reproduce", help="rebuild a registered version from its commit, lock, values and kept data; compare bytes"
    )
    add_env_args(p)
    p.add_argument("version", help="a version such as v0003 (or 3)")
    p.add_argument("--keep", action="store_true", help="keep the temporary checkout and its products")
    p.set_defaults(func=reproduce)
    p = sub.add_parser("package", help="build the scoring wheel of a version (default: production) into dist/")
    add_env_args(p)
    p.add_argument("version", nargs="?")
    p.add_argument("--dist", default="dist")
    p.add_argument(
        "--compiled",
        action="store_true",
        help="a platform wheel that scores with the trees compiled to machine code (lleaves): several times "
        "LightGBM's batch throughput, same predictions (within 1e-9); compiling takes ~20 s, cached under "
        "<root>/.nbops/cache/compiled",
    )
    p.set_defaults(func=package)
    p = sub.add_parser("serve", help="serve a registered version (default: production) over REST with uvicorn")
    add_env_args(p)
    p.add_argument("version", nargs="?")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--prediction-log", default=None)
    p.set_defaults(func=serve)


def models(args: argparse.Namespace) -> int:
    registry, _ = registry_of(args)
    aliases = registry.aliases()
    if args.action in ("promote", "rollback") and not (args.reason or "").strip():
        raise NbopsError(
            f'`nbops models {args.action}` changes production and needs --reason "...": say why (it is recorded '
            "in the registry's history with your name and the time; see `nbops models history`)"
        )
    if args.action == "history":
        return _history(registry, args.version, as_json=args.json)
    if args.action == "list":
        versions = registry.versions()
        damaged = registry.damaged()
        if not versions and not damaged:
            print(f"no model registered yet in {registry.root}; `make run` registers one")
            return 0
        rows = []
        for v in versions:
            tags = [a for a in ("production", "candidate") if aliases.get(a) == v.version]
            metric = v.metadata.get("gate", {}).get("metric", "")
            rows.append(
                {
                    "version": v.version,
                    "aliases": ",".join(tags),
                    "created": v.metadata.get("created_at", ""),
                    metric or "metric": f"{v.metadata['metrics'].get(metric, float('nan')):.4f}" if metric else "",
                    "data": v.metadata["data"]["fingerprint"][:12],
                    "git": (v.metadata.get("git_commit") or "")[:8],
                }
            )
        print(f"registry {registry.root}")
        if rows:
            print(text_table(rows, list(rows[0])))
        for name, why in damaged.items():
            print(f"{name}  DAMAGED: {why}; it cannot be promoted, packaged or served", file=sys.stderr)
        return 0
    if args.action == "show":
        version = registry.get(args.version) if args.version else registry.alias("production")
        if version is None:
            print(f"no production model in {registry.root}", file=sys.stderr)
            return 2
        registry.verify(version.version)
        print(json.dumps(version.metadata, indent=2, default=str))
        print(f"\nfiles verified against their checksums; card: {version.file('card.html')}")
        print(f"history: `nbops models history {version.version}`")
        return 0
    from nbops.pipeline.operations import promote_version, rollback_production

    if args.action == "promote":
        if not args.version:
            raise NbopsError("`nbops models promote` needs a VERSION (see `nbops models list`)")
        previous, version = promote_version(
            registry,
            args.version,
            reason=args.reason.strip(),
            wait=not args.no_wait,
            on_wait=say_waiting,
        )
        print(f"production: {previous or 'none'} -> {version.version}")
        return 0
    before, after = rollback_production(
        registry, reason=args.reason.strip(), wait=not args.no_wait, on_wait=say_waiting
    )
    print(f"production rolled back: {before} -> {after}")
    return 0


def _history(registry: Any, version: str | None, *, as_json: bool) -> int:
    """``nbops models history [VERSION] [--json]``: every register, promote, rollback and gate event."""
    import json

    from nbops.registry.store import version_name

    events = registry.history()
    if version:
        name = version_name(version)
        events = [e for e in events if e.get("version") == name or e.get("previous") == name]
    if as_json:
        for event in events:
            print(json.dumps(event, sort_keys=True))
        return 0
    if not events:
        print(f"no registry events yet in {registry.root}" + (f" for {version}" if version else ""))
        return 0
    from nbops.registry.card import history_rows

    rows = history_rows(events)
    print(f"registry {registry.root}")
    print(text_table(rows, list(rows[0])))
    return 0


def reproduce(args: argparse.Namespace) -> int:
    """``nbops reproduce VERSION``: 0 when the rebuild is byte-identical, 1 when it differs."""
    from nbops.pipeline.reproduce import reproduce as run_reproduce

    registry, _ = registry_of(args)
    result = run_reproduce(
        project_of(args), registry, args.version, keep=args.keep, report=lambda line: print(line, file=sys.stderr)
    )
    print(result.text())
    return 0 if result.identical else 1


def package(args: argparse.Namespace) -> int:
    from nbops.deploy.wheel import build_wheel

    registry, checked = registry_of(args)
    version = registry.get(args.version) if args.version else registry.alias("production")
    if version is None:
        raise NbopsError(f"no production model in {registry.root} to package; run `make run` or name a VERSION")
    registry.verify(version.version)
    compiled = _compiled_trees(version, project_of(args) / checked.settings.root) if args.compiled else None
    wheel = build_wheel(version, project_of(args) / args.dist, compiled=compiled)
    print(f"built {wheel} (model {version.version}); install it with `pip install {wheel}` ([serve] for the API)")
    if compiled is not None:
        print(
            f"it scores with the compiled trees ({compiled.descriptor.compiler}, {compiled.descriptor.platform}, "
            f"CPU baseline {compiled.descriptor.target_cpu}; within {compiled.max_abs_difference:.1g} of LightGBM "
            'on the check rows): `m.engine` says "lleaves"; on another platform it falls back to LightGBM '
            "with a warning"
        )
    return 0


def _compiled_trees(version: ModelVersion, root: Path) -> CompiledTrees:
    """The version's trees compiled (or from the cache under the products root), saying which."""
    from nbops.config.paths import COMPILED_CACHE
    from nbops.deploy.compiled_trees import cache_key, compile_trees

    cache = root / COMPILED_CACHE
    model_text = version.file("model.txt").read_bytes()
    if not (cache / f"{cache_key(hashlib.sha256(model_text).hexdigest())}.so").exists():
        print(
            f"compiling the trees of {version.version} with lleaves (about 20 s on a quiet core; cached in {cache})",
            file=sys.stderr,
            flush=True,
        )
    trees = compile_trees(model_text, cache)
    where = f"from the cache ({trees.cache_file})" if trees.from_cache else f"in {trees.seconds:.1f} s"
    print(f"compiled trees {where}", file=sys.stderr)
    return trees


def serve(args: argparse.Namespace) -> int:
    from nbops.runtime.model import ScoringModel
    from nbops.runtime.serve import serve as serve_model

    registry, checked = registry_of(args)
    version = registry.get(args.version) if args.version else registry.alias("production")
    if version is None:
        raise NbopsError(f"no production model in {registry.root} to serve; run `make run` first")
    model = ScoringModel.from_folder(version.path)
    log_dir = args.prediction_log or str(Path(checked.settings.root) / "data" / "prediction_log")
    print(
        f"serving {version.metadata['package']} {version.version} on http://{args.host}:{args.port} "
        f"(docs at /docs, KServe V2 under /v2); prediction log in {log_dir}"
    )
    serve_model(model, host=args.host, port=args.port, log_dir=log_dir)
    return 0
