"""Two real builds with different learning rates, as a user compares them: `nbops runs` lists both,
`nbops runs diff` shows just the changed parameter and the metric deltas (build ids, versions and run
ids alike), every record checked against the products and W&B files the builds left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbops.modeling.metrics import HIGHER_IS_BETTER
from tests.support import TEST_ROOT, nbops, output_of

pytestmark = pytest.mark.slow


def runs_json(project: Path, *args: str) -> list[dict[str, Any]]:
    proc = nbops(project, "runs", "--env", "env.test.yaml", "--json", "--limit", "0", *args)
    assert proc.returncode == 0, output_of(proc)
    return list(json.loads(proc.stdout))


def table_rows(text: str) -> list[dict[str, str]]:
    """The rows of the table `nbops runs` prints, cut where its dashed line puts the columns."""
    lines = text.splitlines()
    spans, at = [], 0
    for dashes in lines[1].split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    names = [lines[0][a:b].strip() for a, b in spans]
    body = [line for line in lines[2:] if line.strip() and not line.startswith(("(", "`"))]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)} for line in body]


def test_both_builds_show_up_in_nbops_runs(two_builds: dict[str, Any]) -> None:
    project, builds, rates = two_builds["project"], two_builds["builds"], two_builds["learning_rates"]
    proc = nbops(project, "runs", "--env", "env.test.yaml", "--task", "train")
    assert proc.returncode == 0, output_of(proc)
    rows = table_rows(proc.stdout)
    assert list(rows[0])[:5] == ["run", "finished", "status", "seconds", "build"] and "learning_rate" in rows[0]
    assert len(rows) == 2, proc.stdout
    # newest first: the second build's learning rate, then the first's
    assert [r["build"] for r in rows] == builds[::-1]
    assert [float(r["learning_rate"]) for r in rows] == rates[::-1]

    records = runs_json(project)
    root = project / TEST_ROOT
    log = [json.loads(line) for line in (root / "reports" / "builds.jsonl").read_text().splitlines()]
    for build, entry in zip(builds, log, strict=True):
        ran = [task for task, did in entry["tasks"].items() if did]
        assert sorted(r["task"] for r in records if r["build_id"] == build) == sorted(ran), build
    assert "ingest" not in [r["task"] for r in records if r["build_id"] == builds[1]]  # up to date: not rerun

    newest = {r["task"]: r for r in reversed(records)}  # the newest record of each task
    metrics = json.loads((root / "reports" / "metrics.json").read_text())["metrics"]
    assert newest["evaluate"]["metrics"] == pytest.approx({k: v for k, v in metrics.items()})
    assert newest["register"]["version"] == "v0002"
    fingerprint = json.loads((root / "data" / "interim" / "ingest_summary.json").read_text())["fingerprint"]
    offline = [p.name for p in (project / "wandb" / "wandb").glob("offline-run-*")]
    for r in records:
        assert r["status"] == "ok" and r["duration_s"] is not None and r["duration_s"] >= 0, r["task"]
        assert r["data_fingerprint"] == fingerprint and r["lock_hash"], r["task"]
        tuned = r["task"] != "tune" or r["params"].get("tune_trials")  # tune logs only when it studies
        if r["params"].get("tracking") == "offline" and tuned:  # the stages that log to W&B
            assert any(name.endswith(f"-{r['wandb_run_id']}") for name in offline), (r["task"], r["wandb_run_id"])


def test_runs_diff_of_the_two_builds_shows_just_the_changed_parameter_and_the_metric_deltas(
    two_builds: dict[str, Any],
) -> None:
    project, (b1, b2) = two_builds["project"], two_builds["builds"]
    rates = two_builds["learning_rates"]
    proc = nbops(project, "runs", "--env", "env.test.yaml", "diff", b1, b2)
    assert proc.returncode == 0, output_of(proc)
    text = proc.stdout
    assert f"A: build {b1}" in text and f"B: build {b2}" in text
    assert f"learning_rate: {rates[0]} -> {rates[1]}" in text
    assert "Only in A: ingest, features" in text  # not rerun by the second build
    # Only what differs: one parameter line in the whole diff, no code, data or environment section.
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            current = line.strip()
        elif line.startswith("    ") and current:
            sections.setdefault(current, []).append(line.strip())
    # once for tune (its study starts from the parameters as set) and once for train
    assert sections.get("parameters") == [f"learning_rate: {rates[0]} -> {rates[1]}"] * 2, text
    for section in ("\n  code\n", "\n  data\n", "\n  environment\n"):
        assert section not in text, text

    as_json = json.loads(nbops(project, "runs", "--env", "env.test.yaml", "diff", b1, b2, "--json").stdout)
    tasks = {t["task"]: t for t in as_json["tasks"]}
    assert {t: [p["name"] for p in d["params"]] for t, d in tasks.items()} == {t: [] for t in tasks} | {
        "tune": ["learning_rate"],
        "train": ["learning_rate"],
    }
    assert all(d["code"] == d["data"] == d["environment"] == [] for d in tasks.values()), tasks
    # The metric deltas: the evaluate records' own values, marked by direction.
    records = {(r["build_id"], r["task"]): r for r in runs_json(project)}
    ea, eb = records[(b1, "evaluate")]["metrics"], records[(b2, "evaluate")]["metrics"]
    deltas = {m["name"]: m for m in tasks["evaluate"]["metrics"]}
    assert set(deltas) == {k for k in ea if ea[k] != eb[k]}
    for name, m in deltas.items():
        assert m["delta"] == pytest.approx(eb[name] - ea[name])
        if name in HIGHER_IS_BETTER and m["delta"] != 0:
            assert m["verdict"] == ("better" if (m["delta"] > 0) == HIGHER_IS_BETTER[name] else "worse"), m
            assert f"{name} " in text and m["verdict"] in text
    assert tasks["evaluate"]["segments"], "no segment metric changed between two models"
    assert tasks["register"]["outputs"][0] == {"name": "version", "old": "v0001", "new": "v0002"}


def test_versions_and_run_ids_name_the_same_runs_as_the_builds(two_builds: dict[str, Any]) -> None:
    project, (b1, b2) = two_builds["project"], two_builds["builds"]
    by_versions = json.loads(
        nbops(project, "runs", "--env", "env.test.yaml", "diff", "v0001", "v0002", "--json").stdout
    )
    assert [t["task"] for t in by_versions["tasks"]] == ["tune", "train", "evaluate"]  # what made each version
    train = by_versions["tasks"][1]
    assert [p["name"] for p in train["params"]] == ["learning_rate"]
    records = {(r["build_id"], r["task"]): r for r in runs_json(project)}
    assert (train["a"]["identity"], train["b"]["identity"]) == (
        records[(b1, "train")]["identity"],
        records[(b2, "train")]["identity"],
    )
    a, b = records[(b1, "train")]["identity"][:8], records[(b2, "train")]["identity"][:8]
    proc = nbops(project, "runs", "--env", "env.test.yaml", "diff", a, b)
    assert proc.returncode == 0, output_of(proc)
    assert "learning_rate" in proc.stdout and "evaluate" not in proc.stdout  # two train runs: just them


def test_runs_sort_by_a_metric_and_refuse_an_unknown_one(two_builds: dict[str, Any]) -> None:
    project = two_builds["project"]
    evaluated = [r for r in runs_json(project) if r["task"] == "evaluate"]
    [best] = runs_json(project, "--sort", "log_loss", "--limit", "1")
    assert best["identity"] == min(evaluated, key=lambda r: r["metrics"]["log_loss"])["identity"]
    proc = nbops(project, "runs", "--env", "env.test.yaml", "--sort", "no_such_metric")
    assert proc.returncode == 2 and "--sort no_such_metric: no run has that metric; expected one of" in proc.stderr
    proc = nbops(project, "runs", "--env", "env.test.yaml", "diff", "v0009", "v0001")
    assert proc.returncode == 2 and "no recorded run produced v0009" in proc.stderr, output_of(proc)
