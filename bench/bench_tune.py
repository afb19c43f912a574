"""Benchmark: the tune task on the default data. Writes bench/results/tune.json and tune.md.

    .venv/bin/python bench/bench_tune.py [--rows 100000] [--trials 30]

Two real builds (`nbops build --until evaluate`, tracking off) of a fresh project copy on the
simulated table: one with tune_trials 0 (the parameters as set in env.yaml), one with
``--trials``. Reported: trials per minute (finished trials over the tune task's study time, from
Optuna's own trial start/end stamps), how many were pruned, the best validation loss against the
parameters as set, and the test metrics of both models (the evaluate stage's own numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from tests.support.project import copy_project  # noqa: E402  (the bench runs from the repository)


def build(project: Path, *sets: str) -> float:
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false"}
    env.pop("NBOPS_PROJECT", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nbops", "--project", str(project), "build", "--until", "evaluate", *sets],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbops-bench-tune-"))
    try:
        project = copy_project(work / "project")
        sets = ("--set", "tracking=disabled", "--set", f"rows={args.rows}")
        default_seconds = build(project, *sets)
        default = json.loads((project / "reports/metrics.json").read_text())
        tuned_seconds = build(project, *sets, "--set", f"tune_trials={args.trials}")
        tuned = json.loads((project / "reports/metrics.json").read_text())
        study = json.loads((project / "models/tuned_params.json").read_text())
        trials = pd.read_parquet(project / "reports/tune_trials.parquet")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    study_seconds = float(trials["seconds"].sum())
    headline = default["headline"][0]
    result = {
        "rows": args.rows,
        "trials": int(len(trials)),
        "pruned": int((trials["state"] == "pruned").sum()),
        "study_seconds": round(study_seconds, 1),
        "trials_per_minute": round(len(trials) / study_seconds * 60, 1),
        "metric": study["metric"],
        "valid_loss_as_set": study["default_value"],
        "valid_loss_best": study["best_value"],
        "best_params": study["best"],
        "test": {"as_set": default["metrics"], "tuned": tuned["metrics"]},
        "headline": headline,
        "test_gain": round(tuned["metrics"][headline] - default["metrics"][headline], 4),
        "build_seconds": {"as_set": round(default_seconds, 1), "with_tuning": round(tuned_seconds, 1)},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tune.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Tuning (Optuna) on the default data",
        "",
        f"`python bench/bench_tune.py --rows {args.rows} --trials {args.trials}`; load average "
        f"{result['machine']['load'][0]:.1f} on {result['machine']['cpus']} cores.",
        "",
        "| | parameters as set | tuned |",
        "|---|---|---|",
        f"| validation {study['metric']} | {study['default_value']:.5f} | {study['best_value']:.5f} |",
        *(
            f"| test {k} | {default['metrics'][k]:.4f} | {tuned['metrics'][k]:.4f} |"
            for k in default["headline"]
            if k in tuned["metrics"]
        ),
        "",
        f"{result['trials']} trials ({result['pruned']} pruned) in {study_seconds:.0f} s of study: "
        f"**{result['trials_per_minute']} trials per minute**; test {headline} "
        f"{result['test_gain']:+.4f} over the parameters as set.",
        "",
    ]
    (RESULTS / "tune.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
