"""Benchmark: nbops' performance estimation against NannyML's CBPE on the same simulated months. Writes
bench/results/estimate.json and estimate.md.

    .venv/bin/python bench/bench_estimate.py [--rows 100000] [--months 16] [--seeds 2] [--big-months 6]

One model (the pipeline's LightGBM values) trained on a simulated history; its test split is the
labelled reference of both estimators. For each scenario (none, shock, gradual, new-category,
concept, and a segment of clean months whose AUC really drops), later months are scored and their
labels held back: ``--months`` x ``--seeds`` months of 1,000 and of 5,000 rows, and ``--big-months``
months of 100,000 rows (one seed). Each estimator gives each month's ROC AUC with its band, compared
with the AUC the labels give. Reported per batch size and scenario: mean absolute error, the share
of months whose realised AUC lies inside the band, the band's median half-width, the mean bias; and
each estimator's wall time and peak memory, each in a process of its own, with and without start-up,
on the 5,000-row months and on one month of 1,000,000 rows.

Both read the same scores; nbops also reads the months' model inputs (its estimator is fitted with
the model and widens its band where a batch goes beyond what the test split can vouch for; see
nbops.monitoring.reference_gaps). NannyML runs in its own virtualenv under build/ (installed here on
first use with the project's uv; never a dependency of nbops): nannyml 0.13.1, which pins
lightgbm<4.6 and imports statsmodels without declaring it; NML_DISABLE_USAGE_LOGGING=1 keeps it from
sending usage analytics. NannyML's band is its sampling error (the standard deviation of the metric
over reference chunks of the month's size, times 3) around the estimate; its alert thresholds come
from the spread of the reference chunks' realised AUC."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "build" / "bench_estimate"
VENV = REPO / "build" / "nannyml-venv"
NANNYML = ["nannyml==0.13.1", "statsmodels", "lightgbm<4.6"]
SIZES = (1_000, 5_000, 100_000)
BIG = 1_000_000  # one month of this many rows, for the timing
SCENARIOS = ("none", "shock", "gradual", "new-category", "concept", "segment")
# "segment": a clean month of applicants between the 40th and 90th percentile of the model's risk only
# (a covariate shift inside what the test split covers): its AUC really drops, and an alert should say so.
SEGMENT = (0.4, 0.9)
COVARIATE = ("shock", "gradual", "new-category")
PIPELINE = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "verbose": -1,
    "seed": 0,
}
sys.path.insert(0, str(REPO / "src"))

# Each estimator runs in its own process on the same files: reference.parquet (score, label, the
# model's inputs f0..), months_<size>.parquet (scenario, seed, month, score, inputs), model.txt. It
# writes one row per month: estimate, low, high; and its times and peak memory.
PEAK = r"""
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
# nbops fits its estimator once per version, at registration, and stores it as JSON (as the register
# stage does); estimating loads it, as `nbops estimate` and the monitor do.
FIT = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd, lightgbm as lgb
from nbops.monitoring.estimate import fit_binary_estimator
work = sys.argv[1]
ref = pd.read_parquet(f"{work}/reference.parquet")
meta = json.loads(open(f"{work}/inputs.json").read())
est = fit_binary_estimator(
    ref["score"].to_numpy(), ref["label"].to_numpy(), booster=lgb.Booster(model_file=f"{work}/model.txt"),
    features=ref[meta["columns"]].to_numpy(), feature_names=meta["names"], categorical=meta["categorical"],
)
open(f"{work}/performance_estimator.json", "w").write(json.dumps(est.to_dict()))
print(json.dumps({"seconds_total": time.perf_counter() - t0}))
"""
OURS = (
    PEAK
    + r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from pathlib import Path
from nbops.monitoring.estimate import load_estimator
from nbops.monitoring.monitor import AlertRules, estimated_performance_alerts
work, size = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
est = load_estimator(Path(work))
meta = json.loads(open(f"{work}/inputs.json").read())
months = pd.read_parquet(f"{work}/months_{size}.parquet")
rows = []
for key, m in months.groupby(["scenario", "seed", "month"], sort=False):
    e = est.estimate(m["score"].to_numpy(), m[meta["columns"]].to_numpy(np.float64))
    r = e.metrics["roc_auc"]
    alert = bool(estimated_performance_alerts(e, est.reference, AlertRules()))
    rows.append({"scenario": key[0], "seed": int(key[1]), "month": int(key[2]), "estimated": r.value,
                 "low": r.low, "high": r.high, "alert": alert})
t2 = time.perf_counter()
pd.DataFrame(rows).to_parquet(f"{work}/ours_{size}.parquet")
print(json.dumps({"seconds_total": t2 - t0, "seconds_estimator": t2 - t1, "peak_mib": peak_mib()}))
"""
)

THEIRS = (
    PEAK
    + r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
import nannyml as nml
work, size = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
ref = pd.read_parquet(f"{work}/reference.parquet", columns=["score", "label"])
months = pd.read_parquet(f"{work}/months_{size}.parquet", columns=["scenario", "seed", "month", "score"])
ref["pred"] = (ref["score"] >= 0.5).astype(int)
est = nml.CBPE(y_pred_proba="score", y_pred="pred", y_true="label", problem_type="classification_binary",
               metrics=["roc_auc"], chunk_size=int(size))
est.fit(ref)
rows = []
for key, m in months.groupby(["scenario", "seed"], sort=False):
    m = m.copy()
    m["pred"] = (m["score"] >= 0.5).astype(int)
    out = est.estimate(m[["score", "pred"]].reset_index(drop=True)).filter(period="analysis").to_df()
    values = out[("roc_auc", "value")].to_numpy()
    low = out[("roc_auc", "lower_confidence_boundary")].to_numpy()
    high = out[("roc_auc", "upper_confidence_boundary")].to_numpy()
    alert = out[("roc_auc", "alert")].to_numpy()
    for i, month in enumerate(sorted(m["month"].unique())):
        rows.append({"scenario": key[0], "seed": int(key[1]), "month": int(month), "estimated": float(values[i]),
                     "low": float(low[i]) if low[i] is not None else float("nan"),
                     "high": float(high[i]) if high[i] is not None else float("nan"), "alert": bool(alert[i])})
t2 = time.perf_counter()
pd.DataFrame(rows).to_parquet(f"{work}/nannyml_{size}.parquet")
print(json.dumps({"seconds_total": t2 - t0, "seconds_estimator": t2 - t1, "peak_mib": peak_mib(),
                  "version": nml.__version__}))
"""
)


def nannyml_python() -> Path:
    """NannyML's own virtualenv (made once with the project's uv)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        uv = REPO / ".venv" / "bin" / "uv"
        subprocess.run([str(uv), "venv", "--python", sys.executable, str(VENV)], check=True)
        subprocess.run([str(uv), "pip", "install", "--python", str(python), *NANNYML], check=True)
    return python


def make_months(rows: int, months: int, seeds: int, big_months: int) -> None:
    """Train the model; write the reference (test split), every month's scores, inputs and realised AUC."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from nbops.data.ingest import simulator_schema
    from nbops.data.simulate import TARGET, simulate_batch, simulate_history
    from nbops.data.validate import validate_table
    from nbops.features.split import split_rows
    from nbops.runtime.transform import FeatureTransform

    schema = simulator_schema()
    raw, _ = simulate_history(rows=rows, seed=7)
    valid = validate_table(raw, schema, file="simulated history").valid
    split = split_rows(valid, time_column=schema.time_column, valid_fraction=0.15, test_fraction=0.15, seed=7)
    numeric = [c.name for c in schema.features if c.kind == "numeric"]
    categorical = [c.name for c in schema.features if c.kind == "categorical"]
    transform = FeatureTransform.fit(split.train, numeric, categorical)
    data = lgb.Dataset(
        transform.transform(split.train), split.train[TARGET], categorical_feature=transform.categorical_indices
    )
    booster = lgb.train(PIPELINE, data, num_boost_round=300)
    WORK.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(WORK / "model.txt"))
    columns = [f"f{j}" for j in range(len(transform.feature_names))]
    (WORK / "inputs.json").write_text(
        json.dumps({"columns": columns, "names": transform.feature_names, "categorical": transform.categorical_indices})
    )

    def frame(x: np.ndarray, **extra: object) -> pd.DataFrame:
        return pd.DataFrame({**extra, **dict(zip(columns, x.T.astype(np.float32), strict=True))})

    x = transform.transform(split.test)
    frame(x, score=booster.predict(x), label=split.test[TARGET].to_numpy(int)).to_parquet(WORK / "reference.parquet")
    truth = []
    plan = {size: (range(seeds), range(1, months + 1)) for size in SIZES}
    plan[SIZES[-1]] = (range(1), range(1, big_months + 1))
    plan[BIG] = (range(1), range(1, 2))
    for size, (seed_range, month_range) in plan.items():
        frames = []
        for scenario in SCENARIOS if size != BIG else ("shock",):
            for seed in seed_range:
                for k in month_range:
                    if scenario == "segment":
                        batch, _ = simulate_batch(k, rows=2 * size, seed=1000 + seed, drift="none")
                        score = booster.predict(transform.transform(batch))
                        low, high = np.quantile(score, SEGMENT)
                        batch = batch[(score >= low) & (score <= high)].head(size)
                    else:
                        batch, _ = simulate_batch(k, rows=size, seed=1000 + seed, drift=scenario)
                    x = transform.transform(batch)
                    score = booster.predict(x)
                    frames.append(frame(x, scenario=scenario, seed=seed, month=k, score=score))
                    truth.append(
                        {
                            "size": size,
                            "scenario": scenario,
                            "seed": seed,
                            "month": k,
                            "realised": roc_auc_score(batch[TARGET], score),
                        }
                    )
        pd.concat(frames, ignore_index=True).to_parquet(WORK / f"months_{size}.parquet")
    pd.DataFrame(truth).to_parquet(WORK / "truth.parquet")


def run(python: Path, code: str, size: int, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run([str(python), "-c", code, str(WORK), str(size)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds_process"] = time.perf_counter() - started
    return out


def summarise(name: str, size: int) -> pd.DataFrame:
    truth = pd.read_parquet(WORK / "truth.parquet")
    est = pd.read_parquet(WORK / f"{name}_{size}.parquet").merge(
        truth[truth["size"] == size], on=["scenario", "seed", "month"]
    )
    est["error"] = (est["estimated"] - est["realised"]).abs()
    est["bias"] = est["estimated"] - est["realised"]
    est["covered"] = (est["low"] <= est["realised"]) & (est["realised"] <= est["high"])
    est["half_width"] = (est["high"] - est["low"]) / 2
    return est


def figures(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    out = {}
    for scenario in (*SCENARIOS, "covariate (3)"):
        m = (
            frame[frame["scenario"].isin(COVARIATE)]
            if scenario == "covariate (3)"
            else frame[frame["scenario"] == scenario]
        )
        out[scenario] = {
            "mae": float(m["error"].mean()),
            "bias": float(m["bias"].mean()),
            "coverage": float(m["covered"].mean()),
            "half_width": float(m["half_width"].median()),
            "months": int(len(m)),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--big-months", type=int, default=6, help="months of 100,000 rows per scenario")
    args = ap.parse_args()
    make_months(args.rows, args.months, args.seeds, args.big_months)
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONPATH": str(REPO / "src")}
    theirs_python = nannyml_python()
    fit = run(Path(sys.executable), FIT, 0, env)
    timing: dict[str, dict[str, dict[str, Any]]] = {"nbops": {}, "nannyml": {}}
    per: dict[str, dict[str, dict[str, dict[str, float]]]] = {"nbops": {}, "nannyml": {}}
    alerts: dict[str, dict[str, dict[str, int]]] = {"nbops": {}, "nannyml": {}}
    for size in (*SIZES, BIG):
        timing["nbops"][str(size)] = run(Path(sys.executable), OURS, size, env)
        timing["nannyml"][str(size)] = run(theirs_python, THEIRS, size, {**env, "PYTHONPATH": ""})
        if size == BIG:
            continue
        for name, label in (("ours", "nbops"), ("nannyml", "nannyml")):
            frame = summarise(name, size)
            per[label][str(size)] = figures(frame)
            alerts[label][str(size)] = {s: int(frame.loc[frame["scenario"] == s, "alert"].sum()) for s in SCENARIOS}
    reference = pd.read_parquet(WORK / "reference.parquet", columns=["score", "label"])
    from sklearn.metrics import roc_auc_score

    truth = pd.read_parquet(WORK / "truth.parquet")
    truth = truth[truth["size"] == 5_000]
    test_auc = float(roc_auc_score(reference["label"], reference["score"]))
    naive = {s: float((truth.loc[truth["scenario"] == s, "realised"] - test_auc).abs().mean()) for s in SCENARIOS}
    naive["covariate (3)"] = float((truth.loc[truth["scenario"].isin(COVARIATE), "realised"] - test_auc).abs().mean())
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg()[0],
        "history_rows": args.rows,
        "reference_rows": int(len(reference)),
        "test_auc": test_auc,
        "naive_mae_5000": naive,
        "per_size_and_scenario": per,
        "timing": timing,
        "nbops_fit": fit,
        "alerts": alerts,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimate.json").write_text(json.dumps(result, indent=2) + "\n")
    version = timing["nannyml"]["5000"].get("version")
    lines = [
        f"# Performance estimation: nbops against NannyML {version} CBPE",
        "",
        f"One LightGBM model (the pipeline's values) on a {args.rows:,}-row simulated history; reference: its test "
        f"split ({len(reference):,} rows, ROC AUC {test_auc:.4f}). Per scenario, {args.months} months x {args.seeds} "
        f"seeds of 1,000 and of 5,000 rows, and {args.big_months} months of 100,000 rows; labels held back ('segment': "
        f"a clean month of the applicants between the {SEGMENT[0]:.0%} and {SEGMENT[1]:.0%} percentiles of the "
        "model's risk only, whose AUC really drops). Both estimators read the same scores; nbops also reads the "
        "model's inputs.",
        "",
        "| rows a month | scenario | nbops MAE | NannyML MAE | nbops coverage | NannyML coverage | nbops ± | NannyML ± "
        "| nbops bias | NannyML bias |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        for s in (*SCENARIOS, "covariate (3)"):
            a, b = per["nbops"][str(size)][s], per["nannyml"][str(size)][s]
            lines.append(
                f"| {size:,} | {s} | {a['mae']:.4f} | {b['mae']:.4f} | {a['coverage']:.0%} | {b['coverage']:.0%} | "
                f"{a['half_width']:.4f} | {b['half_width']:.4f} | {a['bias']:+.4f} | {b['bias']:+.4f} |"
            )
    lines += [
        "",
        "'test AUC holds' (no estimator), mean absolute error at 5,000 rows: "
        + ", ".join(f"{s} {naive[s]:.4f}" for s in (*SCENARIOS, "covariate (3)"))
        + ".",
        "",
        "| | nbops | NannyML |",
        "|---|---:|---:|",
    ]
    for size, what in (
        (5_000, f"{5 * args.months * args.seeds} months of 5,000 rows"),
        (BIG, "one month of 1,000,000 rows"),
    ):
        ours, theirs = timing["nbops"][str(size)], timing["nannyml"][str(size)]
        lines += [
            f"| {what}: whole process (s) | {ours['seconds_process']:.2f} | {theirs['seconds_process']:.2f} |",
            f"| {what}: estimate, no start-up (nbops loads its estimator, NannyML fits) (s) | "
            f"{ours['seconds_estimator']:.2f} | "
            f"{theirs['seconds_estimator']:.2f} |",
            f"| {what}: peak memory (MiB, VmHWM) | {ours['peak_mib']:.0f} | {theirs['peak_mib']:.0f} |",
        ]
    lines += [
        "",
        "nbops fits its estimator once per version, at registration (calibration, bootstrap, the model probed on the "
        f"test split; stored as JSON): {fit['seconds_process']:.2f} s as a process of its own. The times above load "
        "it, as `nbops estimate` and the monitor do; NannyML fits on the reference in every run.",
        "",
        "Estimated ROC AUC alerts over all months (nbops: the whole band below the test AUC less max_auc_drop 0.05; "
        "NannyML: its thresholds from the reference chunks' spread):",
        "",
        "| rows a month | " + " | ".join(SCENARIOS) + " |",
        "|---:|" + "---:|" * len(SCENARIOS),
    ]
    for size in SIZES:
        for label in ("nbops", "nannyml"):
            months_each = per[label][str(size)]["none"]["months"]
            counts = " | ".join(f"{alerts[label][str(size)][s]} of {months_each}" for s in SCENARIOS)
            lines.append(f"| {size:,} ({'nbops' if label == 'nbops' else 'NannyML'}) | {counts} |")
    lines += [
        "",
        "Concept drift is invisible to both (the estimate stays near the test AUC while the realised AUC falls): "
        "only realised performance catches it once the labels arrive.",
        "",
        f"Measured {result['measured']} on {result['machine']} (load average {result['load_average']:.1f}) with "
        f"`.venv/bin/python bench/bench_estimate.py --rows {args.rows} --months {args.months} --seeds {args.seeds} "
        f"--big-months {args.big_months}`.",
    ]
    (RESULTS / "estimate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
