"""``nbops compare``: a candidate model against production, on the same rows, as a Markdown report.

Why a report of its own: the evaluate stage compares a *new* model with production once, at build
time, on that build's test split. A reviewer (or CI, which keeps the report as an artifact) wants the
same like-for-like comparison for any two registered versions at any time: each version scores the
latest test split with its own feature transform (as it would in production), and the metrics,
segments and gate decision come from the same helpers the evaluate stage uses, so the numbers here
are the numbers the pipeline acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbops.config.params import EvaluateParams
from nbops.data.schema import TableSchema
from nbops.errors import NbopsError
from nbops.modeling.evaluate import segment_metrics
from nbops.modeling.metrics import HEADLINE, HIGHER_IS_BETTER, gate_metric, task_metrics
from nbops.registry.card import markdown_table
from nbops.registry.gate import GateDecision, decide
from nbops.registry.store import ModelVersion, Registry, RegistryError
from nbops.runtime.model import ScoringModel

# Above this many lines the Markdown goes only to the file; stdout gets the summary part.
PRINT_LINES = 150


@dataclass(frozen=True)
class TestSplit:
    """The rows both models are scored on, and where they came from."""

    rows: pd.DataFrame
    path: Path
    schema: TableSchema
    fingerprint: str | None  # of the ingested data the split was cut from
    split: dict[str, Any] = field(default_factory=dict)  # the features task's split summary


@dataclass(frozen=True)
class Scored:
    """One version's metrics on the test split, overall and by segment."""

    version: ModelVersion
    metrics: dict[str, float]
    segments: pd.DataFrame


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows."""

    test: TestSplit
    candidate: Scored
    production: Scored | None  # None: no production model (or the same version as the candidate)
    production_version: ModelVersion | None
    gate: GateDecision | None  # None when the candidate is the production model
    task_type: str
    tolerance: float
    gate_metric: str = "auto"  # as configured (env.yaml's gate_metric)

    @property
    def same_version(self) -> bool:
        return self.production_version is not None and self.production_version.version == self.candidate.version.version


# -- choosing the versions ----------------------------------------------------------------------


def pick_versions(
    registry: Registry, candidate: str | None, production: str | None
) -> tuple[ModelVersion, ModelVersion | None]:
    """Resolve ``--candidate`` and ``--production`` (version names, numbers or alias names).

    Defaults: the ``candidate`` alias, else the newest version; the ``production`` alias (None when
    there is none, which the report says).
    """
    versions = registry.versions()
    if not versions:
        raise RegistryError(
            f"no model registered yet in {registry.root}: nothing to compare. Run `nbops build` (or `make run`) first"
        )
    return _resolve(registry, candidate, "candidate", "--candidate") or versions[-1], _resolve(
        registry, production, "production", "--production"
    )


def _resolve(registry: Registry, name: str | None, default_alias: str, option: str) -> ModelVersion | None:
    if name is None:
        return registry.alias(default_alias)
    if name in ("candidate", "production"):
        found = registry.alias(name)
        if found is None:
            raise RegistryError(
                f"{option} {name}: the '{name}' alias is not set in {registry.root}; name a version instead "
                f"(registered: {_known(registry)})"
            )
        return found
    try:
        return registry.get(name)
    except RegistryError as exc:
        raise RegistryError(f"{option}: {exc}; `nbops models list` shows them with their aliases") from exc


def _known(registry: Registry) -> str:
    return ", ".join(v.version for v in registry.versions()) or "none yet"


# -- scoring --------------------------------------------------------------------------------------


def score(version: ModelVersion, test: TestSplit, params: EvaluateParams) -> Scored:
    """Score the test rows with ``version``'s own transform and booster (checksums verified on load)."""
    schema = test.schema
    for key, expected in (("target", schema.target), ("task_type", schema.task_type)):
        found = version.metadata.get(key)
        if found is not None and found != expected:
            raise NbopsError(
                f"{version.version} was trained for {key} '{found}', the test split ({test.path}) is for '{expected}': "
                "the two cannot be compared on these rows; compare versions of the same target"
            )
    model = ScoringModel.from_folder(version.path)
    absent = [f.name for f in model.schema.fields if f.name not in test.rows.columns]
    if absent:
        raise NbopsError(
            f"{version.version} needs columns the test split {test.path} lacks: {', '.join(absent)}; "
            "it was trained on another table. Compare it on a build of its own data"
        )
    p = np.asarray(model.booster.predict(model.transform(test.rows)))
    y = schema.target_codes(test.rows[schema.target])
    return Scored(version, task_metrics(schema.task_type, y, p), segment_metrics(schema, test.rows, p, params))


def compare(
    registry: Registry,
    test: TestSplit,
    params: EvaluateParams,
    candidate: str | None = None,
    production: str | None = None,
) -> Comparison:
    """Score both versions on the same test rows and apply the promotion gate to the result."""
    cand_version, prod_version = pick_versions(registry, candidate, production)
    cand = score(cand_version, test, params)
    same = prod_version is not None and prod_version.version == cand_version.version
    prod = score(prod_version, test, params) if prod_version is not None and not same else None
    metric = gate_metric(test.schema.task_type, params.gate_metric)[0]
    for scored in (cand, prod):
        if scored is not None and metric not in scored.metrics:
            raise NbopsError(
                f"the test split {test.path} gives no {metric} for {scored.version.version} (it holds one class only: "
                f"positive rate {scored.metrics.get('positive_rate', float('nan')):.3f}); rebuild with a larger "
                "test_fraction"
            )
    gate = (
        None
        if same
        else decide(
            test.schema.task_type,
            cand.metrics,
            prod.metrics if prod else None,
            prod.version.version if prod else None,
            params.promotion_tolerance,
            params.gate_metric,
        )
    )
    return Comparison(
        test, cand, prod, prod_version, gate, test.schema.task_type, params.promotion_tolerance, params.gate_metric
    )


# -- the report ---------------------------------------------------------------------------------


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def delta_cell(metric: str, candidate: Any, production: Any) -> str:
    """``+0.0123 (better)``: candidate minus production, judged by the metric's direction."""
    try:
        c, p = float(candidate), float(production)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(c) or math.isnan(p):
        return "n/a"
    d = c - p
    higher = HIGHER_IS_BETTER.get(metric)
    if higher is None:
        return f"{d:+.4f}"
    if abs(d) < 5e-5:  # equal at the precision shown
        return f"{d:+.4f} (same)"
    return f"{d:+.4f} ({'better' if (d > 0) == higher else 'worse'})"


def _held_out(version: ModelVersion, test: TestSplit) -> str:
    """Whether ``version`` could have trained on the test rows (a comparison is only fair if not)."""
    split = version.metadata.get("split") or {}
    mine = (split.get("splits") or {}).get("test")
    current = (test.split.get("splits") or {}).get("test")
    if mine and current and mine == current and version.metadata.get("data", {}).get("fingerprint") == test.fingerprint:
        return "yes (the same split of the same data)"
    if split.get("method") == "time" and current and "from" in current:
        seen = [s["to"] for k, s in (split.get("splits") or {}).items() if k != "test" and "to" in s]
        if seen and max(seen) < current["from"]:
            return f"yes (trained on data up to {max(seen)[:10]}, before the test period)"
        if seen:
            return (
                f"**no**: trained on data up to {max(seen)[:10]}, which overlaps the test period from "
                f"{current['from'][:10]}"
            )
    return "**unknown**: trained on other data with a non-time split; it may have seen some of these rows"


def _version_rows(comp: Comparison) -> list[dict[str, str]]:
    rows = []
    roles = [("candidate", comp.candidate.version)]
    if comp.production_version is not None and not comp.same_version:
        roles.append(("production", comp.production_version))
    for role, v in roles:
        data = v.metadata.get("data", {})
        trained = ((v.metadata.get("split") or {}).get("splits") or {}).get("train", {}).get("rows")
        rows.append(
            {
                "role": role,
                "version": v.version,
                "created": str(v.metadata.get("created_at", "unknown")),
                "data fingerprint": f"`{str(data.get('fingerprint', 'unknown'))[:12]}`",
                "train rows": f"{trained:,}" if isinstance(trained, int) else "n/a",
                "test rows held out": _held_out(v, comp.test),
            }
        )
    return rows


def render_markdown(comp: Comparison) -> str:
    """The report: versions, the gate, an overall table and a table per segment column."""
    cand, prod, gate = comp.candidate, comp.production, comp.gate
    metric, higher = gate_metric(comp.task_type, comp.gate_metric)
    title = f"# Model comparison: candidate {cand.version.version} vs " + (
        f"production {prod.version.version}"
        if prod
        else "production (none)"
        if comp.production_version is None
        else f"production {cand.version.version} (the same version)"
    )
    split_test = (comp.test.split.get("splits") or {}).get("test", {})
    period = f", {split_test['from'][:10]} to {split_test['to'][:10]}" if "from" in split_test else ""
    lines = [
        title,
        "",
        f"Both models score the same rows: the latest test split `{comp.test.path}` ({len(comp.test.rows):,} "
        f"rows{period}; "
        f"data fingerprint `{(comp.test.fingerprint or 'unknown')[:12]}`), each with its own registered feature "
        "transform. "
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}.",
        "",
        "## Versions",
        "",
        markdown_table(pd.DataFrame(_version_rows(comp))),
        "",
    ]
    if comp.production_version is None:
        lines += [
            "**No production model yet**: the candidate's metrics are shown alone; the gate promotes the first model.",
            "",
        ]
    elif comp.same_version:
        lines += [
            f"**The candidate is the production model** ({cand.version.version}): there is nothing to compare; its "
            "metrics are shown alone.",
            "",
        ]
    lines += [
        "## Promotion gate",
        "",
        f"- gate metric: `{metric}` ({'higher' if higher else 'lower'} is better)",
        f"- promotion tolerance: {comp.tolerance:g} (how much worse the candidate may be and still replace production)",
        f"- decision on these rows: **{'promote' if gate.promote else 'keep production'}**: {gate.reason}"
        if gate is not None
        else "- decision on these rows: not applicable, the candidate already is production",
    ]
    recorded = cand.version.metadata.get("gate", {}).get("reason")
    if recorded:
        lines.append(f"- recorded when {cand.version.version} was registered: {recorded}")
    lines += ["", "## Overall (test split)", ""]
    names = [m for m in HEADLINE[comp.task_type] if m in cand.metrics or (prod and m in prod.metrics)]
    names += [m for m in ("rows", "positive_rate", "mean_target", "mean_prediction") if m in cand.metrics]
    overall = []
    for m in names:
        row = {"metric": f"**{m}**" if m == metric else m}
        if prod is not None:
            row["production"] = _num(prod.metrics.get(m), 0 if m == "rows" else 4)
        row["candidate"] = _num(cand.metrics.get(m), 0 if m == "rows" else 4)
        if prod is not None:
            row["delta"] = delta_cell(m, cand.metrics.get(m), prod.metrics.get(m)) if m != "rows" else ""
        overall.append(row)
    lines += [markdown_table(pd.DataFrame(overall)), ""]
    lines += _segment_sections(comp, metric)
    return "\n".join(lines).rstrip() + "\n"


def _segment_sections(comp: Comparison, metric: str) -> list[str]:
    cand, prod = comp.candidate, comp.production
    if cand.segments.empty:
        return ["## By segment", "", "No segment columns (set `segment_columns` in the env file)."]
    lines = [
        "## By segment",
        "",
        f"`{metric}` per level of each segment column (the most frequent levels; `n/a` where a level holds one class "
        "only).",
    ]
    key = ["segment", "level"]
    merged = cand.segments.rename(columns={metric: "candidate"})
    if "candidate" not in merged.columns:
        merged["candidate"] = float("nan")
    if prod is not None:
        other = prod.segments.rename(columns={metric: "production"})
        if "production" not in other.columns:
            other["production"] = float("nan")
        merged = merged.merge(other[[*key, "production"]], on=key, how="left")
    for column, group in merged.groupby("segment", sort=False):
        rows = []
        for r in group.to_dict("records"):
            row = {"segment": column, "level": r["level"], "rows": f"{int(r['rows']):,}"}
            if prod is not None:
                row["production"] = _num(r["production"])
            row["candidate"] = _num(r["candidate"])
            if prod is not None:
                row["delta"] = delta_cell(metric, r["candidate"], r["production"])
            rows.append(row)
        lines += ["", f"### {column}", "", markdown_table(pd.DataFrame(rows))]
    return lines


# -- the command ---------------------------------------------------------------------------------
