"""Benchmark: drift of a 1M-row batch against a stored reference profile. Writes bench/results/drift.json and drift.md.

    .venv/bin/python bench/bench_drift.py [--reps 3] [--rows 1000000]

1. Setup (not timed): simulate a 1M-row history (seed 0), build the reference profile of its 20 feature
   columns (numeric/categorical split of the simulator's declared schema) and save it as JSON, as the
   registry stores it; simulate "shock" batches of 1k, 100k and 1M rows (batch 1, seed 0) and write
   them as Parquet with every column, as `nbops simulate` does.
2. Timed, each measurement in a fresh Python process (so its peak RSS is honest): load the profile
   JSON + read the whole Parquet batch + ``compare()``. The time excludes interpreter start-up and
   imports (reported beside it); peak memory is ``ru_maxrss`` of that process after the work, imports
   included. Median of ``--reps``. One extra run per size with ``tracemalloc`` gives the peak of the
   Python/numpy heap (Arrow's buffers are not traced, so it is a lower bound of the work's memory).
3. Ground truth at 1M rows: for every scenario (shock, gradual, new-category, none, concept) and two
   seeds (seed 0 with batch k=1, seed 1 with batch k=6), each against the reference of its seed's 1M-row
   history: recall of the features the simulator names, and dataset-level alarms on the clean batches.

4. Start-up: ``nbops drift --help`` and ``nbops estimate --help`` as processes, and the modules the first
   imports (no pandas, numpy, pyarrow, LightGBM or pydantic: they load when a command needs them).
5. Evidently side by side (unless ``--no-evidently``): a 200,000-row history and a 200,000-row later
   month (Parquet, every column) compared by the whole ``nbops drift REFERENCE CURRENT`` process (the
   schema it infers leaves the id, time and target columns out) and by Evidently 0.7.23's
   DataDriftPreset on the same 20 feature columns in a process of its own (its own virtualenv under
   build/, made here on first use with the project's uv: Evidently needs pandas<3 and is not a
   dependency of nbops), alternating, median of ``--reps``.
6. The PSI thresholds a batch of 100, 1,000 and 10,000 rows gets against the 1M-row reference (0.2
   configured; raised for a small batch to 1.3 x the 99.99% quantile of PSI under no drift).

Everything is measured in this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GOAL_SECONDS = 2.0
GOAL_RSS_MIB = 1024.0  # 1 GiB
EVIDENTLY = {"version": "0.7.23", "seconds": 70.7, "memory": "1.6 GB"}  # 1M x 1M, quoted from the issue
EVIDENTLY_VENV = REPO / "build" / "evidently-venv"
EVIDENTLY_PACKAGES = ["evidently==0.7.23", "pandas<3"]
PAIR_ROWS = 200_000
GOAL_SPEEDUP = 20.0
GOAL_STARTUP_S = 0.3
HEAVY_MODULES = ("pandas", "numpy", "pyarrow", "lightgbm", "pydantic", "sklearn", "matplotlib", "yaml")
EVIDENTLY_SCRIPT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
reference = pd.read_parquet(sys.argv[1]).drop(columns=sys.argv[3].split(","))
current = pd.read_parquet(sys.argv[2]).drop(columns=sys.argv[3].split(","))
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
metrics = snapshot.dict()["metrics"]
t2 = time.perf_counter()
count = next(m["value"] for m in metrics if m["metric_name"].startswith("DriftedColumnsCount"))
print(json.dumps({"imports_s": t1 - t0, "work_s": t2 - t1, "drifted_columns": count["count"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
SCENARIOS = ("shock", "gradual", "new-category", "none", "concept")
GT_SEEDS = ((0, 1), (1, 6))  # (seed, batch k)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def vmhwm_mib() -> float | None:
    """Peak RSS of this process's own address space (Linux), a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- the measured work (subprocess)


def worker(profile_path: str, batch_path: str, trace: bool) -> dict[str, Any]:
    t_start = time.perf_counter()
    import pandas as pd  # noqa: F401  (imports are not part of the timed work)

    from nbops.monitoring.batches import read_frame
    from nbops.monitoring.drift import compare
    from nbops.monitoring.profile import ReferenceProfile

    imports_s = time.perf_counter() - t_start
    rss_before = maxrss_mib()
    if trace:
        import tracemalloc

        tracemalloc.start()
    load_average = os.getloadavg()[0]
    c0 = time.process_time()
    t0 = time.perf_counter()
    profile = ReferenceProfile.load(profile_path)
    t1 = time.perf_counter()
    batch = read_frame(batch_path)
    t2 = time.perf_counter()
    report = compare(profile, batch)
    t3 = time.perf_counter()
    cpu = time.process_time() - c0
    out = {
        "rows": len(batch),
        "columns": batch.shape[1],
        "features": len(report.features),
        "seconds": t3 - t0,
        "load_profile_s": t1 - t0,
        "read_parquet_s": t2 - t1,
        "compare_s": t3 - t2,
        "cpu_s": cpu,
        "load_average_1min": load_average,
        "imports_s": imports_s,
        "rss_after_imports_mib": rss_before,
        "peak_rss_mib": maxrss_mib(),
        "vmhwm_mib": vmhwm_mib(),
        "drifted": report.drifted,
        "dataset_drift": report.dataset_drift,
    }
    if trace:
        out.pop("seconds")  # tracing slows the work down: this run is for memory only
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    return out


def run_mode(*args: str) -> dict[str, Any]:
    """Run this script in another mode in a fresh Python process; its stdout is one JSON document.

    The orchestrator itself imports nothing heavy and holds no data: on Linux a child's ru_maxrss
    starts from its parent's RSS at fork time, so a big parent would inflate the workers' peaks.
    """
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout)
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def measure(profile: Path, batch: Path, trace: bool = False) -> dict[str, Any]:
    return run_mode("--worker", str(profile), str(batch), *(["--trace"] if trace else []))


# --------------------------------------------------------------------------- setup and ground truth (subprocesses)


def feature_split() -> tuple[list[str], list[str]]:
    from nbops.data.ingest import simulator_schema

    features = simulator_schema().features
    return [c.name for c in features if c.kind == "numeric"], [c.name for c in features if c.kind == "categorical"]


def reference_profile(rows: int, seed: int):
    from nbops.data.simulate import simulate_history
    from nbops.monitoring.profile import build_reference_profile

    numeric, categorical = feature_split()
    history, _ = simulate_history(rows=rows, seed=seed)
    profile = build_reference_profile(history[numeric + categorical], numeric, categorical)
    del history
    return profile


def setup(work: Path, rows: int, sizes: list[int]) -> dict[str, Any]:
    """The 1M-row history's profile saved as JSON, and the "shock" batches written as Parquet."""
    from nbops.data.simulate import simulate_batch, write_simulation

    t0 = time.perf_counter()
    profile = reference_profile(rows, seed=0)
    profile_path = profile.save(work / "reference_profile.json")
    batches = {}
    for size in sizes:
        batch, truth = simulate_batch(1, rows=size, seed=0, drift="shock")
        batches[str(size)] = str(write_simulation(batch, truth, work / f"batch_{size}.parquet")[0])
        del batch
    return {
        "profile": str(profile_path),
        "profile_json_bytes": profile_path.stat().st_size,
        "features": len(profile.features),
        "batches": batches,
        "setup_s": time.perf_counter() - t0,
        "machine": versions(),
    }


def ground_truth(rows: int, profile_seed0_path: str) -> dict[str, Any]:
    from nbops.data.simulate import simulate_batch
    from nbops.monitoring.drift import compare
    from nbops.monitoring.profile import ReferenceProfile

    profile_seed0 = ReferenceProfile.load(profile_seed0_path)

    per: dict[str, dict[str, Any]] = {}
    for seed, k in GT_SEEDS:
        profile = profile_seed0 if seed == 0 else reference_profile(rows, seed)
        for scenario in SCENARIOS:
            batch, truth = simulate_batch(k, rows=rows, seed=seed, drift=scenario)
            report = compare(profile, batch)
            expected = {d.name for d in truth.drifted_features}
            flagged = set(report.drifted)
            p = per.setdefault(
                scenario, {"batches": [], "named": 0, "found": 0, "dataset_drift": 0, "extra_flagged": []}
            )
            p["batches"].append(f"seed {seed}, k={k}")
            p["named"] += len(expected)
            p["found"] += len(expected & flagged)
            p["dataset_drift"] += int(report.dataset_drift)
            p["extra_flagged"] += sorted(flagged - expected)
            log(f"  ground truth {scenario} seed {seed} k={k}: named {sorted(expected)}, flagged {sorted(flagged)}")
            del batch
    drifting = [s for s in SCENARIOS if per[s]["named"]]
    clean = [s for s in SCENARIOS if not per[s]["named"]]
    named = sum(per[s]["named"] for s in drifting)
    found = sum(per[s]["found"] for s in drifting)
    clean_batches = sum(len(per[s]["batches"]) for s in clean)
    alarms = sum(per[s]["dataset_drift"] for s in clean)
    return {
        "rows": rows,
        "reference_rows": rows,
        "scenarios": per,
        "recall": found / named if named else None,
        "named": named,
        "found": found,
        "clean_batches": clean_batches,
        "false_alarms": alarms,
        "false_alarm_rate": alarms / clean_batches if clean_batches else None,
    }


def versions() -> dict[str, str]:
    import numpy
    import pandas
    import pyarrow

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


# --------------------------------------------------------------------------- start-up, thresholds, Evidently


def nbops_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbops", *args]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_seconds(cmd: list[str], cwd: Path | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def startup(reps: int) -> dict[str, Any]:
    """``nbops drift --help`` / ``nbops estimate --help`` as processes (and bare Python for scale), and
    the heavy modules ``nbops drift --help`` imports (none, when commands import what they need)."""
    out: dict[str, Any] = {}
    for name, cmd in (
        ("python", [sys.executable, "-c", "pass"]),
        ("drift_help", nbops_command("drift", "--help")),
        ("estimate_help", nbops_command("estimate", "--help")),
    ):
        runs, cpu = [], []
        for _ in range(reps):
            c0 = children_cpu()
            runs.append(process_seconds(cmd)[0])
            cpu.append(children_cpu() - c0)
        out[name] = {"seconds": statistics.median(runs), "all_seconds": runs, "cpu_seconds": statistics.median(cpu)}
    probe = (
        "import sys\nfrom nbops.cli import main\ntry:\n    main(['drift', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    out["load_average_1min"] = os.getloadavg()[0]
    out["heavy_modules_imported_by_drift_help"] = json.loads(proc.stderr.strip().splitlines()[-1].replace("'", '"'))
    return out


def effective_thresholds(profile_path: str) -> dict[str, Any]:
    """The PSI thresholds (alert, watch) per feature kind for batches of 100, 1k and 10k rows against the profile."""
    from nbops.monitoring.drift import DriftThresholds, bins_of, effective_levels
    from nbops.monitoring.profile import ReferenceProfile

    profile = ReferenceProfile.load(profile_path)
    shares = {
        **{n: p.shares for n, p in profile.numeric.items()},
        **{n: p.shares for n, p in profile.categorical.items()},
    }
    out: dict[str, Any] = {"reference_rows": profile.rows, "configured": DriftThresholds().psi, "by_rows": {}}
    for rows in (100, 1_000, 10_000):
        levels = {n: effective_levels(s, rows, profile.rows, DriftThresholds()) for n, s in shares.items()}
        alerts = [a for a, _ in levels.values()]
        out["by_rows"][str(rows)] = {
            "min": min(alerts),
            "max": max(alerts),
            "decile_feature": levels["annual_income"][0],
            "decile_feature_watch": levels["annual_income"][1],
            "features": {n: {"bins": bins_of(shares[n]) + 1, "alert": a, "watch": w} for n, (a, w) in levels.items()},
        }
    return out


def byte_compiled(python: Path) -> Path:
    """Compile the virtualenv's modules once: with PYTHONDONTWRITEBYTECODE set (as on this machine) an
    installation without .pyc files recompiles every module at every start, which would charge the
    other library for our environment."""
    code = "import site, sys; print(site.getsitepackages()[0])"
    site_packages = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", site_packages], check=False, capture_output=True)
    return python


def evidently_python() -> Path:
    """Evidently's own virtualenv under build/ (made once with the project's uv): it needs pandas<3."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        uv = REPO / ".venv" / "bin" / "uv"
        subprocess.run([str(uv), "venv", "--python", sys.executable, str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "--compile-bytecode", "--python", str(python), *EVIDENTLY_PACKAGES], check=True
        )
    return python


def write_pair(work: Path, rows: int) -> dict[str, str]:
    """A ``rows``-row history and a later month of as many rows (shock), as `nbops simulate` writes them."""
    from nbops.data.simulate import simulate_batch, simulate_history, write_simulation

    history, truth = simulate_history(rows=rows, seed=0)
    reference = write_simulation(history, truth, work / "pair_reference.parquet")[0]
    del history
    batch, truth = simulate_batch(1, rows=rows, seed=0, drift="shock")
    current = write_simulation(batch, truth, work / "pair_current.parquet")[0]
    return {"reference": str(reference), "current": str(current), "drifted": [d.name for d in truth.drifted_features]}


def evidently_side_by_side(work: Path, reps: int) -> dict[str, Any]:
    """The whole `nbops drift` process and Evidently's, alternating, on the same 200k-row pair."""
    from nbops.data.simulate import ID_COLUMN, TARGET, TIME_COLUMN

    python = byte_compiled(evidently_python())
    script = work / "evidently_drift.py"
    script.write_text(EVIDENTLY_SCRIPT)
    pair = json.loads(run_mode_raw("--pair", str(work)))
    not_features = ",".join((ID_COLUMN, TIME_COLUMN, TARGET))
    process_seconds([str(python), str(script), pair["reference"], pair["current"], not_features])  # warm the caches
    ours, theirs, ours_cpu, theirs_cpu, details = [], [], [], [], {}
    for rep in range(reps):
        c0 = children_cpu()
        seconds, out = process_seconds(nbops_command("drift", pair["reference"], pair["current"], "--json"), cwd=work)
        ours.append(seconds)
        ours_cpu.append(children_cpu() - c0)
        details["nbops"] = json.loads(out)
        c0 = children_cpu()
        seconds, out = process_seconds([str(python), str(script), pair["reference"], pair["current"], not_features])
        theirs.append(seconds)
        theirs_cpu.append(children_cpu() - c0)
        details["evidently"] = json.loads(out)
        log(f"  200k pair, run {rep + 1}: nbops drift {ours[-1]:.2f} s, Evidently {theirs[-1]:.2f} s")
    flagged = sorted(f["name"] for f in details["nbops"]["features"] if f["drifted"])
    return {
        "rows": PAIR_ROWS,
        "nbops_seconds": statistics.median(ours),
        "evidently_seconds": statistics.median(theirs),
        "all_nbops_seconds": ours,
        "all_evidently_seconds": theirs,
        "speedup": statistics.median(theirs) / statistics.median(ours),
        "nbops_cpu_seconds": statistics.median(ours_cpu),
        "evidently_cpu_seconds": statistics.median(theirs_cpu),
        "cpu_ratio": statistics.median(theirs_cpu) / statistics.median(ours_cpu),
        "load_average_1min": os.getloadavg()[0],
        "evidently": {"version": EVIDENTLY_PACKAGES[0].split("==")[1], **details["evidently"]},
        "nbops_flagged": flagged,
        "nbops_left_out": details["nbops"].get("left_out"),
        "simulator_named": pair["drifted"],
    }


def run_mode_raw(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed with exit code {proc.returncode}")
    return proc.stdout


# --------------------------------------------------------------------------- report


def fmt_s(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def evidently_lines(res: dict[str, Any]) -> list[str]:
    ev = res.get("evidently")
    if not ev:
        return [
            f"Evidently not measured in this run (--no-evidently); the issue measured Evidently {EVIDENTLY['version']} "
            f"at {EVIDENTLY['seconds']} s and {EVIDENTLY['memory']} on 1M x 1M rows here.",
            "",
        ]
    e = ev["evidently"]
    return [
        f"## Against Evidently {e['version']}, side by side on a {ev['rows']:,}-row pair",
        "",
        f"A {ev['rows']:,}-row history against a {ev['rows']:,}-row later month (shock), both Parquet with every "
        "column; each whole process timed, alternating, median of the runs. nbops infers the reference's schema and "
        "leaves "
        f"{', '.join(f'{k} ({v})' for k, v in (ev['nbops_left_out'] or {}).items())} out; Evidently is given the same "
        "20 feature columns (DataDriftPreset, in its own virtualenv: it needs pandas<3).",
        "",
        "| process | wall seconds | CPU seconds (user + system, all threads) | goal |",
        "|---|---:|---:|---:|",
        f"| `nbops drift pair_reference.parquet pair_current.parquet --json` | {ev['nbops_seconds']:.2f} | "
        f"{ev.get('nbops_cpu_seconds', float('nan')):.2f} | |",
        f"| Evidently: read both, `Report([DataDriftPreset()]).run(...)` | {ev['evidently_seconds']:.2f} | "
        f"{ev.get('evidently_cpu_seconds', float('nan')):.2f} | |",
        f"| speed-up | {ev['speedup']:.1f}x | {ev.get('cpu_ratio', float('nan')):.1f}x | ≥ {GOAL_SPEEDUP:g}x "
        f"({'met' if ev['speedup'] >= GOAL_SPEEDUP else '**not met**'} in wall time) |",
        "",
        f"Runs (s): nbops {', '.join(f'{v:.2f}' for v in ev['all_nbops_seconds'])}; Evidently "
        f"{', '.join(f'{v:.2f}' for v in ev['all_evidently_seconds'])} (of which imports {e['imports_s']:.2f} s, last "
        f"run; peak RSS {e['peak_rss_mib']:,.0f} MiB). nbops flagged {len(ev['nbops_flagged'])} features "
        f"({', '.join(ev['nbops_flagged'])}); the simulator names {len(ev['simulator_named'])}; Evidently counted "
        f"{e['drifted_columns']:g} drifted columns. 1-minute load average {ev.get('load_average_1min', 0):.1f} on "
        f"{os.cpu_count()} cores: nbops uses two threads from 50,000 rows, so on a busy machine its wall time "
        "suffers more than Evidently's single thread; the CPU ratio does not depend on the load.",
        "",
    ]


def startup_lines(res: dict[str, Any]) -> list[str]:
    st = res["startup"]
    ok = lambda v: "met" if v <= GOAL_STARTUP_S else "**not met**"  # noqa: E731
    return [
        "## Start-up",
        "",
        "| process | wall seconds (median) | CPU seconds (user + system) | goal (wall) |",
        "|---|---:|---:|---:|",
        f"| `python -c pass` (the interpreter alone) | {st['python']['seconds']:.3f} | "
        f"{st['python']['cpu_seconds']:.3f} | |",
        f"| `nbops drift --help` | {st['drift_help']['seconds']:.3f} | {st['drift_help']['cpu_seconds']:.3f} | ≤ "
        f"{GOAL_STARTUP_S:g} s ({ok(st['drift_help']['seconds'])}) |",
        f"| `nbops estimate --help` | {st['estimate_help']['seconds']:.3f} | {st['estimate_help']['cpu_seconds']:.3f} "
        f"| ≤ {GOAL_STARTUP_S:g} s ({ok(st['estimate_help']['seconds'])}) |",
        "",
        f"Load average while measuring: {st['load_average_1min']:.1f} on {os.cpu_count()} cores (wall time includes "
        "waiting for a core; the CPU time does not).",
        "",
        "Heavy modules `nbops drift --help` imports: "
        f"{', '.join(st['heavy_modules_imported_by_drift_help']) or 'none'} "
        f"(of {', '.join(HEAVY_MODULES)}): each command imports what it needs when it runs.",
        "",
    ]


def threshold_lines(res: dict[str, Any]) -> list[str]:
    th = res["thresholds"]
    lines = [
        "## PSI thresholds by batch size",
        "",
        f"Against the {th['reference_rows']:,}-row reference, {th['configured']:g} configured; a feature drifts at "
        "max(configured, 1.3 x the 99.99% quantile of PSI under no drift, chi-square(bins - 1) x (1/n + 1/m)).",
        "",
        "| batch rows | a decile-binned feature: alert / watch | every feature: lowest - highest alert |",
        "|---:|---:|---:|",
    ]
    for rows, t in th["by_rows"].items():
        lines.append(
            f"| {int(rows):,} | {t['decile_feature']:.3f} / {t['decile_feature_watch']:.3f} | "
            f"{t['min']:.3f} - {t['max']:.3f} |"
        )
    return [*lines, ""]


def markdown(res: dict[str, Any]) -> str:
    big = res["timings"][str(res["rows"])]
    lines = [
        f"# Drift benchmark ({res['rows']:,} rows × {big['features']} features against a stored reference profile, "
        f"median of {res['reps']}, {res['machine']['cpus']} cores)",
        "",
        "Timed: load the reference profile JSON + read the current batch (Parquet, all "
        f"{big['columns']} columns) + `compare()`, each run in a fresh Python process; peak memory is that process's "
        "`ru_maxrss` (imports included).",
        "",
        "| measurement | value | goal | met |",
        "|---|---:|---:|:---:|",
        f"| time, {res['rows']:,} rows | {fmt_s(big['seconds'])} s | ≤ {GOAL_SECONDS:g} s | "
        f"{'yes' if big['seconds'] <= GOAL_SECONDS else '**no**'} |",
        f"| peak RSS, {res['rows']:,} rows (highest of the runs) | {big['max_peak_rss_mib']:,.0f} MiB | ≤ "
        f"{GOAL_RSS_MIB:,.0f} MiB (1 GiB) | {'yes' if big['max_peak_rss_mib'] <= GOAL_RSS_MIB else '**no**'} |",
    ]
    for size in res["sizes"]:
        if size == res["rows"]:
            continue
        t = res["timings"][str(size)]
        lines.append(f"| time, {size:,} rows | {fmt_s(t['seconds'])} s | — | |")
    for size in res["sizes"]:
        if size == res["rows"]:
            continue
        t = res["timings"][str(size)]
        lines.append(f"| peak RSS, {size:,} rows | {t['peak_rss_mib']:,.0f} MiB | — | |")
    lines += [
        "",
        "Where the time goes (medians, seconds), and memory:",
        "",
        "| rows | load profile | read Parquet | compare | total | CPU time of the work (all threads) | 1-min load "
        "average | process wall (start-up + imports + work) | RSS after imports | peak RSS (ru_maxrss) | VmHWM | "
        "tracemalloc peak (numpy/Python heap; Arrow not traced) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in res["sizes"]:
        t = res["timings"][str(size)]
        tm, hwm = t.get("tracemalloc_peak_mib"), t.get("vmhwm_mib")
        lines.append(
            f"| {size:,} | {fmt_s(t['load_profile_s'])} | {fmt_s(t['read_parquet_s'])} | {fmt_s(t['compare_s'])} | "
            f"{fmt_s(t['seconds'])} | {fmt_s(t['cpu_s'])} | {t['load_average_1min']:.1f} | "
            f"{fmt_s(t['process_wall_s'])} "
            f"| {t['rss_after_imports_mib']:,.0f} MiB | {t['peak_rss_mib']:,.0f} MiB | "
            f"{'' if hwm is None else f'{hwm:,.0f} MiB'} | {'' if tm is None else f'{tm:,.0f} MiB'} |"
        )
    lines += [
        "",
        f"Each timed run: {', '.join(fmt_s(s) for s in big['all_seconds'])} s at {res['rows']:,} rows (CPU time of the "
        f"work, median: {fmt_s(big['cpu_s'])} s; "
        f"1-min load average {big['load_average_1min']:.1f} on {res['machine']['cpus']} cores while measuring: the "
        "machine was shared, so wall times include waiting for a core). "
        f"The {res['rows']:,}-row batch is the `shock` scenario (batch 1, seed 0); drifted: "
        f"{', '.join(big['drifted'])}.",
        "",
        *evidently_lines(res),
        *startup_lines(res),
        *threshold_lines(res),
        f"## Ground truth at {res['ground_truth']['rows']:,} rows",
        "",
        f"Reference profile from each seed's {res['ground_truth']['reference_rows']:,}-row history; batches seed 0 "
        "with k=1 and seed 1 with k=6; default thresholds (PSI ≥ 0.2, raised for a small batch; one feature makes the "
        "dataset drifted).",
        "",
        "| scenario | batches | features named by the simulator | found | dataset drift raised | flagged but not named "
        "|",
        "|---|---|---:|---:|---:|---|",
    ]
    for scenario, p in res["ground_truth"]["scenarios"].items():
        lines.append(
            f"| {scenario} | {'; '.join(p['batches'])} | {p['named']} | {p['found']} | "
            f"{p['dataset_drift']}/{len(p['batches'])} | {', '.join(sorted(set(p['extra_flagged']))) or '—'} |"
        )
    gt = res["ground_truth"]
    lines += [
        "",
        f"Recall {gt['found']}/{gt['named']} = {gt['recall']:.3f} (goal ≥ 0.95); false alarms on clean batches (none, "
        f"concept) {gt['false_alarms']}/{gt['clean_batches']} = {gt['false_alarm_rate']:.3f} (goal ≤ 0.05).",
        "",
        f"Measured {res['measured_at']} with `{res['command']}` (Python {res['machine']['python']}, numpy "
        f"{res['machine']['numpy']}, pandas {res['machine']['pandas']}, pyarrow {res['machine']['pyarrow']}); "
        f"setup (simulation, profile, files) took {res['setup_s']:.1f} s and the whole run {res['total_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--worker", nargs=2, metavar=("PROFILE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--ground-truth", metavar="PROFILE", help=argparse.SUPPRESS)
    parser.add_argument("--pair", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--thresholds", metavar="PROFILE", help=argparse.SUPPRESS)
    parser.add_argument("--no-evidently", action="store_true", help="skip the side-by-side run against Evidently")
    args = parser.parse_args(argv)
    sizes = sorted({1_000, 100_000, args.rows})
    if args.worker:
        print(json.dumps(worker(*args.worker, trace=args.trace)))
        return 0
    if args.setup:
        print(json.dumps(setup(Path(args.setup), args.rows, sizes)))
        return 0
    if args.ground_truth:
        print(json.dumps(ground_truth(args.rows, args.ground_truth)))
        return 0
    if args.pair:
        print(json.dumps(write_pair(Path(args.pair), PAIR_ROWS)))
        return 0
    if args.thresholds:
        print(json.dumps(effective_thresholds(args.thresholds)))
        return 0

    t_total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        log(f"setup: simulating a {args.rows:,}-row history, saving its reference profile, writing the batches")
        prepared = run_mode("--setup", tmp, "--rows", str(args.rows))
        profile_path = Path(prepared["profile"])

        timings: dict[str, Any] = {}
        for size in sizes:
            batch_path = Path(prepared["batches"][str(size)])
            runs = []
            for rep in range(args.reps):
                runs.append(measure(profile_path, batch_path))
                r = runs[-1]
                log(
                    f"{size:>9,} rows, run {rep + 1}: {r['seconds']:.3f} s (cpu {r['cpu_s']:.2f} s, load "
                    f"{r['load_average_1min']:.1f}), peak RSS {r['peak_rss_mib']:,.0f} MiB"
                )
            traced = measure(profile_path, batch_path, trace=True)
            keys = (
                "seconds",
                "load_profile_s",
                "read_parquet_s",
                "compare_s",
                "cpu_s",
                "load_average_1min",
                "imports_s",
                "process_wall_s",
                "rss_after_imports_mib",
                "peak_rss_mib",
                "vmhwm_mib",
            )
            timings[str(size)] = {
                **{k: statistics.median(r[k] for r in runs) for k in keys},
                "rows": runs[0]["rows"],
                "columns": runs[0]["columns"],
                "features": runs[0]["features"],
                "all_seconds": [r["seconds"] for r in runs],
                "all_peak_rss_mib": [r["peak_rss_mib"] for r in runs],
                "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                "tracemalloc_peak_mib": traced["tracemalloc_peak_mib"],
                "drifted": runs[0]["drifted"],
                "dataset_drift": runs[0]["dataset_drift"],
            }

        log(f"ground truth at {args.rows:,} rows: {', '.join(SCENARIOS)} x (seed, k) {list(GT_SEEDS)}")
        truth_result = run_mode("--ground-truth", str(profile_path), "--rows", str(args.rows))
        thresholds = json.loads(run_mode_raw("--thresholds", str(profile_path)))
        log("start-up: nbops drift --help, nbops estimate --help")
        started = startup(max(args.reps, 5))
        evidently = None
        if not args.no_evidently:
            log(f"Evidently side by side on a {PAIR_ROWS:,}-row pair")
            evidently = evidently_side_by_side(Path(tmp), args.reps)

    big = timings[str(args.rows)]
    command = ".venv/bin/python bench/bench_drift.py" + (
        "" if args.reps == 3 and args.rows == 1_000_000 else f" --reps {args.reps} --rows {args.rows}"
    )
    res = {
        "command": command,
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), **prepared["machine"]},
        "rows": args.rows,
        "reps": args.reps,
        "sizes": sizes,
        "batch": {"scenario": "shock", "batch": 1, "seed": 0, "format": "parquet, all columns"},
        "reference": {
            "rows": args.rows,
            "seed": 0,
            "features": prepared["features"],
            "profile_json_bytes": prepared["profile_json_bytes"],
        },
        "timed": "ReferenceProfile.load(json) + read_frame(parquet) + compare(), fresh process per run",
        "timings": timings,
        "goals": {"seconds": GOAL_SECONDS, "peak_rss_mib": GOAL_RSS_MIB},
        "goals_met": {
            "seconds": big["seconds"] <= GOAL_SECONDS,
            "peak_rss_mib": big["max_peak_rss_mib"] <= GOAL_RSS_MIB,
            "startup_s": started["drift_help"]["seconds"] <= GOAL_STARTUP_S
            and started["estimate_help"]["seconds"] <= GOAL_STARTUP_S,
            **({"evidently_speedup": evidently["speedup"] >= GOAL_SPEEDUP} if evidently else {}),
        },
        "ground_truth": truth_result,
        "thresholds": thresholds,
        "startup": started,
        "evidently": evidently,
        "setup_s": prepared["setup_s"],
        "total_s": time.perf_counter() - t_total,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "drift.md").write_text(markdown(res))
    log(f"wrote {out / 'drift.json'} and {out / 'drift.md'} in {res['total_s']:.1f} s")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
