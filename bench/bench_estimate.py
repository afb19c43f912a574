"""Benchmark: nbops' performance estimation against NannyML's CBPE on the same simulated months.
Writes bench/results/estimate.json and estimate.md.

    .venv/bin/python bench/bench_estimate.py [--rows 100000] [--months 16] [--seeds 2]

One model (the pipeline's LightGBM values) trained on a simulated history; its test split is the
labelled reference of both estimators. For each scenario (none, shock, gradual, new-category,
concept) and seed, ``--months`` later months of 5,000 rows are scored and their labels held back;
each estimator gives each month's ROC AUC with its band, compared with the AUC the labels give.
Reported per scenario: mean absolute error, the share of months whose realised AUC lies inside
the band, the band's median half-width; and each estimator's wall time and peak memory, each in a
process of its own (reading the same Parquet of scores), with and without start-up.

NannyML runs in its own virtualenv under build/ (installed here on first use with the project's
uv; never a dependency of nbops): nannyml 0.13.1, which pins lightgbm<4.6 and imports statsmodels
without declaring it; NML_DISABLE_USAGE_LOGGING=1 keeps it from sending usage analytics.
NannyML's band is its sampling error (the standard deviation of the metric over reference chunks of
the month's size, times 3) around the estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "build" / "bench_estimate"
VENV = REPO / "build" / "nannyml-venv"
NANNYML = ["nannyml==0.13.1", "statsmodels", "lightgbm<4.6"]
ROWS_PER_MONTH = 5_000
SCENARIOS = ("none", "shock", "gradual", "new-category", "concept")
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

# Each estimator runs in its own process on the same files: reference.parquet (score, label) and
# months.parquet (scenario, seed, month, score). It writes one row per month: estimate, low, high.
OURS = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from nbops.monitoring.estimate import fit_binary_estimator
work = sys.argv[1]
t1 = time.perf_counter()
ref = pd.read_parquet(f"{work}/reference.parquet")
months = pd.read_parquet(f"{work}/months.parquet")
est = fit_binary_estimator(ref["score"].to_numpy(), ref["label"].to_numpy())
rows = []
for key, m in months.groupby(["scenario", "seed", "month"], sort=False):
    r = est.estimate(m["score"].to_numpy()).metrics["roc_auc"]
    rows.append({"scenario": key[0], "seed": int(key[1]), "month": int(key[2]), "estimated": r.value,
                 "low": r.low, "high": r.high})
t2 = time.perf_counter()
pd.DataFrame(rows).to_parquet(f"{work}/ours.parquet")
print(json.dumps({"seconds_total": t2 - t0, "seconds_estimator": t2 - t1,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

THEIRS = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
import nannyml as nml
work = sys.argv[1]
t1 = time.perf_counter()
ref = pd.read_parquet(f"{work}/reference.parquet")
months = pd.read_parquet(f"{work}/months.parquet")
ref["pred"] = (ref["score"] >= 0.5).astype(int)
est = nml.CBPE(y_pred_proba="score", y_pred="pred", y_true="label", problem_type="classification_binary",
               metrics=["roc_auc"], chunk_size=5000)
est.fit(ref)
rows = []
for key, m in months.groupby(["scenario", "seed"], sort=False):
    m = m.copy()
    m["pred"] = (m["score"] >= 0.5).astype(int)
    out = est.estimate(m[["score", "pred"]].reset_index(drop=True)).filter(period="analysis").to_df()
    values = out[("roc_auc", "value")].to_numpy()
    low = out[("roc_auc", "lower_confidence_boundary")].to_numpy()
    high = out[("roc_auc", "upper_confidence_boundary")].to_numpy()
    for i, month in enumerate(sorted(m["month"].unique())):
        rows.append({"scenario": key[0], "seed": int(key[1]), "month": int(month), "estimated": float(values[i]),
                     "low": float(low[i]), "high": float(high[i]),
                     "alert": bool(out[("roc_auc", "alert")].to_numpy()[i])})
t2 = time.perf_counter()
pd.DataFrame(rows).to_parquet(f"{work}/nannyml.parquet")
print(json.dumps({"seconds_total": t2 - t0, "seconds_estimator": t2 - t1,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "version": nml.__version__}))
"""


def nannyml_python() -> Path:
    """NannyML's own virtualenv (made once with the project's uv)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        uv = REPO / ".venv" / "bin" / "uv"
        subprocess.run([str(uv), "venv", "--python", sys.executable, str(VENV)], check=True)
        subprocess.run([str(uv), "pip", "install", "--python", str(python), *NANNYML], check=True)
    return python


def make_months(rows: int, months: int, seeds: int) -> None:
    """Train the model, write the reference (test split) and every month's scores and labels."""
    import lightgbm as lgb

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
    test = split.test
    pd.DataFrame({"score": booster.predict(transform.transform(test)), "label": test[TARGET].to_numpy(int)}).to_parquet(
        WORK / "reference.parquet"
    )
    frames, truth = [], []
    for scenario in SCENARIOS:
        for seed in range(seeds):
            for k in range(1, months + 1):
                batch, _ = simulate_batch(k, rows=ROWS_PER_MONTH, seed=1000 + seed, drift=scenario)
                score = booster.predict(transform.transform(batch))
                frames.append(pd.DataFrame({"scenario": scenario, "seed": seed, "month": k, "score": score}))
                from sklearn.metrics import roc_auc_score

                truth.append(
                    {"scenario": scenario, "seed": seed, "month": k, "realised": roc_auc_score(batch[TARGET], score)}
                )
    pd.concat(frames, ignore_index=True).to_parquet(WORK / "months.parquet")
    pd.DataFrame(truth).to_parquet(WORK / "truth.parquet")


def run(python: Path, code: str, env: dict[str, str]) -> dict[str, object]:
    started = time.perf_counter()
    proc = subprocess.run([str(python), "-c", code, str(WORK)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds_process"] = time.perf_counter() - started
    return out


def summarise(name: str) -> pd.DataFrame:
    est = pd.read_parquet(WORK / f"{name}.parquet").merge(
        pd.read_parquet(WORK / "truth.parquet"), on=["scenario", "seed", "month"]
    )
    est["error"] = (est["estimated"] - est["realised"]).abs()
    est["bias"] = est["estimated"] - est["realised"]
    est["covered"] = (est["low"] <= est["realised"]) & (est["realised"] <= est["high"])
    est["half_width"] = (est["high"] - est["low"]) / 2
    return est


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    make_months(args.rows, args.months, args.seeds)
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONPATH": str(REPO / "src")}
    timing = {
        "nbops": run(Path(sys.executable), OURS, env),
        "nannyml": run(nannyml_python(), THEIRS, {**env, "PYTHONPATH": ""}),
    }
    tables = {name: summarise(name) for name in ("ours", "nannyml")}
    per: dict[str, dict[str, dict[str, float]]] = {}
    for label, frame in (("nbops", tables["ours"]), ("nannyml", tables["nannyml"])):
        per[label] = {}
        for scenario in (*SCENARIOS, "covariate (3)"):
            m = (
                frame[frame["scenario"].isin(COVARIATE)]
                if scenario == "covariate (3)"
                else frame[frame["scenario"] == scenario]
            )
            per[label][scenario] = {
                "mae": float(m["error"].mean()),
                "bias": float(m["bias"].mean()),
                "coverage": float(m["covered"].mean()),
                "half_width": float(m["half_width"].median()),
                "months": int(len(m)),
            }
    reference = pd.read_parquet(WORK / "reference.parquet")
    from sklearn.metrics import roc_auc_score

    truth = pd.read_parquet(WORK / "truth.parquet")
    test_auc = float(roc_auc_score(reference["label"], reference["score"]))
    naive = {s: float((truth.loc[truth["scenario"] == s, "realised"] - test_auc).abs().mean()) for s in SCENARIOS}
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "history_rows": args.rows,
        "reference_rows": int(len(reference)),
        "months_per_scenario": args.months * args.seeds,
        "rows_per_month": ROWS_PER_MONTH,
        "test_auc": test_auc,
        "naive_mae": naive,
        "per_scenario": per,
        "timing": timing,
        "nannyml_alerts": int(tables["nannyml"]["alert"].sum()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimate.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Performance estimation: nbops against NannyML {timing['nannyml'].get('version')} CBPE",
        "",
        f"One LightGBM model (the pipeline's values) on a {args.rows:,}-row simulated history; reference: its "
        f"test split ({len(reference):,} rows, ROC AUC {test_auc:.4f}). {args.months} months x {args.seeds} seeds "
        f"of {ROWS_PER_MONTH:,} rows per scenario, labels held back; both estimators read the same scores.",
        "",
        "| scenario | nbops MAE | NannyML MAE | 'test AUC holds' MAE | nbops coverage | NannyML coverage | "
        "nbops ± | NannyML ± | nbops bias | NannyML bias |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in (*SCENARIOS, "covariate (3)"):
        a, b = per["nbops"][s], per["nannyml"][s]
        naive_s = naive[s] if s in naive else float(np.mean([naive[c] for c in COVARIATE]))
        lines.append(
            f"| {s} | {a['mae']:.4f} | {b['mae']:.4f} | {naive_s:.4f} | {a['coverage']:.0%} | {b['coverage']:.0%} | "
            f"{a['half_width']:.4f} | {b['half_width']:.4f} | {a['bias']:+.4f} | {b['bias']:+.4f} |"
        )
    t_ours, t_nml = timing["nbops"], timing["nannyml"]
    lines += [
        "",
        "| | nbops | NannyML |",
        "|---|---:|---:|",
        f"| whole process (s) | {t_ours['seconds_process']:.2f} | {t_nml['seconds_process']:.2f} |",
        f"| fit + estimate every month, no start-up (s) | {t_ours['seconds_estimator']:.2f} | "
        f"{t_nml['seconds_estimator']:.2f} |",
        f"| peak memory (MiB, max RSS) | {t_ours['peak_mib']:.0f} | {t_nml['peak_mib']:.0f} |",
        "",
        "Concept drift is invisible to both (the estimate stays near the test AUC while the realised AUC falls): "
        "only realised performance catches it once the labels arrive.",
        f"NannyML raised {result['nannyml_alerts']} ROC AUC alert(s) over all months.",
        "",
        f"Measured {result['measured']} on {result['machine']} with `.venv/bin/python bench/bench_estimate.py "
        f"--rows {args.rows} --months {args.months} --seeds {args.seeds}`.",
    ]
    (RESULTS / "estimate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
