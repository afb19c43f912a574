"""The ``nbops`` command line. Heavy libraries are imported inside each command, so ``nbops check``
answers in well under a second."""

from __future__ import annotations

import argparse
import logging
import signal
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
    from nbops.config.paths import project_root

    return project_root(args.project)


def cmd_check(args: argparse.Namespace) -> int:
    from nbops.pipeline.check import check_project

    t0 = time.perf_counter()
    checked = check_project(_project(args), args.env, _overrides(args.set))
    print(f"parameters OK: {args.env}, {len(checked.tasks)} tasks ({', '.join(t.name for t in checked.tasks)}), checked in {time.perf_counter() - t0:.2f} s")
    return 0


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
            self._line(f"  ▸ {task:<12} {_bar(event)}")
        elif kind == "failed" and task:
            self.failed.add(task)

    def finish(self, at: float | None = None) -> None:
        """End the current task's line (when the next one starts, or the build ends)."""
        if self.task is None:
            return
        mark = "✗" if self.task in self.failed else "✓"
        self._line(f"  {mark} {self.task:<12} {(at or time.time()) - self.started:6.1f} s" + (" failed" if self.task in self.failed else ""), final=True)
        self.task = None

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


def _bar(event: dict[str, Any], width: int = 24) -> str:
    n, total, unit = int(event.get("n") or 0), event.get("total"), event.get("unit") or ""
    desc = str(event.get("desc") or "")
    if not total:
        return f"{desc} {n:,} {unit}"
    done = min(1.0, n / total)
    filled = int(done * width)
    return f"{desc} [{'█' * filled}{'·' * (width - filled)}] {n:,}/{total:,} {unit}"


def cmd_build(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import failure_text, run_build, summary_text

    display = BuildProgress()
    code, outcomes, checked = run_build(_project(args), args.env, _overrides(args.set), force=args.force, until=args.until, task=args.task, on_event=display)
    display.finish()
    if code != 0:
        print(failure_text(checked), file=sys.stderr)
        return code
    print(summary_text(outcomes, checked))
    return 0


def _registry(args: argparse.Namespace):
    from nbops.pipeline.check import check_project
    from nbops.data.ingest import dataset_name
    from nbops.registry.publish import registry_for

    project = _project(args)
    checked = check_project(project, args.env, _overrides(args.set))
    # The registry's location is a parameter of the register task in pipeline.yaml.
    register = next((t for t in checked.tasks if t.name == "register"), None)
    root = Path(register.params["registry_root"]) if register else Path(checked.settings.root) / "registry"
    root = root if root.is_absolute() else project / root
    return registry_for(root, dataset_name(checked.settings)), checked


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


def cmd_models(args: argparse.Namespace) -> int:
    registry, _ = _registry(args)
    aliases = registry.aliases()
    if args.action == "list":
        versions = registry.versions()
        if not versions:
            print(f"no model registered yet in {registry.root}; `make run` registers one")
            return 0
        rows = []
        for v in versions:
            tags = [a for a in ("production", "candidate") if aliases.get(a) == v.version]
            metric = v.metadata.get("gate", {}).get("metric", "")
            rows.append({"version": v.version, "aliases": ",".join(tags), "created": v.metadata.get("created_at", ""), metric or "metric": f"{v.metadata['metrics'].get(metric, float('nan')):.4f}" if metric else "", "data": v.metadata["data"]["fingerprint"][:12], "git": (v.metadata.get("git_commit") or "")[:8]})
        print(f"registry {registry.root}")
        print(_table(rows, list(rows[0])))
        return 0
    if args.action == "show":
        import json

        version = registry.get(args.version) if args.version else registry.alias("production")
        if version is None:
            print(f"no production model in {registry.root}", file=sys.stderr)
            return 2
        registry.verify(version.version)
        print(json.dumps(version.metadata, indent=2, default=str))
        print(f"\nfiles verified against their checksums; card: {version.file('card.html')}")
        return 0
    if args.action == "promote":
        if not args.version:
            raise NbopsError("`nbops models promote` needs a VERSION (see `nbops models list`)")
        version = registry.get(args.version)
        registry.verify(version.version)
        previous = registry.promote(version.version, "promoted by hand (nbops models promote)")
        print(f"production: {previous or 'none'} -> {version.version}")
        return 0
    if args.action == "rollback":
        before, after = registry.rollback()
        print(f"production rolled back: {before} -> {after}")
        return 0
    raise NbopsError(f"unknown action {args.action}")


def cmd_package(args: argparse.Namespace) -> int:
    from nbops.deploy.wheel import build_wheel

    registry, _ = _registry(args)
    version = registry.get(args.version) if args.version else registry.alias("production")
    if version is None:
        raise NbopsError(f"no production model in {registry.root} to package; run `make run` or name a VERSION")
    registry.verify(version.version)
    wheel = build_wheel(version, _project(args) / args.dist)
    print(f"built {wheel} (model {version.version}); install it with `pip install {wheel}` ([serve] for the API)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from nbops.runtime.model import ScoringModel
    from nbops.runtime.serve import serve

    registry, checked = _registry(args)
    version = registry.get(args.version) if args.version else registry.alias("production")
    if version is None:
        raise NbopsError(f"no production model in {registry.root} to serve; run `make run` first")
    model = ScoringModel.from_folder(version.path)
    log_dir = args.prediction_log or str(Path(checked.settings.root) / "data" / "prediction_log")
    print(f"serving {version.metadata['package']} {version.version} on http://{args.host}:{args.port} (docs at /docs); prediction log in {log_dir}")
    serve(model, host=args.host, port=args.port, log_dir=log_dir)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    import json

    from nbops.monitoring.batches import read_frame
    from nbops.monitoring.drift import DriftThresholds, compare, profile_of_table
    from nbops.monitoring.profile import ReferenceProfile

    reference = Path(args.reference)
    current = read_frame(args.current)
    if current.empty:
        raise NbopsError(f"{args.current} has no rows: there is nothing to compare (a batch with no rows is a data-quality problem, not drift)")
    if reference.suffix.lower() == ".json" and not reference.exists():
        raise NbopsError(f"{reference}: file not found")
    if reference.suffix == ".json":
        profile = ReferenceProfile.load(reference)
    else:
        ref_frame = read_frame(reference)
        profile = profile_of_table(ref_frame, exclude=tuple(args.exclude))
    report = compare(profile, current, DriftThresholds(psi=args.psi_threshold, min_drifted_features=args.min_drifted))
    if args.json:
        out = {"dataset_drift": report.dataset_drift, "features": [{"name": f.name, "method": f.method, "score": round(f.score, 6), "drifted": f.drifted} for f in report.features]}
        if report.missing_columns:
            out["missing_columns"] = report.missing_columns
        print(json.dumps(out))
    else:
        frame = report.frame()[["name", "kind", "method", "score", "drifted", "wasserstein", "jensen_shannon"]]
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"\ndataset drift: {report.dataset_drift} ({len(report.drifted)} of {len(report.features)} features at PSI >= {args.psi_threshold:g})")
        if report.missing_columns:
            print(f"missing columns: {', '.join(report.missing_columns)}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from nbops.monitoring.batches import pending_batches, read_frame, read_prediction_log
    from nbops.monitoring.drift import DriftThresholds
    from nbops.monitoring.history import replace_alerts, upsert_history
    from nbops.monitoring.monitor import AlertRules, monitor_batch
    from nbops.monitoring.profile import ReferenceProfile
    from nbops.registry.publish import PROFILE_FILE
    from nbops.runtime.model import ScoringModel

    registry, checked = _registry(args)
    task = next(t for t in checked.tasks if t.name == "monitor")
    p = task.params
    version = registry.alias("production")
    if version is None:
        raise NbopsError(f"no production model in {registry.root} to monitor against; run `make run` first")
    model = ScoringModel.from_folder(version.path)
    profile = ReferenceProfile.load(version.file(PROFILE_FILE))
    rules = AlertRules(DriftThresholds(p["psi_threshold"], p["min_drifted_features"]), p["max_auc_drop"], p["max_calibration_error"])
    root = Path(checked.settings.root)
    batch_dir = Path(task.product["batches"])
    history, alerts = Path(task.product["history"]), Path(task.product["alerts"])
    pending = pending_batches(batch_dir, root / "data" / "prediction_log", history)
    if not pending:
        print(f"nothing to monitor: every batch in {batch_dir} is in {history}")
        return 0
    target = version.metadata["target"]
    for batch_id, path in pending:
        try:
            frame = read_prediction_log(path) if path.suffix == ".jsonl" else read_frame(path)
        except Exception as exc:  # an unreadable file is a data-quality alert, not a crash
            upsert_history(history, [{"batch_id": batch_id, "status": "alert", "status_reason": "critical: not comparable: the file could not be read", "rows": 0}])
            replace_alerts(alerts, batch_id, [{"kind": "data_quality", "severity": "critical", "message": f"{path}: {exc}"}])
            print(f"{batch_id}: unreadable ({exc})")
            continue
        predictions = frame["prediction"].to_numpy() if "prediction" in frame.columns and path.suffix == ".jsonl" else None
        result = monitor_batch(batch_id, frame, model=model, profile=profile, reference_metrics=version.metadata["metrics"], rules=rules, target=target if target in frame.columns else None, predictions=predictions, month=batch_id)
        upsert_history(history, [result.row])
        replace_alerts(alerts, batch_id, result.alerts)
        print(f"{batch_id}: {len(frame):,} rows, {result.row['status']} ({result.row['status_reason']}), {len(result.alerts)} alert(s)" + "".join(f"\n  - {a['severity']}: {a['message']}" for a in result.alerts))
    print(f"history: {history}\nalerts: {alerts}")
    return 0


def _delegate(target: str):
    """A command implemented in another module, imported only when it runs (keeps `nbops check` fast)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)(args)

    return run


def cmd_why(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import resolve_project
    from nbops.pipeline.lineage import why_text

    checked = resolve_project(_project(args), args.env, _overrides(args.set))
    print(why_text(checked.tasks, Path(checked.settings.root), args.task))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from nbops.pipeline.build import last_build_record, resolve_project
    from nbops.pipeline.plot import task_states, write_pipeline_picture

    project = _project(args)
    checked = resolve_project(project, args.env, _overrides(args.set))
    root = Path(checked.settings.root)
    record = last_build_record(root) or {}
    out = Path(args.out) if args.out else root / "reports"
    svg, page = write_pipeline_picture(checked.tasks, root, project, out if out.is_absolute() else project / out, record.get("failure"))
    for s in task_states(checked.tasks, root, project, record.get("failure")):
        print(f"  {s.name:<12} {s.state}" + (f": {'; '.join(s.reasons)}" if s.state == "will run" else ""))
    print(f"pipeline picture: {page} (and {svg.name} beside it); it needs no network to open")
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
    p.add_argument("--until", metavar="TASK", help="build only TASK and the tasks it depends on")
    p.add_argument("--task", metavar="TASK", help="build only TASK (its upstream products must exist): what each Airflow task runs")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("why", help="say why a task reran in the last build, or why it would (or would not) run now")
    env_args(p)
    p.add_argument("task", nargs="?", help="a task in pipeline.yaml (default: every task)")
    p.set_defaults(func=cmd_why)
    p = sub.add_parser("plot", help="draw the pipeline (tasks, products, what the next build will run) as SVG + HTML, offline")
    env_args(p)
    p.add_argument("--out", default=None, help="folder for pipeline.svg and pipeline.html (default: <root>/reports)")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("export", help="export the pipeline to an orchestrator (Airflow)")
    env_args(p)
    p.add_argument("target", choices=["airflow"])
    p.add_argument("out_dir", help="folder to write the DAG file into (e.g. your Airflow dags/ folder)")
    p.add_argument("--dag-id", default=None, help="Airflow DAG id (default: nbops_<project folder>)")
    p.add_argument("--schedule", default=None, help="cron expression (default: `schedule` in the env file)")
    p.set_defaults(func=_delegate("nbops.pipeline.airflow:cmd_export"))
    p = sub.add_parser("schedule", help="install or remove a crontab entry that runs the pipeline on a schedule")
    env_args(p)
    p.add_argument("action", choices=["install", "remove", "show"])
    p.add_argument("--cron", default=None, help="cron expression (default: `schedule` in the env file)")
    p.set_defaults(func=_delegate("nbops.pipeline.schedule:cmd_schedule"))
    p = sub.add_parser("retrain", help="retrain, evaluate and register (with the promotion gate) when monitoring says so")
    env_args(p)
    p.add_argument("--if-needed", action="store_true", help="decide from the monitoring history and say why")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, run nothing")
    p.set_defaults(func=_delegate("nbops.pipeline.retrain:cmd_retrain"))
    p = sub.add_parser("compare", help="Markdown table of a candidate model against production, overall and by segment")
    env_args(p)
    p.add_argument("--candidate", default=None, help="version to compare (default: the candidate alias, else the newest)")
    p.add_argument("--production", default=None, help="version to compare against (default: production)")
    p.add_argument("--out", default=None, help="write the Markdown here (default: <root>/reports/compare.md)")
    p.set_defaults(func=_delegate("nbops.registry.compare:cmd_compare"))
    p = sub.add_parser("models", help="list, show, promote or roll back registered model versions")
    env_args(p)
    p.add_argument("action", choices=["list", "show", "promote", "rollback"])
    p.add_argument("version", nargs="?", help="a version such as v0003 (or 3)")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("package", help="build the scoring wheel of a version (default: production) into dist/")
    env_args(p)
    p.add_argument("version", nargs="?")
    p.add_argument("--dist", default="dist")
    p.set_defaults(func=cmd_package)
    p = sub.add_parser("serve", help="serve a registered version (default: production) over REST with uvicorn")
    env_args(p)
    p.add_argument("version", nargs="?")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--prediction-log", default=None)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("drift", help="compare two tables (or a stored reference profile and a table) for drift")
    p.add_argument("reference", help="a CSV/Parquet table, or a reference_profile.json from a model version")
    p.add_argument("current", help="the CSV/Parquet table to compare")
    p.add_argument("--json", action="store_true", help="print {dataset_drift, features: [{name, method, score, drifted}]}")
    p.add_argument("--psi-threshold", type=float, default=0.2)
    p.add_argument("--min-drifted", type=int, default=1, help="drifted features that make the dataset drifted")
    p.add_argument("--exclude", action="append", default=[], help="columns to leave out (ids, target)")
    p.set_defaults(func=cmd_drift)
    p = sub.add_parser("monitor", help="monitor every batch not monitored yet (and the serving prediction log)")
    env_args(p)
    p.set_defaults(func=cmd_monitor)
    p = sub.add_parser("simulate", help="write a simulated credit-risk table (see `nbops simulate --help`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if hasattr(signal, "SIGPIPE"):  # `nbops drift ... | head` ends quietly, like other commands
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv and argv[0] == "simulate":  # its own parser: argparse cannot pass "--rows" through REMAINDER
        from nbops.data import simulate

        return simulate.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
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
