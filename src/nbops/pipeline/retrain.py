"""Continuous training: ``nbops retrain [--if-needed]``.

A drift or performance alert, or a month whose labels have arrived, triggers retrain -> evaluate ->
register with the promotion gate. Nothing is rerun by hand: the decision only sets ``labelled_through``
(the labelled production months that join the training data) and starts the ordinary incremental
build, so Ploomber reruns exactly the tasks whose inputs changed (ingest and everything downstream when
new labelled months arrive; nothing when nothing changed).

The decision is a pure function of the monitoring history, the alerts and a small state file,
``<root>/.nbops/retrain.json``, which remembers what was already acted on. That is what makes it
stable: with the simulator, monitoring after a retrain recreates the same months (same seed) and
raises alerts on them again; they are on batches already acted on, so a second ``--if-needed`` right
after a retrain says "not needed" and runs nothing. ``nbops build`` reads ``labelled_through`` from
the same file, so a plain rebuild after a retrain keeps the same parameters and stays a no-op.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nbops import locks
from nbops.config import paths
from nbops.errors import NbopsError
from nbops.pipeline.retrain_state import MONTH, load_state, save_state, state_path

if TYPE_CHECKING:
    from nbops.pipeline.check import CheckedProject

log = logging.getLogger(__name__)

# Alerts that retraining can answer. Data-quality alerts (a broken batch, unseen categories) are a
# data problem: retraining on broken data does not fix it, so they are reported but never trigger.
# An estimated_performance alert is performance estimated from the scores before the labels arrived
# (CBPE, nbops.monitoring.estimate): acted on like the others, and the decision says it was an estimate.
RETRAIN_ALERT_KINDS = ("drift", "prediction_drift", "performance", "calibration", "estimated_performance")
_KIND_WORDS = {
    "drift": "drift",
    "prediction_drift": "prediction drift",
    "performance": "performance",
    "calibration": "calibration",
    "estimated_performance": "estimated performance, acting on an estimate (labels not arrived yet)",
}


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why (or why not), in sentences naming the months, features and metrics.

    Attributes:
        needed: a rule fired (new labelled months, an alert not yet acted on, or a failed retrain to finish).
        reasons: human sentences, printed as they are.
        labelled_through: the last labelled month the training data should include (the build's
            ``labelled_through``); never earlier than the state's.
        acted_on: the batch ids acted on once this retrain succeeds (the state's plus this one's).
        new_labelled: months whose labels arrived since the last retrain.
        unhandled: batch id -> the alert kinds on it that nobody acted on yet.
        last_batch: the latest batch in the history (what monitoring last checked).
    """

    needed: bool
    reasons: list[str]
    labelled_through: str | None
    acted_on: list[str]
    new_labelled: list[str] = field(default_factory=list)
    unhandled: dict[str, list[str]] = field(default_factory=dict)
    last_batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def labelled_months(history: pd.DataFrame) -> list[str]:
    """Months (batch ids 'YYYY-MM') whose labels have arrived, in order.

    A month counts as labelled when the monitor recorded ``labels_arrived_at`` for it (the simulated
    production months) or measured its performance (``perf__*``: a batch you monitored with its labels).
    """
    if history.empty or "batch_id" not in history.columns:
        return []
    mask = pd.Series(False, index=history.index)
    if "labels_arrived_at" in history.columns:
        mask |= history["labels_arrived_at"].notna()
    for col in history.columns:
        if str(col).startswith("perf__"):
            mask |= history[col].notna()
    ids = history.loc[mask, "batch_id"].astype(str)
    return sorted({b for b in ids if MONTH.match(b)})


def _last_batch(history: pd.DataFrame) -> str | None:
    if history.empty or "batch_id" not in history.columns:
        return None
    ids = [str(b) for b in history["batch_id"]]
    months = sorted(b for b in ids if MONTH.match(b))
    return months[-1] if months else sorted(ids)[-1]


def _span(months: Sequence[str]) -> str:
    """'2025-01', '2025-01 and 2025-02' or '2025-01..2025-04 (4 months)'."""
    if len(months) == 1:
        return months[0]
    if len(months) == 2:
        return f"{months[0]} and {months[1]}"
    return f"{months[0]}..{months[-1]} ({len(months)} months)"


def _describe_alerts(batch: str, alerts: Iterable[Mapping[str, Any]], history: pd.DataFrame) -> str:
    """One sentence per batch.

    For example '2025-04: drift in annual_income, debt_to_income; calibration (calibration error 0.068 ...)'.
    """
    drifted = ""
    if "drifted_features" in history.columns and "batch_id" in history.columns:
        rows = history.loc[history["batch_id"].astype(str) == batch, "drifted_features"]
        if len(rows) and isinstance(rows.iloc[-1], str):
            drifted = rows.iloc[-1]
    parts: list[str] = []
    for alert in alerts:
        kind = str(alert.get("kind"))
        if kind == "drift" and drifted:
            features = drifted.split(",")
            shown = ", ".join(features[:6]) + (f" and {len(features) - 6} more" if len(features) > 6 else "")
            parts.append(f"drift in {shown}")
        else:
            parts.append(f"{_KIND_WORDS.get(kind, kind)} ({alert.get('message', '')})")
    return f"{batch}: " + "; ".join(parts)


def decide(history: pd.DataFrame, alerts: Sequence[Mapping[str, Any]], state: Mapping[str, Any]) -> RetrainDecision:
    """Decide from the monitoring history, the alerts and the retrain state. Pure: reads and writes nothing.

    Rules:
        a. a month's labels have arrived and it is later than the state's ``labelled_through``:
           labelled data the model has not been trained on;
        b. a drift, prediction-drift, performance, estimated-performance or calibration alert is on a
           batch not in the state's ``acted_on`` (an estimate is said to be one);
        c. the last retrain's build failed (state ``status`` 'failed'): finish it.

    Args:
        history: the monitor task's ``history`` product (one row per batch).
        alerts: the monitor task's ``alerts`` (``read_alerts``), each with ``batch_id`` and ``kind``.
        state: :func:`load_state`'s result.

    Returns:
        The decision, with reasons that also say why not when no rule fired.
    """
    through: str | None = state.get("labelled_through")
    acted = set(state.get("acted_on") or [])
    last = _last_batch(history)
    if history.empty:
        return RetrainDecision(
            False,
            [
                "no monitoring history yet: nothing has been monitored, so there is no drift, no alert and no labelled "
                "month to act on (run the pipeline; its monitor task records each production month)"
            ],
            through,
            sorted(acted),
        )
    reasons: list[str] = []

    labelled = labelled_months(history)
    new = [m for m in labelled if through is None or m > through]
    if new:
        seen = (
            f"the training data is labelled through {through}"
            if through
            else "the model has not been trained on any production month yet"
        )
        reasons.append(
            f"labels arrived for {_span(new)}, new labelled data ({seen}): retrain with production months through "
            f"{new[-1]}"
        )
    target = max([m for m in (through, *labelled) if m is not None], default=None)

    by_batch: dict[str, list[Mapping[str, Any]]] = {}
    quality: set[str] = set()
    for alert in alerts:
        batch = str(alert.get("batch_id"))
        if alert.get("kind") in RETRAIN_ALERT_KINDS:
            by_batch.setdefault(batch, []).append(alert)
        elif alert.get("kind") == "data_quality" and batch not in acted:
            quality.add(batch)
    unhandled = {b: a for b, a in sorted(by_batch.items()) if b not in acted}
    for batch, batch_alerts in unhandled.items():
        reasons.append("alert not acted on yet: " + _describe_alerts(batch, batch_alerts, history))

    # 'running' left behind means the process died mid-build; 'failed' that the build failed.
    failed = state.get("status") in ("failed", "running")
    if failed:
        what = "build failed" if state.get("status") == "failed" else "build did not finish"
        reasons.append(
            f"the last retrain's {what} (build {state.get('build_id') or 'unknown'}, decided at "
            f"{state.get('decided_at', '?')}): finish it"
        )

    needed = bool(new or unhandled or failed)
    if not needed:
        if labelled:
            reasons.append(f"no new labelled months since {through}")
        else:
            reasons.append(
                "no labelled production months yet (a month's labels arrive label_delay months after it is monitored)"
            )
        handled = sorted(set(by_batch) & acted)
        already = f"; alerts on {', '.join(handled)} already acted on" if handled else ""
        reasons.append(f"no unhandled alerts (last checked batch {last}{already})")
    if quality:
        reasons.append(
            f"data-quality alerts on {', '.join(sorted(quality))} do not trigger a retrain: fix the data (their bad "
            "rows are quarantined if the month joins the training data)"
        )
    acted_after = sorted(acted | set(unhandled) | set(new)) if needed else sorted(acted)
    return RetrainDecision(
        needed,
        reasons,
        target,
        acted_after,
        new,
        {b: [str(a.get("kind")) for a in v] for b, v in unhandled.items()},
        last,
    )


# --------------------------------------------------------------------------- the command


Report = Callable[..., None]
"""Where a command's lines go: ``report(text)`` or ``report(text, err=True)`` (the CLI prints them)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _retrain_alert_batches(alerts: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(a.get("batch_id")) for a in alerts if a.get("kind") in RETRAIN_ALERT_KINDS}


def _resolve(project: Path, env_file: str, overrides: Mapping[str, Any]) -> CheckedProject:
    """The checked project as ``nbops build`` sees it."""
    from nbops.pipeline.build import resolve_project

    return resolve_project(project, env_file, dict(overrides))


def _gate_text(outcomes: Sequence[Any]) -> list[str]:
    """The promotion gate's outcome from the register task's registration and evaluate's gate file."""
    by_name = {o.name: o for o in outcomes}
    register, evaluate = by_name.get("register"), by_name.get("evaluate")
    if register is None:
        return ["no register task in pipeline.yaml: no model version was registered"]
    registration = Path(register.products.get("registration", ""))
    if not register.ran:
        if registration.is_file():
            r = json.loads(registration.read_text())
            return [
                "register did not run (nothing it depends on changed): no new model version; production is still "
                f"{r['aliases'].get('production')}"
            ]
        return ["register did not run: no new model version"]
    r = json.loads(registration.read_text())
    lines = []
    gate_path = Path(evaluate.products.get("gate", "")) if evaluate is not None else None
    gate = json.loads(gate_path.read_text()) if gate_path is not None and gate_path.is_file() else {}
    production = r["aliases"].get("production")
    if r.get("promoted"):
        lines.append(f"registered {r['version']} and promoted it to production")
    elif not r.get("created", True):
        # Training is deterministic: when the new months all land in the validation/test splits (the
        # time-ordered split puts the newest rows there), the training rows and so the model are unchanged.
        lines.append(
            f"the retrained model is identical to the registered {r['version']} (same training rows): no new version; "
            f"production is {production}"
        )
        if gate and production == r["version"]:
            gate = {**gate, "reason": f"moot, the candidate is production {production} itself ({gate.get('reason')})"}
    else:
        lines.append(f"registered {r['version']} as candidate; production stays {production}")
    if gate:
        lines.append(f"promotion gate: {gate.get('reason')}")
    lines.append(f"registry: {r.get('registry')}")
    return lines


def retrain(
    project: Path,
    env_file: str,
    overrides: Mapping[str, Any],
    *,
    if_needed: bool,
    dry_run: bool,
    report: Report,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    wait: bool = True,
    on_wait: Callable[[list[locks.Holder]], None] | None = None,
) -> int:
    """``nbops retrain [--if-needed] [--dry-run]``: decide, say why, and run the incremental build.

    Without ``if_needed`` the build runs whatever the decision (a forced retrain; only tasks whose
    inputs changed rerun). Returns 0 whether or not it retrained, non-zero when the build failed.
    The decision and the build happen under the root's build lock (see :func:`nbops.locks.project_lock`):
    a build or promotion running meanwhile is waited for, so the decision reads what it left.
    """
    root = Path(_resolve(project, env_file, dict(overrides)).settings.root)
    with locks.project_lock(root / paths.BUILD_LOCK, command=locks.command_line(), wait=wait, on_wait=on_wait):
        return _retrain_locked(
            project, env_file, overrides, if_needed=if_needed, dry_run=dry_run, report=report, on_event=on_event
        )


def _retrain_locked(
    project: Path,
    env_file: str,
    overrides: Mapping[str, Any],
    *,
    if_needed: bool,
    dry_run: bool,
    report: Report,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    from nbops.data.ingest import labelled_batch_files, normalise_month
    from nbops.monitoring.history import read_alerts, read_history

    overrides = dict(overrides)
    checked = _resolve(project, env_file, overrides)
    monitor = next((t for t in checked.tasks if t.name == "monitor"), None)
    if monitor is None or not {"history", "alerts"} <= set(monitor.product):
        raise NbopsError(
            "pipeline.yaml: `nbops retrain` decides from the monitor task's `history` and `alerts` products, and there "
            "is no such task or product; add the monitor task (see the README)"
        )
    root = Path(checked.settings.root)
    history_path, alerts_path = Path(monitor.product["history"]), Path(monitor.product["alerts"])
    state = load_state(root)
    decision = decide(read_history(history_path), read_alerts(alerts_path), state)

    report(f"Retrain decision (monitoring history {history_path}; state {state_path(root)}):")
    report(f"  retrain needed: {'yes' if decision.needed else 'no'}")
    for reason in decision.reasons:
        report(f"  - {reason}")
    through = decision.labelled_through
    if "labelled_through" in overrides:
        through = normalise_month(overrides["labelled_through"])
        report(f"  - labelled_through={through} from --set (the decision said {decision.labelled_through})")
    run = decision.needed or not if_needed
    if not decision.needed and not if_needed:
        report(
            "  - forced: without --if-needed the build runs anyway (Ploomber's incremental build reruns only tasks "
            "whose inputs changed)"
        )
    if not run:
        report("Not retraining.")
        return 0

    ingest = next((t for t in checked.tasks if t.name == "ingest"), None)
    if through is not None and ingest is not None and "labelled_batches" in ingest.params:
        folder = Path(str(ingest.params["labelled_batches"]))
        labelled_batch_files(
            folder if folder.is_absolute() else project / folder, through
        )  # a missing month fails here, before any kernel
    build_overrides = {**overrides, **({"labelled_through": through} if through is not None else {})}
    if dry_run:
        report(f"Dry run: would run the build with labelled_through={through}; nothing was run or written.")
        _print_pending(project, env_file, build_overrides, report)
        return 0

    from nbops.pipeline.build import failure_text, run_build

    decided_at = _now()
    save_state(
        root,
        {
            **state,
            "labelled_through": through,
            "decided_at": decided_at,
            "reasons": decision.reasons,
            "status": "running",
        },
    )
    report(f"Retraining: build with labelled_through={through} (only tasks whose inputs changed rerun)\n")
    code, outcomes, checked = run_build(project, env_file, build_overrides, on_event=on_event)
    build_id = _last_build_id(root)
    if code != 0:
        save_state(
            root,
            {
                **state,
                "labelled_through": through,
                "decided_at": decided_at,
                "reasons": decision.reasons,
                "status": "failed",
                "build_id": build_id,
            },
        )
        report(
            f"\nThe retrain build failed (exit {code}); products of the tasks that succeeded are kept. "
            f"labelled_through={through} stays in {state_path(root)}, so `nbops retrain --if-needed` (or `nbops "
            "build`) reruns from the failure.",
            err=True,
        )
        report(failure_text(checked), err=True)
        return code
    # Monitoring reran on the new model and may raise alerts again on the same months: they are part of
    # what this retrain acted on (retraining again on the same data would give the same model).
    acted = sorted(set(decision.acted_on) | _retrain_alert_batches(read_alerts(alerts_path)))
    save_state(
        root,
        {
            "labelled_through": through,
            "acted_on": acted,
            "decided_at": decided_at,
            "finished_at": _now(),
            "reasons": decision.reasons,
            "status": "ok",
            "build_id": build_id,
        },
    )
    ran = [o.name for o in outcomes if o.ran]
    skipped = [o.name for o in outcomes if not o.ran]
    report("\n" + "=" * 72)
    if ran:
        report(
            f"Reran {len(ran)} of {len(outcomes)} tasks: {', '.join(ran)}"
            + (f" (skipped, up to date: {', '.join(skipped)})" if skipped else "")
        )
        for o in outcomes:
            if o.ran and getattr(o, "reasons", None):
                report(f"  {o.name}: {'; '.join(o.reasons)}")
    else:
        report(f"Nothing changed: all {len(outcomes)} tasks are up to date and were skipped.")
        if decision.needed and not decision.new_labelled:
            # Alerts alone, with no new labelled data: training is deterministic, so the same data and
            # parameters give the same model. Recording them as acted on keeps the next decision quiet
            # until a new labelled month (or a new alert) arrives.
            report(
                f"  the training data (labelled through {through or 'no production month'}) and parameters are "
                "unchanged, so retraining would reproduce the same model; the alerts are recorded as acted on, and "
                "the next labelled month triggers a retrain"
            )
    for line in _gate_text(outcomes):
        report(line)
    report(f"State: {state_path(root)} (labelled through {through}; acted on {', '.join(acted) or 'nothing'})")
    report("=" * 72)
    return 0


def _last_build_id(root: Path) -> str | None:
    from nbops.pipeline.build import last_build_record

    return (last_build_record(root) or {}).get("build_id")


def _print_pending(project: Path, env_file: str, overrides: Mapping[str, Any], report: Report) -> None:
    """In a dry run, which tasks the build would rerun and why (from the recorded lineage)."""
    from nbops.pipeline import lineage

    t0 = time.perf_counter()
    checked = _resolve(project, env_file, overrides)
    try:
        pending = {
            name: why for name, why in lineage.changes(checked.tasks, Path(checked.settings.root)).items() if why
        }
    except Exception as exc:  # the lineage is advisory here: the build itself decides
        log.debug("lineage unavailable: %s", exc)
        return
    if not pending:
        report("  the build would rerun nothing: every task is up to date")
        return
    report(f"  the build would rerun {len(pending)} task(s) ({time.perf_counter() - t0:.2f} s to tell):")
    for name, why in pending.items():
        report(f"    {name}: {'; '.join(why)}")
