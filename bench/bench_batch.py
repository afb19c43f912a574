"""Benchmark: batch scoring, raw LightGBM against the package's two wheels, side by side in one run.
Writes bench/results/batch.json and batch.md.

    python bench/bench_batch.py [--rows 1000000] [--reps 3] [--file-reps 1]

1. Setup (not timed against the goal): the model of bench_scoring.py (a simulated credit-risk history,
   validated and transformed by nbops's own stage code, LightGBM with exactly 500 trees of 31 leaves,
   registered with real files and checksums), packaged twice: the default wheel (``build_wheel``) and the
   compiled wheel (``build_wheel(..., compiled=compile_trees(...))``, what ``nbops package --compiled``
   builds). The compiled trees are cached under the project's ``.nbops/cache/compiled`` (the same
   model file compiles once; the time of a compile that happened in this run is recorded). The default
   wheel is imported from its zip; the compiled wheel is unpacked as pip installs it, its package folder
   renamed ``<package>_compiled`` so both load in this one process (its code is the wheel's, unchanged).
2. One batch of ``--rows`` simulated rows x 20 features and its matrix ``x = m.transform(df)`` (the same
   matrix for every path). Three paths, alternating in every repetition so all see the same machine:
   raw ``booster.predict(x)`` (LightGBM on the ready matrix), the default wheel's ``m.predict(df)`` and
   the compiled wheel's ``m.predict(df)`` (both: validation + transform + scoring, from the DataFrame).
   Medians of ``--reps``, wall time and CPU time (all threads of this process) each; the compiled path is
   also split into validation, transform and the compiled trees on the ready matrix. Then the same three
   on one thread each (``num_threads=1``; ``NBOPS_SCORING_THREADS=1`` for the wheels): on a machine whose
   cores other processes keep busy, LightGBM's OpenMP threads wait for each other far longer than the
   compiled trees' plain threads do, and one thread each is the comparison that wait cannot distort.
3. Each wheel's file path, ``score_file`` (what ``python -m <pkg> score IN OUT`` runs: Parquet in,
   chunks of 100,000 rows, Parquet out), ``--file-reps`` times.
4. Agreement: the largest absolute difference of each path's predictions from raw ``booster.predict``.

Other processes share this machine's two cores; the load average is recorded at each step. Compare the
ratios within the run (CPU-time ratios are the steadier ones on a busy machine).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CACHE = REPO / ".nbops" / "cache" / "compiled"  # the project root's cache (env.yaml: root is the project)
GOAL = 2.5  # the compiled package's batch throughput over raw booster.predict on the same matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import build_model_wheel  # noqa: E402  (the benchmarks' shared model)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_compiled_wheel(wheel: Path, package: str, folder: Path) -> Any:
    """Unpack the compiled wheel as an install would, its package renamed so it loads beside the default."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(folder)
    alias = f"{package}_compiled"
    shutil.move(folder / package, folder / alias)
    sys.path.insert(0, str(folder))
    module = importlib.import_module(alias)
    model = module.load()
    if model.engine != "lleaves":
        raise SystemExit(f"the compiled wheel scores with {model.engine}: {model.engine_notice}")
    return model


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def alternate(
    paths: dict[str, Callable[[], Any]], reps: int, label: str
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, np.ndarray]]:
    """Time every path ``reps`` times, rotating which goes first; wall and CPU seconds, last predictions."""
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    predictions: dict[str, np.ndarray] = {}
    order = list(paths)
    for rep in range(reps):
        for name in order[rep % len(order) :] + order[: rep % len(order)]:
            w, c, out = timed(paths[name])
            wall[name].append(w)
            cpu[name].append(c)
            predictions[name] = np.asarray(out)
        log(
            f"{label}rep {rep + 1}/{reps}: "
            + ", ".join(f"{k} {wall[k][-1]:.2f} s (CPU {cpu[k][-1]:.2f})" for k in order)
        )
    return wall, cpu, predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each in-memory path (default 3)")
    parser.add_argument("--file-reps", type=int, default=1, help="repetitions of each file path (0: skip)")
    parser.add_argument("--no-single-thread", action="store_true", help="skip the one-thread-each comparison")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import lightgbm as lgb

    from nbops.data.simulate import simulate_history
    from nbops.deploy.compiled_trees import compile_trees
    from nbops.deploy.wheel import build_wheel
    from nbops.registry.store import Registry

    command = "python bench/bench_batch.py" + "".join(f" {a}" for a in sys.argv[1:])
    started = time.perf_counter()
    loads: dict[str, tuple[float, float, float]] = {"start": os.getloadavg()}
    result: dict[str, Any] = {"command": command, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="nbops-bench-batch-") as tmp:
        work = Path(tmp)
        wheel, info = build_model_wheel(work, args.train_rows, args.seed)
        version = Registry(work / "registry" / "credit_risk").alias("production")
        assert version is not None
        t0 = time.perf_counter()
        trees = compile_trees(version.file("model.txt").read_bytes(), CACHE)
        compile_wall = time.perf_counter() - t0
        compiled_wheel = build_wheel(version, work / "dist-compiled", compiled=trees)
        log(
            f"compiled trees {'from the cache' if trees.from_cache else f'in {trees.seconds:.1f} s'} "
            f"({compiled_wheel.name}, {len(trees.library):,} bytes)"
        )
        sys.path.insert(0, str(wheel))
        default_module = importlib.import_module(info["package"])
        default = default_module.load()
        compiled = load_compiled_wheel(compiled_wheel, info["package"], work / "site")
        booster: lgb.Booster = default.booster
        # The same wheels loaded again with one scoring thread (the runtime reads it when a model loads).
        os.environ["NBOPS_SCORING_THREADS"] = "1"
        default_1, compiled_1 = default_module.load(), sys.modules[f"{info['package']}_compiled"].load()
        del os.environ["NBOPS_SCORING_THREADS"]

        df, _ = simulate_history(rows=args.rows, seed=args.seed + 1)
        batch_file = work / "batch.parquet"
        df.to_parquet(batch_file, index=False)
        df = pd.read_parquet(batch_file)  # as a batch arrives: read from a file (Arrow-backed text)
        x = default.transform(df)
        log(f"batch: {len(df):,} rows x {x.shape[1]} features")
        # Warm-up on a slice, and the three paths must agree before anything is timed.
        head = df.iloc[:20_000]
        reference = booster.predict(x[:20_000])
        for name, model in (("default", default), ("compiled", compiled)):
            if np.max(np.abs(model.predict(head) - reference)) > 1e-9:
                raise SystemExit(f"the {name} wheel does not score like booster.predict")

        paths: dict[str, Callable[[], Any]] = {
            "raw": lambda: booster.predict(x),
            "default": lambda: default.predict(df),
            "compiled": lambda: compiled.predict(df),
        }
        loads["before_batch"] = os.getloadavg()
        wall, cpu, predictions = alternate(paths, args.reps, "")
        single: dict[str, Any] = {}
        if not args.no_single_thread:
            one_thread: dict[str, Callable[[], Any]] = {
                "raw": lambda: booster.predict(x, num_threads=1),
                "default": lambda: default_1.predict(df),
                "compiled": lambda: compiled_1.predict(df),
            }
            wall_1, cpu_1, predictions_1 = alternate(one_thread, args.reps, "one thread each, ")
            med_1 = {k: median(v) for k, v in wall_1.items()}
            single = {
                "seconds": wall_1,
                "cpu_seconds": cpu_1,
                "median_seconds": med_1,
                "median_cpu_seconds": {k: median(v) for k, v in cpu_1.items()},
                "rows_per_s": {k: len(df) / v for k, v in med_1.items()},
                "throughput_vs_raw": {k: med_1["raw"] / v for k, v in med_1.items()},
                "max_abs_difference_vs_raw": {
                    k: float(np.max(np.abs(predictions_1[k] - predictions_1["raw"]))) for k in ("default", "compiled")
                },
            }
        # The compiled path in its parts (the scoring part on the ready matrix).
        parts: dict[str, list[float]] = {"validation": [], "transform": [], "compiled trees": []}
        for _ in range(args.reps):
            parts["validation"].append(timed(lambda: compiled.schema.check_frame(df))[0])
            parts["transform"].append(timed(lambda: compiled.transform(df))[0])
            parts["compiled trees"].append(timed(lambda: compiled.score_matrix(x))[0])
        loads["after_batch"] = os.getloadavg()

        files: dict[str, list[float]] = {"default": [], "compiled": []}
        if args.file_reps:
            runtime = importlib.import_module(f"{info['package']}._runtime.batch")
            for _ in range(args.file_reps):
                for name, model in (("default", default), ("compiled", compiled)):
                    dest = work / f"scored-{name}.parquet"
                    files[name].append(
                        timed(lambda m=model, d=dest: runtime.score_file(m, batch_file, d, progress=False))[0]
                    )
            scored = {n: pd.read_parquet(work / f"scored-{n}.parquet")["prediction"].to_numpy() for n in files}
        loads["end"] = os.getloadavg()

        raw_pred = predictions["raw"]
        med_wall = {k: median(v) for k, v in wall.items()}
        med_cpu = {k: median(v) for k, v in cpu.items()}
        rows = len(df)
        result.update(
            {
                "rows": rows,
                "features": int(x.shape[1]),
                "reps": args.reps,
                "model": {k: info[k] for k in ("trees", "num_leaves", "n_features", "train_rows", "test_roc_auc")},
                "wheels": {"default": wheel.name, "compiled": compiled_wheel.name},
                "compiled": {
                    **trees.descriptor.to_dict(),
                    "from_cache": trees.from_cache,
                    "compile_seconds": trees.seconds,
                    "compile_call_wall_seconds": compile_wall,
                    "check_max_abs_difference": trees.max_abs_difference,
                },
                "threads": {"lightgbm": "default (OpenMP)", "package": default._batch_threads["num_threads"]},
                "seconds": wall,
                "cpu_seconds": cpu,
                "median_seconds": med_wall,
                "median_cpu_seconds": med_cpu,
                "rows_per_s": {k: rows / v for k, v in med_wall.items()},
                "throughput_vs_raw": {k: med_wall["raw"] / v for k, v in med_wall.items()},
                "cpu_ratio_vs_raw": {k: med_cpu["raw"] / v for k, v in med_cpu.items()},
                "max_abs_difference_vs_raw": {
                    k: float(np.max(np.abs(predictions[k] - raw_pred))) for k in ("default", "compiled")
                },
                "identical_to_raw": {
                    k: bool(np.array_equal(predictions[k], raw_pred)) for k in ("default", "compiled")
                },
                "compiled_parts_median_seconds": {k: median(v) for k, v in parts.items()},
                "file_seconds": files,
                "file_rows_per_s": {k: rows / median(v) for k, v in files.items() if v},
                "file_max_abs_difference_vs_raw": (
                    {k: float(np.max(np.abs(scored[k] - raw_pred))) for k in scored} if args.file_reps else {}
                ),
                "goal": {"compiled_throughput_vs_raw": GOAL},
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "lightgbm": lgb.__version__,
                    "numpy": np.__version__,
                    "pandas": pd.__version__,
                },
                "one_thread_each": single,
                "load_average": loads,
                "total_seconds": time.perf_counter() - started,
            }
        )
    result["goal"]["met"] = result["throughput_vs_raw"]["compiled"] >= GOAL
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "batch.md").write_text(render(result))
    print(render(result))
    return 0


def one_thread_lines(r: dict[str, Any], names: dict[str, str]) -> list[str]:
    s = r.get("one_thread_each") or {}
    if not s:
        return []
    lines = [
        "### The same, one thread each (`num_threads=1`, `NBOPS_SCORING_THREADS=1`)",
        "",
        "| path | seconds (wall) | rows/s | throughput vs raw | CPU seconds | max abs difference vs raw |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in ("raw", "default", "compiled"):
        diff = "" if k == "raw" else f"{s['max_abs_difference_vs_raw'][k]:.2g}"
        lines.append(
            f"| {names[k]} | {s['median_seconds'][k]:.2f} | {s['rows_per_s'][k]:,.0f} | "
            f"{s['throughput_vs_raw'][k]:.2f}x | {s['median_cpu_seconds'][k]:.2f} | {diff} |"
        )
    lines += [
        "",
        "All runs (s): "
        + "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in s["seconds"][k]) for k in ("raw", "default", "compiled")),
    ]
    return lines


def render(r: dict[str, Any]) -> str:
    m, c = r["model"], r["compiled"]
    names = {
        "raw": "raw `booster.predict(x)` (LightGBM on the ready matrix)",
        "default": "default wheel `m.predict(df)` (validation + transform + LightGBM)",
        "compiled": "compiled wheel `m.predict(df)` (validation + transform + compiled trees)",
    }
    lines = [
        f"# Batch scoring benchmark ({r['machine']['cpus']} cores, Python {r['machine']['python']}, "
        f"LightGBM {r['machine']['lightgbm']})",
        "",
        f"Model: LightGBM, {m['trees']} trees, {m['num_leaves']} leaves, {m['n_features']} features, trained on "
        f"{m['train_rows']:,} simulated rows. Wheels: `{r['wheels']['default']}` and `{r['wheels']['compiled']}` "
        f"({c['compiler']}, CPU baseline {c['target_cpu']}; "
        + (
            "compiled trees from the cache"
            if c["from_cache"]
            else f"compiled in {c['compile_seconds']:.1f} s in this run, then cached"
        )
        + ").",
        "",
        f"## {r['rows']:,} rows x {r['features']} features, the same batch for every path "
        f"(median of {r['reps']}, alternating)",
        "",
        "| path | seconds (wall) | rows/s | throughput vs raw | CPU seconds | CPU vs raw | max abs difference vs raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in ("raw", "default", "compiled"):
        diff = "" if k == "raw" else f"{r['max_abs_difference_vs_raw'][k]:.2g}"
        lines.append(
            f"| {names[k]} | {r['median_seconds'][k]:.2f} | {r['rows_per_s'][k]:,.0f} | "
            f"{r['throughput_vs_raw'][k]:.2f}x | {r['median_cpu_seconds'][k]:.2f} | {r['cpu_ratio_vs_raw'][k]:.2f}x | "
            f"{diff} |"
        )
    goal = r["goal"]
    lines += [
        "",
        f"Goal: the compiled package's batch throughput >= {goal['compiled_throughput_vs_raw']}x raw "
        f"`booster.predict` on the same matrix: **{r['throughput_vs_raw']['compiled']:.2f}x, "
        f"{'met' if goal['met'] else 'not met'}** (by CPU time {r['cpu_ratio_vs_raw']['compiled']:.2f}x). "
        f"The default wheel's predictions are identical to raw: {r['identical_to_raw']['default']}.",
        "",
        "All runs (s): "
        + "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in r["seconds"][k]) for k in ("raw", "default", "compiled")),
        "",
        "| compiled path, part | seconds (median) |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in r["compiled_parts_median_seconds"].items()),
        "",
        *one_thread_lines(r, names),
    ]
    if r["file_seconds"]["default"]:
        lines += [
            "",
            "## File to file: `score_file` (what `python -m <pkg> score batch.parquet out.parquet` runs; chunks of "
            "100,000 rows)",
            "",
            "| wheel | seconds | rows/s | max abs difference vs raw |",
            "|---|---:|---:|---:|",
            *(
                f"| {k} | {median(r['file_seconds'][k]):.2f} | {r['file_rows_per_s'][k]:,.0f} | "
                f"{r['file_max_abs_difference_vs_raw'][k]:.2g} |"
                for k in ("default", "compiled")
            ),
        ]
    la = r["load_average"]
    lines += [
        "",
        f"Measured {r['measured_at']} with `{r['command']}` ({r['total_seconds']:.0f} s). 1-minute load average "
        f"at start / before the batch / after it / end: "
        + " / ".join(f"{la[k][0]:.1f}" for k in ("start", "before_batch", "after_batch", "end"))
        + f" on {r['machine']['cpus']} cores (other processes share them).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
