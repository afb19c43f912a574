"""Benchmark: the scoring wheel, as its users run it. Writes bench/results/scoring.json and scoring.md.

    python bench/bench_scoring.py [--rows 1000000] [--requests 5000] [--derived]

``--derived``: the model also has one derived feature, ``loan_to_income`` (:data:`FEATURE_CODE`, the
project's own feature code, env key ``feature_code``), which the wheel computes from the raw record on
every request; the results go to scoring_derived.json and scoring_derived.md.

1. Setup (not timed against a goal): simulate a credit-risk history, validate it and fit the feature
   transform with nbops's own stage code, train LightGBM with exactly 500 trees (no early stopping),
   register the model in a temporary registry (real files and checksums) and build the wheel with
   ``build_wheel``. The wheel is then imported the way a user does: it goes on ``sys.path`` (a wheel
   is a zip) and ``<pkg>.load()`` verifies the checksums and returns the ScoringModel.
2. Batch: ``m.predict(df)`` (validation + transform + predict) against the raw
   ``m.booster.predict(m.transform(df))``, alternating, median of ``--reps``; then the package path
   split into its three parts.
3. REST, one record per request: the wheel's own server (``python -m <pkg> serve``, one uvicorn
   worker), a minimal FastAPI app (the floor the brief asks for) and a plain ASGI app (what the
   HTTP server alone costs) in subprocesses; requests sent one after the other on a keep-alive
   connection, client-side latency per request; the servers take turns in blocks so all see the
   same machine state. The same request is then sent through each ASGI app in process (no server,
   socket or client), and the single-record scoring path is timed call by call and piece by piece.

Everything is measured in this one run; compare ratios within it, not against another machine.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import importlib
import importlib.util
import json
import math
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TREES = 500
BLOCK_PRIMING = 20  # untimed requests on each block's fresh connection
NUM_LEAVES = 31

# The feature module of the --derived case: one derived feature, as a project writes it.
FEATURE_CODE = '''"""Derived features of the credit-risk table."""
import pandas as pd


def loan_to_income(df: pd.DataFrame) -> pd.Series:
    """The loan as a share of a year's income (missing without an income)."""
    return df["loan_amount"] / df["annual_income"].where(df["annual_income"] > 0)
'''

GOALS = {
    "batch_ratio": 0.8,  # package / raw throughput
    "rest_p50_ms": 1.0,
    "rest_p99_ms": 2.0,
    "rest_rps": 1000.0,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def build_model_wheel(
    work: Path, train_rows: int, seed: int, feature_code: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Simulate, validate, fit the transform, train 500 trees, register and package; return the wheel.

    ``feature_code``: the source of a feature module whose derived features the model uses."""
    import lightgbm as lgb

    from nbops.config.params import EvaluateParams, FeaturesParams, TrainParams
    from nbops.data.ingest import simulator_schema
    from nbops.data.io import write_parquet
    from nbops.data.profile import fingerprint
    from nbops.data.simulate import simulate_history
    from nbops.data.validate import validate_table
    from nbops.deploy.wheel import build_wheel
    from nbops.features.build import build_features
    from nbops.modeling.evaluate import segment_metrics
    from nbops.modeling.metrics import task_metrics
    from nbops.modeling.train import booster_params
    from nbops.registry.gate import decide
    from nbops.registry.publish import register_model
    from nbops.registry.store import Registry

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    raw, _truth = simulate_history(rows=train_rows, seed=seed)
    schema = simulator_schema()
    validation = validate_table(raw, schema, file=f"simulate(rows={train_rows}, seed={seed})")
    valid_path = work / "data" / "valid.parquet"
    write_parquet(validation.valid, valid_path)
    timings["simulate_and_validate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    feats_dir = work / "features"
    if feature_code is not None:
        (work / "features.py").write_text(feature_code)
    features = build_features(
        FeaturesParams(seed=seed, tracking="disabled", feature_code="features.py" if feature_code else None),
        schema=schema,
        valid_rows=valid_path,
        out={
            "train": feats_dir / "train.parquet",
            "valid": feats_dir / "valid.parquet",
            "test": feats_dir / "test.parquet",
            "transform": feats_dir / "feature_transform.json",
            "feature_code": feats_dir / "feature_code.py",
            "summary": feats_dir / "summary.json",
        },
        project=work,
    )
    transform = features.transform
    split = features.split
    timings["features_s"] = time.perf_counter() - t0

    # Train exactly TREES trees: the pipeline's parameter set, no validation set, no early stopping.
    t0 = time.perf_counter()
    train_params = TrainParams(num_boost_round=TREES, num_leaves=NUM_LEAVES, seed=seed, tracking="disabled")
    params = booster_params(train_params, schema.task_type)
    x_train = transform.transform(split.train)
    dtrain = lgb.Dataset(
        x_train,
        label=split.train[schema.target].to_numpy(float),
        feature_name=transform.feature_names,
        categorical_feature=transform.categorical_indices,
    )
    booster = lgb.train(params, dtrain, num_boost_round=TREES)
    model_file = work / "model" / "model.txt"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_file))
    booster = lgb.Booster(model_file=str(model_file))
    if booster.num_trees() != TREES:
        raise SystemExit(f"expected {TREES} trees, the model has {booster.num_trees()}")
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    test = split.test
    p = booster.predict(transform.transform(test))
    metrics = task_metrics(schema.task_type, test[schema.target].to_numpy(float), p)
    segments = segment_metrics(schema, test, p, EvaluateParams(tracking="disabled"))
    gate = decide(schema.task_type, metrics, None, None, 0.005)
    registry = Registry(work / "registry" / schema.dataset)
    version, _created, _promoted = register_model(
        registry=registry,
        project=REPO,
        schema=schema,
        model_file=model_file,
        transform_file=feats_dir / "feature_transform.json",
        ingest_summary={
            "source": f"simulate(rows={train_rows}, seed={seed})",
            "source_sha256": None,
            "fingerprint": fingerprint(raw),
            "rows_read": validation.n_rows,
            "rows_valid": len(validation.valid),
            "rows_quarantined": validation.n_quarantined,
        },
        split_summary=features.summary,
        train_summary={
            "trees_trained": TREES,
            "best_iteration": TREES,
            "train_rows": len(split.train),
        },
        metrics=metrics,
        segments=segments,
        gate=gate,
        params=params,
    )
    registry.verify(version.version)
    wheel = build_wheel(version, work / "dist")
    timings["register_and_package_s"] = time.perf_counter() - t0
    info = {
        "train_rows_simulated": train_rows,
        "train_rows": len(split.train),
        "trees": booster.num_trees(),
        "num_leaves": NUM_LEAVES,
        "features": transform.feature_names,
        "n_features": len(transform.feature_names),
        "derived_features": transform.derived,
        "test_roc_auc": metrics.get("roc_auc"),
        "registered_files": sorted(p.name for p in version.path.iterdir()),
        "wheel": wheel.name,
        "wheel_bytes": wheel.stat().st_size,
        "package": version.metadata["package"],
        "model_version": version.version,
        "booster_params": params,
        "timings": timings,
    }
    return wheel, info


def load_from_wheel(wheel: Path, package: str) -> Any:
    """What a user of the wheel does: the zip on sys.path, import, load()."""
    sys.path.insert(0, str(wheel))
    pkg = importlib.import_module(package)
    if not str(Path(pkg.__file__)).startswith(str(wheel)):
        raise SystemExit(f"{package} was imported from {pkg.__file__}, not from the wheel {wheel}")
    t0 = time.perf_counter()
    model = pkg.load()
    return model, time.perf_counter() - t0


# --------------------------------------------------------------------------- helpers


def pct(values_ns: list[int] | np.ndarray, q: float) -> float:
    """Percentile in milliseconds (linear interpolation)."""
    return float(np.percentile(np.asarray(values_ns, dtype=np.float64), q)) / 1e6


def latency_summary(values_ns: list[int], wall_s: float | None = None) -> dict[str, float]:
    arr = np.asarray(values_ns, dtype=np.float64)
    out = {
        "n": int(arr.size),
        "mean_ms": float(arr.mean()) / 1e6,
        "p50_ms": pct(arr, 50),
        "p90_ms": pct(arr, 90),
        "p99_ms": pct(arr, 99),
        "p99_9_ms": pct(arr, 99.9),
        "max_ms": float(arr.max()) / 1e6,
    }
    if wall_s is not None:
        out["requests_per_s"] = arr.size / wall_s
    return out


def json_record(row: pd.Series) -> dict[str, Any]:
    """A DataFrame row as the JSON object a client would send (NaN -> null, numpy -> Python)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            out[key] = None
        elif isinstance(value, np.integer):
            out[key] = int(value)
        elif isinstance(value, np.floating):
            out[key] = None if np.isnan(value) else float(value)
        else:
            out[key] = value
    return out


def time_calls(fn: Any, args_list: list[Any], n: int) -> list[int]:
    """Per-call latency (ns) of ``fn(args)`` cycling through ``args_list``; GC paused while timing."""
    out = [0] * n
    k = len(args_list)
    pc = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            a = args_list[i % k]
            t0 = pc()
            fn(a)
            out[i] = pc() - t0
    finally:
        gc.enable()
    return out


# --------------------------------------------------------------------------- batch


def bench_batch(m: Any, rows: int, reps: int, seed: int) -> dict[str, Any]:
    from nbops.data.simulate import simulate_history

    t0 = time.perf_counter()
    df, _ = simulate_history(rows=rows, seed=seed)
    log(f"batch: simulated {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    n_features = len(m.feature_transform.feature_names)

    # One untimed call each on a slice (warm-up, lazy initialisation), checking both paths agree.
    head = df.iloc[: min(rows, 50_000)]
    a, b = m.predict(head), m.booster.predict(m.transform(head))
    if not np.allclose(a, b, rtol=0, atol=1e-12):
        raise SystemExit("package and raw predictions differ")
    # The raw path is timed as a whole; its two steps are also read off the same run (the
    # transform and predict parts of the split), so the split costs only the extra validation runs.
    # CPU time (all threads of this process) is recorded too: other processes sharing the cores
    # stretch wall time, much less the CPU time the scoring itself needs.
    times: dict[str, list[float]] = {"package": [], "raw": []}
    cpu: dict[str, list[float]] = {"package": [], "raw": []}
    split: dict[str, list[float]] = {"validation": [], "transform": [], "predict": []}

    def raw_timed() -> None:
        c0 = time.process_time()
        t0 = time.perf_counter()
        x = m.transform(df)
        t1 = time.perf_counter()
        m.booster.predict(x)
        t2 = time.perf_counter()
        cpu["raw"].append(time.process_time() - c0)
        times["raw"].append(t2 - t0)
        split["transform"].append(t1 - t0)
        split["predict"].append(t2 - t1)

    def package_timed() -> None:
        c0 = time.process_time()
        t0 = time.perf_counter()
        m.predict(df)
        times["package"].append(time.perf_counter() - t0)
        cpu["package"].append(time.process_time() - c0)

    for rep in range(reps):
        for fn in (package_timed, raw_timed) if rep % 2 == 0 else (raw_timed, package_timed):
            gc.collect()
            fn()
        log(
            f"batch rep {rep + 1}/{reps}: package {times['package'][-1]:.2f} s (CPU {cpu['package'][-1]:.2f} s), "
            f"raw {times['raw'][-1]:.2f} s (CPU {cpu['raw'][-1]:.2f} s)"
        )
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        m.schema.check_frame(df)
        split["validation"].append(time.perf_counter() - t0)
    # Where the validation and transform time goes, column by column (one pass each).
    per_column = column_costs(m, df)
    med = {k: statistics.median(v) for k, v in times.items()}
    split_med = {k: statistics.median(v) for k, v in split.items()}
    total_split = sum(split_med.values())
    return {
        "rows": rows,
        "features": n_features,
        "reps": reps,
        "batch_threads": m._batch_threads,
        "seconds": times,
        "median_seconds": med,
        "rows_per_s": {k: rows / v for k, v in med.items()},
        "ratio_package_to_raw_throughput": med["raw"] / med["package"],
        "cpu_seconds": cpu,
        "median_cpu_seconds": {k: statistics.median(v) for k, v in cpu.items()},
        "ratio_package_to_raw_cpu": statistics.median(cpu["raw"]) / statistics.median(cpu["package"]),
        "split_median_seconds": split_med,
        "split_share": {k: v / total_split for k, v in split_med.items()},
        "split_seconds": split,
        "column_costs_ms": per_column,
    }


def column_costs(m: Any, df: pd.DataFrame) -> dict[str, Any]:
    """Validation and transform time per column kind (one pass), to locate hot spots."""
    from importlib import import_module

    schema_mod = import_module(type(m.schema).__module__)
    transform_mod = import_module(type(m.feature_transform).__module__)
    out: dict[str, Any] = {"validation": {}, "transform": {}}
    df = m.feature_transform.with_derived(df)  # derived columns are timed as columns too
    one = type(m.schema)
    for spec in m.schema.fields:
        sub = one(fields=[spec])
        t0 = time.perf_counter()
        sub.check_frame(df[[spec.name]])
        out["validation"][spec.name] = {"kind": spec.kind, "ms": (time.perf_counter() - t0) * 1e3}
    ft = m.feature_transform
    for name in ft.feature_names:
        col = df[name]
        t0 = time.perf_counter()
        if name in ft.categorical:
            codes = ft._index[name].get_indexer(transform_mod.level_strings(col).astype(object))
            np.where(codes < 0, np.nan, codes)
            kind = "categorical"
        else:
            pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            kind = "numeric"
        out["transform"][name] = {
            "kind": kind,
            "dtype": str(col.dtype),
            "ms": (time.perf_counter() - t0) * 1e3,
        }
    # The categorical step in pieces, on one column: text conversion vs lookup.
    cat = next(iter(ft.categorical), None)
    if cat is not None:
        col = df[cat]
        t0 = time.perf_counter()
        text = transform_mod.level_strings(col)
        t1 = time.perf_counter()
        obj = text.astype(object)
        t2 = time.perf_counter()
        ft._index[cat].get_indexer(obj)
        t3 = time.perf_counter()
        ft._index[cat].get_indexer(col)  # the same lookup straight on the column as read
        t4 = time.perf_counter()
        out["categorical_detail"] = {
            "column": cat,
            "dtype": str(col.dtype),
            "level_strings_ms": (t1 - t0) * 1e3,
            "astype_object_ms": (t2 - t1) * 1e3,
            "get_indexer_ms": (t3 - t2) * 1e3,
            "get_indexer_on_column_as_read_ms": (t4 - t3) * 1e3,
        }
    del schema_mod
    return out


# --------------------------------------------------------------------------- in process, one record


def runtime_module(m: Any, name: str) -> Any:
    """A module of the runtime the model was loaded with (the wheel's copy, not src/)."""
    return importlib.import_module(type(m).__module__.rsplit(".", 1)[0] + "." + name)


async def asgi_call(app: Any, body: bytes, path: str = "/predict") -> tuple[int, bytes]:
    """One POST through an ASGI app, in process: no HTTP server, socket or client."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    state: dict[str, Any] = {"sent": False, "status": 0, "body": b""}
    never = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        if not state["sent"]:
            state["sent"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never  # the client never disconnects; a listener for it is cancelled at the end
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body":
            state["body"] += message.get("body", b"")

    try:
        await app(scope, receive, send)
    finally:
        never.cancel()
    return state["status"], state["body"]


def bench_asgi(m: Any, records: list[dict[str, Any]], expected: list[float], n: int) -> dict[str, Any]:
    """The /predict request through each ASGI app in process, the apps taking turns in blocks.

    REST latency minus this is what the HTTP server, the loopback and the client cost; the
    differences between the apps are what the framework and the model add, without the noise of a
    second process.
    """
    import asyncio

    floors = floor_module()
    apps = {
        "model": runtime_module(m, "serve").create_app(m, token="", log_dir=None),
        "floor": floors["fastapi_app"](),
        "asgi_floor": floors["asgi_app"],
    }
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    out: dict[str, Any] = {}

    async def run_all() -> None:
        for name, app in list(apps.items()):
            for i in range(min(20, len(bodies))):
                status, data = await asgi_call(app, bodies[i])
                got = None
                if status == 200 and name == "model":
                    got = json.loads(data)["predictions"][0]
                if status != 200 or (name == "model" and abs(got - expected[i]) > 1e-12):
                    out[f"{name}_error"] = f"answered {status}: {data[:200].decode(errors='replace')}"
                    del apps[name]
                    break
        lat: dict[str, list[int]] = {name: [] for name in apps}
        pc = time.perf_counter_ns
        blocks = 10
        per = max(1, n // blocks)
        order = list(apps)
        gc.collect()
        gc.disable()
        try:
            for app in apps.values():  # warm-up
                for i in range(min(200, n)):
                    await asgi_call(app, bodies[i % len(bodies)])
            for b in range(blocks):
                for name in order if b % 2 == 0 else order[::-1]:
                    app = apps[name]
                    for i in range(per):
                        t0 = pc()
                        await asgi_call(app, bodies[i % len(bodies)])
                        lat[name].append(pc() - t0)
        finally:
            gc.enable()
        for name, values in lat.items():
            out[name] = latency_summary(values)

    out["calls"] = max(1, n // 10) * 10
    out["model_app_type"] = type(apps["model"]).__name__
    asyncio.run(run_all())
    return out


def bench_in_process(m: Any, records: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    """Per-call latency of the single-record paths, and of each piece of the serving handler."""
    df = pd.DataFrame(records)
    rows_np = [m.transform(df.iloc[[i]]) for i in range(len(records))]
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    parsed = [json.loads(b) for b in bodies]
    wrapped = [[r] for r in records]
    x_rows = [m.feature_transform.transform_records(w) for w in wrapped]
    for a, b in zip(rows_np, x_rows, strict=True):
        if not np.array_equal(a, b, equal_nan=True):
            raise SystemExit("transform_records and transform disagree")
    scores = [m.predict_records(w).tolist() for w in wrapped]
    booster = m.booster
    for a, s in zip(rows_np, scores, strict=True):
        if abs(booster.predict(a, num_threads=1)[0] - s[0]) > 1e-12:
            raise SystemExit("predict_records and booster.predict disagree")
    serve_mod = runtime_module(m, "serve")
    metrics = runtime_module(m, "metrics").Metrics(m.version)

    cases: dict[str, tuple[Any, list[Any]]] = {
        "m.predict_records([record])": (lambda w: m.predict_records(w), wrapped),
        "m.booster.predict(row, num_threads=1)": (
            lambda a: booster.predict(a, num_threads=1),
            rows_np,
        ),
    }
    # The runtime's single-row predictor if it has one, else the same C API as a reference.
    row_predictor = getattr(m, "_row_predictor", None)
    fast = None
    if row_predictor is not None:
        label = "runtime single-row predictor (LightGBM SingleRowFast C API)"
        cases[label] = (row_predictor.predict, [r[0] for r in rows_np])
    else:
        fast = SingleRowFast(booster, len(m.feature_transform.feature_names))
        label = "LightGBM SingleRowFast C API (bench reference; the runtime does not use it)"
        cases[label] = (fast.predict, rows_np)
    for a, s in zip(rows_np, scores, strict=True):
        if abs(cases[label][0](a[0] if row_predictor is not None else a) - s[0]) > 1e-12:
            raise SystemExit("the single-row fast predictor disagrees with booster.predict")
    # The whole serving handler without its ASGI I/O, when the app exposes it (ScoringApp.score).
    app = serve_mod.create_app(m, token="", log_dir=None)
    score = getattr(app, "score", None)
    if callable(score) and score(bodies[0])[0] == 200:  # the token is checked before, from the headers
        cases["serving handler `app.score(body)` (parse, validate, encode, predict, serialise)"] = (
            lambda b: score(b),
            bodies,
        )
    cases.update(
        {
            "piece: json.loads(body)": (json.loads, bodies),
            "piece: schema.check_records": (
                lambda b: m.schema.check_records(b["records"]),
                parsed,
            ),
            "piece: transform_records": (m.feature_transform.transform_records, wrapped),
            "piece: tolist + isfinite + json.dumps": (
                lambda s: (
                    json.dumps({"model_version": m.version, "predictions": s})
                    if all(math.isfinite(v) for v in s)
                    else None
                ),
                scores,
            ),
            "piece: metrics.observe": (
                lambda s: metrics.observe("/predict", 200, 0.0004, s, 0),
                scores,
            ),
        }
    )
    out: dict[str, Any] = {"calls": calls, "piece_calls": max(2000, calls // 4), "cases": {}}
    for name, (fn, args) in cases.items():
        n = calls if not name.startswith("piece") else out["piece_calls"]
        time_calls(fn, args, min(n, 500))  # warm-up
        out["cases"][name] = latency_summary(time_calls(fn, args, n))
    if fast is not None:
        fast.close()
    return out


class SingleRowFast:
    """LGBM_BoosterPredictForMatSingleRowFast via ctypes (one FastConfig, reused). Reference only."""

    def __init__(self, booster: Any, n_features: int) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._lib, self._safe_call, self._ct = _LIB, _safe_call, ctypes
        self.handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(n_features),
                _c_str("num_threads=1"),
                ctypes.byref(self.handle),
            )
        )
        self.out_len = ctypes.c_int64(0)
        self.result = np.empty(1, dtype=np.float64)
        self.result_ptr = self.result.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    def predict(self, row: np.ndarray) -> float:
        row = np.ascontiguousarray(row, dtype=np.float64)
        self._safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self.handle,
                row.ctypes.data_as(self._ct.c_void_p),
                self._ct.byref(self.out_len),
                self.result_ptr,
            )
        )
        return float(self.result[0])

    def close(self) -> None:
        self._safe_call(self._lib.LGBM_FastConfigFree(self.handle))


# --------------------------------------------------------------------------- REST

FLOOR_APP = '''
"""The floors: what a server answering this request pays before any model work.

    python floor_app.py PORT fastapi|asgi

fastapi: a minimal FastAPI app, one POST endpoint that reads the body and returns a constant JSON.
asgi:    the same answer from a plain ASGI callable (no framework): the HTTP server's own cost.
Served like the wheel's serve(): one uvicorn worker, httptools and uvloop when installed.
"""
import importlib.util
import sys

from fastapi import FastAPI, Request
from fastapi.responses import Response

BODY = b'{"model_version":"v0001","predictions":[0.1]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(BODY, media_type="application/json")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = scope["method"] == "POST"
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    app = fastapi_app() if sys.argv[2] == "fastapi" else asgi_app
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http=http, \
loop=loop)
'''


def floor_module() -> dict[str, Any]:
    """FLOOR_APP as a module namespace (compiled without this file's `from __future__` flags)."""
    namespace: dict[str, Any] = {"__name__": "nbops_bench_floor_app"}
    exec(compile(FLOOR_APP, "floor_app.py", "exec", dont_inherit=True), namespace)
    return namespace


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_scores(port: int, bodies: list[bytes], expected: list[float], n: int = 20) -> dict[str, Any]:
    """POST the first ``n`` bodies; ok when every answer is 200 with the in-process score."""
    client = Client(port)
    try:
        for i in range(min(n, len(bodies))):
            status, data = client.post(bodies[i])
            try:
                got = json.loads(data)["predictions"][0] if status == 200 else None
            except (ValueError, KeyError, IndexError, TypeError):
                got = None
            if status != 200 or got is None or abs(got - expected[i]) > 1e-12:
                return {
                    "ok": False,
                    "status": status,
                    "detail": f"POST /predict answered {status}: {data[:300].decode(errors='replace')}",
                    "expected": expected[i],
                }
        return {
            "ok": True,
            "status": 200,
            "detail": f"{min(n, len(bodies))} records scored, identical to in-process predict_records",
        }
    finally:
        client.close()


class Server:
    """A server subprocess on 127.0.0.1; started, waited for, terminated."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], log_file: Path) -> None:
        self.name, self.cmd, self.port = name, cmd, port
        self.log_file = log_file
        self.fh = log_file.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.fh, stderr=subprocess.STDOUT, cwd=log_file.parent)
        try:
            self.started_s = self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 90.0) -> float:
        t0 = time.perf_counter()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"{self.name} server exited ({self.proc.returncode}):\n{self.log_file.read_text()[-3000:]}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(
            f"{self.name} server did not answer /health within {timeout:.0f} s:\n{self.log_file.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.fh.close()


class Client:
    """One keep-alive HTTP/1.1 connection; requests sent one after the other."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Content-Type": "application/json"}

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", "/predict", body=body, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def run(self, bodies: list[bytes], n: int) -> tuple[list[int], float]:
        """Latencies (ns) of ``n`` requests cycling through ``bodies``, and the wall time."""
        out = [0] * n
        k = len(bodies)
        pc = time.perf_counter_ns
        post = self.post
        gc.collect()
        gc.disable()  # the client is the instrument: keep its own GC pauses out of the numbers
        try:
            start = pc()
            for i in range(n):
                t0 = pc()
                status, _ = post(bodies[i % k])
                out[i] = pc() - t0
                if status != 200:
                    raise SystemExit(f"request {i} answered {status}")
            wall = (pc() - start) / 1e9
        finally:
            gc.enable()
        return out, wall

    def close(self) -> None:
        self.conn.close()


def bench_rest(
    wheel: Path,
    package: str,
    records: list[dict[str, Any]],
    n: int,
    warmup: int,
    blocks: int,
    work: Path,
    expected: list[float],
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(wheel), "PYTHONUNBUFFERED": "1"}
    for key in ("NBOPS_API_TOKEN", "NBOPS_PREDICTION_LOG", "NBOPS_MAX_RECORDS"):
        env.pop(key, None)
    floor_file = work / "floor_app.py"
    floor_file.write_text(FLOOR_APP)
    floor_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    servers: dict[str, Server] = {}
    try:
        port = free_port()
        servers["model"] = Server(
            "model",
            [sys.executable, "-m", package, "serve", "--host", "127.0.0.1", "--port", str(port)],
            port,
            env,
            work / "server-model.log",
        )
        # Correctness first: the server's scores must be the in-process scores. A server that
        # does not score is reported (and the run fails at the end); its latency is not timed.
        shipped = check_scores(servers["model"].port, bodies, expected)
        if not shipped["ok"]:
            log(f"rest: the model server's /predict FAILS: {shipped['detail']}")
            servers.pop("model").stop()
        for name in ("floor", "asgi_floor"):
            port = free_port()
            servers[name] = Server(
                name,
                [
                    sys.executable,
                    str(floor_file),
                    str(port),
                    "fastapi" if name == "floor" else "asgi",
                ],
                port,
                floor_env,
                work / f"server-{name}.log",
            )
        log("rest: servers up (" + ", ".join(f"{k} {s.started_s:.1f} s" for k, s in servers.items()) + ")")
        # Warm-up: `warmup` untimed requests per server. Then the servers take turns in blocks
        # (A B C, C B A, ...) so that all of them see the same machine state. Each block runs on
        # one keep-alive connection, opened for the block and primed with a few untimed requests:
        # uvicorn closes a connection idle for 5 s, which a waiting server's connection can be.
        for server in servers.values():
            client = Client(server.port)
            client.run(bodies, warmup)
            client.close()
        lat: dict[str, list[int]] = {name: [] for name in servers}
        wall: dict[str, float] = {name: 0.0 for name in servers}
        per_block = max(1, n // blocks)
        order = list(servers)
        for b in range(blocks):
            for name in order if b % 2 == 0 else order[::-1]:
                count = per_block if b < blocks - 1 else n - per_block * (blocks - 1)
                client = Client(servers[name].port)
                client.run(bodies, BLOCK_PRIMING)
                values, seconds = client.run(bodies, count)
                client.close()
                lat[name] += values
                wall[name] += seconds
        for name, server in servers.items():
            if server.proc.poll() is not None:
                raise SystemExit(f"the {name} server exited during the run:\n{server.log_file.read_text()[-3000:]}")
        out: dict[str, Any] = {
            "requests": n,
            "warmup": warmup,
            "blocks": blocks,
            "distinct_records": len(bodies),
            "block_priming_requests": BLOCK_PRIMING,
            "client": "http.client, sequential requests, one keep-alive connection per block "
            "(TCP_NODELAY), GC paused in the client while timing",
            "server_commands": {name: " ".join(shlex.quote(c) for c in s.cmd) for name, s in servers.items()},
            "model_server_check": shipped,
        }
        for name in servers:
            out[name] = latency_summary(lat[name], wall[name])
        if "model" in out:
            for floor in ("floor", "asgi_floor"):
                for q in ("p50", "p99"):
                    out[f"model_minus_{floor}_{q}_ms"] = out["model"][f"{q}_ms"] - out[floor][f"{q}_ms"]
        return out
    finally:
        for s in servers.values():
            s.stop()


# --------------------------------------------------------------------------- report


def ok(value: float, goal: float, higher_is_better: bool) -> str:
    met = value >= goal if higher_is_better else value <= goal
    return "met" if met else "**missed**"


def markdown(r: dict[str, Any]) -> str:
    s, b, rest, ip = r["setup"], r["batch"], r["rest"], r["in_process"]
    g = GOALS
    derived = s.get("derived_features") or {}
    lines = [
        f"# Scoring benchmark{' with one derived feature' if len(derived) == 1 else ''} "
        f"({r['machine']['cpus']} cores, Python {r['machine']['python']}, LightGBM {r['machine']['lightgbm']})",
        "",
        f"Model: LightGBM, {s['trees']} trees, {s['num_leaves']} leaves, {s['n_features']} features, trained on "
        f"{s['train_rows']:,} simulated rows "
        f"(test ROC AUC {s['test_roc_auc']:.3f}); registered as {s['model_version']}, packaged as `{s['wheel']}` and "
        "loaded from the wheel "
        f"(`sys.path.insert(0, wheel); import {s['package']}; {s['package']}.load()`, {s['load_s'] * 1e3:.0f} ms).",
        "",
    ]
    if derived:
        lines += [
            "Derived features (the project's feature code, computed by the wheel from each raw record; a client "
            "sends raw fields only): "
            + ", ".join(f"`{name}` ({kind})" for name, kind in derived.items())
            + ". The feature module:",
            "",
            "```python",
            FEATURE_CODE.rstrip(),
            "```",
            "",
        ]
    lines += [
        f"## Batch: {b['rows']:,} rows × {b['features']} features (median of {b['reps']}, alternating)",
        "",
        "| path | seconds (wall) | rows/s | CPU seconds | goal |",
        "|---|---:|---:|---:|---|",
        f"| package `m.predict(df)` (validation + transform + predict) | {b['median_seconds']['package']:.2f} | "
        f"{b['rows_per_s']['package']:,.0f} | {b['median_cpu_seconds']['package']:.2f} | |",
        f"| raw `m.booster.predict(m.transform(df))` | {b['median_seconds']['raw']:.2f} | "
        f"{b['rows_per_s']['raw']:,.0f} | {b['median_cpu_seconds']['raw']:.2f} | |",
        f"| package / raw throughput | {b['ratio_package_to_raw_throughput']:.2f} | | "
        f"{b['ratio_package_to_raw_cpu']:.2f} (by CPU time) | >= {g['batch_ratio']} "
        f"({ok(b['ratio_package_to_raw_throughput'], g['batch_ratio'], True)}) |",
        "",
        "All runs (s): "
        + "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in b["seconds"][k]) for k in ("package", "raw"))
        + ".",
        "",
        "| package path, part | seconds | share |",
        "|---|---:|---:|",
    ]
    part_calls = {"validation": "m.schema.check_frame", "transform": "m.transform", "predict": "m.booster.predict"}
    for k in ("validation", "transform", "predict"):
        lines.append(f"| {k} (`{part_calls[k]}`) | {b['split_median_seconds'][k]:.2f} | {b['split_share'][k]:.0%} |")
    lines += [
        "",
        f"## REST, one record per request ({rest['requests']:,} sequential requests per server after {rest['warmup']} "
        "warm-up, one uvicorn worker each)",
        "",
    ]
    check = rest["model_server_check"]
    if not check["ok"]:
        lines += [
            f"**The model server does not score: `python -m {s['package']} serve` answered a valid `POST /predict` "
            "with "
            f"{check['status']}** (`{check['detail'][:200]}`). Its latency was not measured; the run exits with status "
            "1.",
            "",
        ]
    mach = r["machine"]
    lines += [
        f"Client: {rest['client']}; the servers take turns in {rest['blocks']} blocks. "
        f"uvicorn {mach['uvicorn']}, httptools {'installed' if mach['httptools_installed'] else 'not installed'}, "
        f"uvloop {'installed' if mach['uvloop_installed'] else 'not installed'}.",
        "",
        "| server | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "model": f"model wheel `python -m {s['package']} serve`",
        "floor": "FastAPI floor (reads the body, returns a constant JSON)",
        "asgi_floor": "plain ASGI floor (same answer, no framework)",
    }
    for name in ("model", "floor", "asgi_floor"):
        if name in rest:
            x = rest[name]
            lines.append(
                f"| {labels[name]} | {x['p50_ms']:.3f} | {x['p90_ms']:.3f} | {x['p99_ms']:.3f} | {x['p99_9_ms']:.3f} | "
                f"{x['max_ms']:.2f} | {x['requests_per_s']:,.0f} |"
            )
    if "model" in rest:
        m = rest["model"]
        lines += [
            "",
            "| model server | measured | goal | |",
            "|---|---:|---:|---|",
            f"| p50 latency | {m['p50_ms']:.3f} ms | <= {g['rest_p50_ms']} ms | "
            f"{ok(m['p50_ms'], g['rest_p50_ms'], False)} |",
            f"| p99 latency | {m['p99_ms']:.3f} ms | <= {g['rest_p99_ms']} ms | "
            f"{ok(m['p99_ms'], g['rest_p99_ms'], False)} |",
            f"| throughput (one connection, sequential) | {m['requests_per_s']:,.0f} req/s | >= {g['rest_rps']:,.0f} "
            f"req/s | {ok(m['requests_per_s'], g['rest_rps'], True)} |",
            f"| above the FastAPI floor (p50 / p99) | {rest['model_minus_floor_p50_ms']:+.3f} / "
            f"{rest['model_minus_floor_p99_ms']:+.3f} ms | | |",
            f"| above the plain ASGI floor (p50 / p99) | {rest['model_minus_asgi_floor_p50_ms']:+.3f} / "
            f"{rest['model_minus_asgi_floor_p99_ms']:+.3f} ms | | |",
        ]
    a = r["asgi"]
    lines += [
        "",
        f"### The same request through each ASGI app in process ({a['calls']:,} calls each: no HTTP server, socket or "
        "client)",
        "",
        "| app | p50 ms | p99 ms | REST p50 − in-process p50 (HTTP server + loopback + client) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("model", "floor", "asgi_floor"):
        if name in a:
            x = a[name]
            gap = f"{rest[name]['p50_ms'] - x['p50_ms']:.3f}" if name in rest else "n/a"
            lines.append(
                f"| {labels[name]} (`{a['model_app_type']}`) | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | {gap} |"
                if name == "model"
                else f"| {labels[name]} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | {gap} |"
            )
        elif f"{name}_error" in a:
            lines.append(f"| {labels[name]} | fails: {a[name + '_error'][:80]} | | |")
    lines += [
        "",
        f"## In process, one record ({ip['calls']:,} calls per row; the pieces {ip['piece_calls']:,} calls)",
        "",
        "| call | p50 µs | p99 µs |",
        "|---|---:|---:|",
    ]
    for name, x in ip["cases"].items():
        lines.append(f"| {name} | {x['p50_ms'] * 1e3:.1f} | {x['p99_ms'] * 1e3:.1f} |")
    la = r["load_average"]
    lines += [
        "",
        f"Measured {r['measured_at']} with `{r['command']}` ({r['total_seconds']:.0f} s). "
        f"1-minute load average at start / before batch / before REST / end: "
        + " / ".join(f"{la[k][0]:.1f}" for k in ("start", "before_batch", "before_rest", "end") if k in la)
        + f" on {r['machine']['cpus']} cores (other processes share them).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the batch test (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=5_000, help="timed REST requests per server (default 5,000)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="untimed REST requests per server first (default 200)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=20_000,
        help="in-process single-record calls per case (default 20,000)",
    )
    parser.add_argument("--reps", type=int, default=3, help="batch repetitions per path (default 3)")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=100_000,
        help="simulated history rows for training (default 100,000)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument(
        "--derived",
        action="store_true",
        help="the model has one derived feature (loan_to_income, from a feature module); results go to "
        "scoring_derived.json and scoring_derived.md",
    )
    args = parser.parse_args()
    if min(args.rows, args.requests, args.calls, args.reps, args.train_rows) < 1 or args.train_rows < 1000:
        parser.error("--rows, --requests, --calls, --reps must be >= 1 and --train-rows >= 1000")
    import lightgbm as lgb

    command = "python bench/bench_scoring.py" + "".join(f" {a}" for a in sys.argv[1:])
    started = time.perf_counter()
    result: dict[str, Any] = {
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": command,
        "goals": GOALS,
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "lightgbm": lgb.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "fastapi": _version("fastapi"),
            "uvicorn": _version("uvicorn"),
            "uvloop_installed": importlib.util.find_spec("uvloop") is not None,
            "httptools_installed": importlib.util.find_spec("httptools") is not None,
        },
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        # Other processes share the cores; the load average says how quiet the machine was.
        "load_average": {"start": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="nbops-bench-scoring-") as tmp:
        work = Path(tmp)
        log(f"setup: simulating {args.train_rows:,} rows, training {TREES} trees, registering, packaging")
        wheel, setup = build_model_wheel(
            work, args.train_rows, args.seed, feature_code=FEATURE_CODE if args.derived else None
        )
        m, load_s = load_from_wheel(wheel, setup["package"])
        setup["load_s"] = load_s
        setup["runtime_module"] = type(m).__module__
        result["setup"] = setup
        log(
            f"setup: {setup['wheel']} ({setup['wheel_bytes']:,} bytes) in {sum(setup['timings'].values()):.1f} s; "
            f"load() {load_s * 1e3:.0f} ms"
        )

        result["load_average"]["before_batch"] = os.getloadavg()
        result["batch"] = bench_batch(m, args.rows, args.reps, seed=args.seed + 1)

        from nbops.data.simulate import simulate_history

        sample, _ = simulate_history(rows=1000, seed=args.seed + 2)
        names = m.schema.names + [c for c in m.schema.passthrough if c in sample.columns]
        records = [json_record(row) for _, row in sample[names].iterrows()]
        m.schema.check_records(records)
        expected = [float(m.predict_records([r])[0]) for r in records]
        log("in-process single-record calls")
        result["in_process"] = bench_in_process(m, records, args.calls)
        log("in-process ASGI calls")
        result["asgi"] = bench_asgi(m, records, expected, args.requests)
        result["load_average"]["before_rest"] = os.getloadavg()
        log("rest: starting servers")
        result["rest"] = bench_rest(
            wheel,
            setup["package"],
            records,
            args.requests,
            args.warmup,
            blocks=10 if args.requests >= 1000 else 2,
            work=work,
            expected=expected,
        )
    result["load_average"]["end"] = os.getloadavg()
    result["total_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    name = "scoring_derived" if args.derived else "scoring"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (args.out / f"{name}.md").write_text(md)
    print(md)
    log(f"total {result['total_seconds']:.0f} s; wrote {args.out / f'{name}.json'} and {args.out / f'{name}.md'}")
    if not result["rest"]["model_server_check"]["ok"]:
        log(f"FAILED: the model server does not score ({result['rest']['model_server_check']['detail'][:200]})")
        return 1
    return 0


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


if __name__ == "__main__":
    sys.exit(main())
