"""Benchmark: a cold full build against the same stage functions in one plain Python process, and
the no-op rebuild. Writes bench/results/build.json and build.md.

    python bench/bench_build.py [--reps 3] [--rows 100000]

Each measurement runs in a fresh copy of the project (a cold build: no products, no caches other
than the installed, byte-compiled packages), one after the other in this one run so the ratios
compare like with like on the same machine state. Timings are medians over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.conftest import copy_project  # noqa: E402


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false"}
    env.pop("NBOPS_PROJECT", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    py = sys.executable
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "plain_python",
            "build_ploomber_engine",
            "build_papermill",
            "noop_rebuild",
            "noop_ploomber_build",
            "check",
            "check_bad_param",
            "plain_python_until_evaluate",
            "build_until_evaluate",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            print(f"repetition {rep + 1}/{args.reps}", flush=True)
            for label, extra in (
                ("build_ploomber_engine", ["--set", "executor=ploomber-engine"]),
                ("build_papermill", ["--set", "executor=papermill"]),
            ):
                project = copy_project(Path(tmp) / f"{label}-{rep}")
                env_set = ["--set", f"rows={args.rows}"]
                results[label].append(
                    timed([py, "-m", "nbops", "--project", str(project), "build", *env_set, *extra], project)
                )
                print(f"  {label}: {results[label][-1]:.1f} s", flush=True)
                if label == "build_ploomber_engine":
                    results["noop_rebuild"].append(
                        timed([py, "-m", "nbops", "--project", str(project), "build", *env_set, *extra], project)
                    )
                    env = {"PLOOMBER_ENV_FILENAME": "env.nbops-build.yaml"}
                    os.environ.update(env)
                    results["noop_ploomber_build"].append(timed([str(Path(py).parent / "ploomber"), "build"], project))
                    del os.environ["PLOOMBER_ENV_FILENAME"]
                    results["check"].append(timed([py, "-m", "nbops", "--project", str(project), "check"], project))
                    t0 = time.perf_counter()
                    bad = subprocess.run(
                        [py, "-m", "nbops", "--project", str(project), "check", "--set", "learning_rat=0.1"],
                        capture_output=True,
                        text=True,
                    )
                    results["check_bad_param"].append(time.perf_counter() - t0)
                    assert bad.returncode == 2 and "learning_rate" in bad.stderr
            # The first four stages (ingest -> evaluate) alone, both ways.
            project = copy_project(Path(tmp) / f"until-{rep}")
            results["build_until_evaluate"].append(
                timed(
                    [
                        py,
                        "-m",
                        "nbops",
                        "--project",
                        str(project),
                        "build",
                        "--set",
                        f"rows={args.rows}",
                        "--until",
                        "evaluate",
                    ],
                    project,
                )
            )
            project = copy_project(Path(tmp) / f"plain-until-{rep}")
            (project / "env.bench.yaml").write_text(
                (project / "env.yaml").read_text().replace("rows: 100000", f"rows: {args.rows}")
            )
            results["plain_python_until_evaluate"].append(
                timed([py, str(REPO / "bench" / "plain_run.py"), str(project), "env.bench.yaml", "evaluate"], project)
            )
            print(
                f"  until evaluate: build {results['build_until_evaluate'][-1]:.1f} s, plain "
                f"{results['plain_python_until_evaluate'][-1]:.1f} s",
                flush=True,
            )
            project = copy_project(Path(tmp) / f"plain-{rep}")
            (project / "env.bench.yaml").write_text(
                (project / "env.yaml").read_text().replace("rows: 100000", f"rows: {args.rows}")
            )
            results["plain_python"].append(
                timed([py, str(REPO / "bench" / "plain_run.py"), str(project), "env.bench.yaml"], project)
            )
            print(f"  plain_python: {results['plain_python'][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    summary = {
        "rows": args.rows,
        "reps": args.reps,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "median_seconds": med,
        "all_seconds": results,
        "ratio_build_ploomber_engine_to_plain": med["build_ploomber_engine"] / med["plain_python"],
        "ratio_build_papermill_to_plain": med["build_papermill"] / med["plain_python"],
        "ratio_until_evaluate": med["build_until_evaluate"] / med["plain_python_until_evaluate"],
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = [
        f"# Build benchmark ({args.rows:,} simulated rows, median of {args.reps}, {os.cpu_count()} cores)",
        "",
        "| measurement | seconds | vs plain Python |",
        "|---|---:|---:|",
        f"| plain Python: the same stage functions (all eight) in one process | {med['plain_python']:.1f} | 1.00× |",
        f"| cold full build, ploomber-engine executor (default) | {med['build_ploomber_engine']:.1f} | "
        f"{summary['ratio_build_ploomber_engine_to_plain']:.2f}× |",
        f"| cold full build, Papermill executor (a kernel per notebook) | {med['build_papermill']:.1f} | "
        f"{summary['ratio_build_papermill_to_plain']:.2f}× |",
        f"| first four stages only (ingest → evaluate), plain Python | {med['plain_python_until_evaluate']:.1f} | "
        "1.00× |",
        "| first four stages only, `nbops build --until evaluate` (ploomber-engine) | "
        f"{med['build_until_evaluate']:.1f} | {summary['ratio_until_evaluate']:.2f}× |",
        f"| no-op rebuild, `nbops build` (run identities, Ploomber not started) | {med['noop_rebuild']:.2f} | |",
        f"| no-op rebuild, plain `ploomber build` | {med['noop_ploomber_build']:.2f} | |",
        f"| `nbops check` (parameters valid) | {med['check']:.2f} | |",
        f"| `nbops check` with a misspelt parameter (fails) | {med['check_bad_param']:.2f} | |",
        "",
        f"Measured {summary['measured_at']} with `make bench` (`python bench/bench_build.py --reps {args.reps}`).",
    ]
    (out / "build.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
