"""Benchmark: REST throughput at concurrency 32 with a compiled load generator (wrk), the wheel's service
beside a plain FastAPI app over the same booster. Writes bench/results/throughput.json and throughput.md.

    python bench/bench_throughput.py [--seconds 10] [--rounds 3] [--connections 32] [--wrk-threads 1]

A Python client saturates before these servers do (about 350 requests/s at concurrency 32 for a
constant answer), so the load comes from wrk (Debian's ``wrk``; ``make browser`` installs it): one
wrk thread, ``--connections`` keep-alive connections, each POSTing one record per request, cycling
through 1,000 distinct records of the simulated data.

1. Setup (as bench/bench_scoring.py): simulate, fit the transform, train 500 trees, register, build
   the wheel; the expected score of every record is computed in process from the wheel.
2. Servers, each one uvicorn worker on 127.0.0.1 with httptools and uvloop when installed:
   - ``model``: the wheel's own service, ``python -m <package> serve``;
   - ``plain`` and ``plain_async``: a plain FastAPI app over the same booster (:data:`PLAIN_APP`): a
     pydantic body, the wheel's own record encoder (``transform_records``), ``booster.predict(x,
     num_threads=1)``; its endpoint a ``def`` (FastAPI runs it on its thread pool, the usual advice for
     blocking work) or an ``async def`` (on the event loop: no thread hop, faster here);
   - ``asgi_floor``: a plain ASGI callable that reads the body and returns a constant (what the HTTP
     server alone allows).
   Every server's answers are first checked against the in-process scores (the floor aside).
3. ``--rounds`` rounds; in each, every server gets ``--warmup`` seconds of untimed load, then
   ``--seconds`` of measured load, the servers taking turns (A B C, C B A, ...) so that all see the
   same machine state. Per run: requests/s, wrk's latency distribution (p50, p90, p99, max), errors
   (socket errors and HTTP statuses above 399), and the CPU seconds the server process used (its
   requests per CPU second are less sensitive than wall time to other processes sharing the cores).
   The reported figures are the medians over rounds.

Goal (issue 15): the model service at least 3x the plain app's throughput, p99 under 5 ms, zero errors.
The ratio is taken against the faster of the two plain variants.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scoring  # noqa: E402  (the shared setup: model, wheel, servers)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GOALS = {"throughput_ratio": 3.0, "p99_ms": 5.0, "errors": 0}

PLAIN_APP = '''
"""A plain FastAPI app over the wheel's booster: what a user would write without the wheel's service.

    python plain_app.py PORT PACKAGE sync|async        (the wheel on PYTHONPATH)

POST /predict {"records": [...]} -> {"model_version": ..., "predictions": [...]}: a pydantic body, the
records encoded into the feature matrix by the wheel's own encoder (transform_records: no DataFrame,
the same codes, so the scores are the model's), then booster.predict on one thread. No validation
beyond pydantic's. One uvicorn worker, httptools and uvloop when installed, as the wheel's service.
It is given its best chance: a one-row DataFrame through the wheel's m.transform costs milliseconds.
"""
import importlib
import importlib.util
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

model = importlib.import_module(sys.argv[2]).load()
booster = model.booster
app = FastAPI()


class Records(BaseModel):
    records: list[dict[str, Any]]


def predict(body: Records) -> dict[str, Any]:
    x = model.feature_transform.transform_records(body.records)
    return {"model_version": model.version, "predictions": booster.predict(x, num_threads=1).tolist()}


async def predict_async(body: Records) -> dict[str, Any]:
    return predict(body)


app.post("/predict")(predict if sys.argv[3] == "sync" else predict_async)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http=http,
                loop=loop)
'''

# wrk's script: pre-built POST requests (one per body line of the file given after --), cycled; the
# summary printed as one JSON line for this benchmark to read.
WRK_SCRIPT = """
local requests = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    requests[n] = wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, line)
  end
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'NBOPS_WRK {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p99_9": %d, "max": %d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""

LABELS = {
    "model": "the wheel's service `python -m {package} serve`",
    "plain": "plain FastAPI app over the same booster, `def` endpoint (pydantic, the wheel's encoder, booster.predict)",
    "plain_async": "the same plain FastAPI app, `async def` endpoint",
    "asgi_floor": "plain ASGI app returning a constant (the HTTP server's ceiling)",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, port: int, script: Path, bodies: Path, seconds: float, connections: int, threads: int) -> dict:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/predict",
        "--",
        str(bodies),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NBOPS_WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(line.split(" ", 1)[1])
    out["command"] = shlex.join(cmd)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of requests/s, the latency percentiles (ms) and requests per CPU second."""

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    return {
        "requests_per_s": med([r["requests_per_s"] for r in runs]),
        "p50_ms": med([r["latency_us"]["p50"] / 1e3 for r in runs]),
        "p90_ms": med([r["latency_us"]["p90"] / 1e3 for r in runs]),
        "p99_ms": med([r["latency_us"]["p99"] / 1e3 for r in runs]),
        "p99_worst_ms": max(r["latency_us"]["p99"] / 1e3 for r in runs),
        "max_ms": max(r["latency_us"]["max"] / 1e3 for r in runs),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "requests_per_cpu_s": med([r["requests_per_cpu_s"] for r in runs]),
        "server_cpu_share": med([r["server_cpu_share"] for r in runs]),
    }


def bench(args: argparse.Namespace, wrk: str, work: Path) -> dict[str, Any]:
    if args.wheel is not None:  # a wheel built before (by --save-wheel): no training
        wheel = args.wheel.resolve()
        package = wheel.name.split("-", 1)[0]
        m, _ = bench_scoring.load_from_wheel(wheel, package)
        setup = {"wheel": wheel.name, "package": package, "trees": m.booster.num_trees()}
        setup["n_features"] = len(m.feature_transform.feature_names)
    else:
        log(f"setup: simulating {args.train_rows:,} rows, training {bench_scoring.TREES} trees, registering, packaging")
        wheel, setup = bench_scoring.build_model_wheel(work, args.train_rows, args.seed)
        if args.save_wheel is not None:
            args.save_wheel.mkdir(parents=True, exist_ok=True)
            shutil.copy2(wheel, args.save_wheel / wheel.name)
        m, _ = bench_scoring.load_from_wheel(wheel, setup["package"])
    from nbops.data.simulate import simulate_history

    sample, _ = simulate_history(rows=1000, seed=args.seed + 2)
    records = [bench_scoring.json_record(row) for _, row in sample[m.schema.names].iterrows()]
    expected = [float(m.predict_records([r])[0]) for r in records]
    bodies = [json.dumps({"records": [r]}) for r in records]
    body_file = work / "bodies.jsonl"
    body_file.write_text("\n".join(bodies) + "\n")
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    (work / "plain_app.py").write_text(PLAIN_APP)
    (work / "floor_app.py").write_text(bench_scoring.FLOOR_APP)

    env = {k: v for k, v in os.environ.items() if not k.startswith("NBOPS_")}
    env.update({"PYTHONPATH": str(wheel), "PYTHONUNBUFFERED": "1"})
    commands = {
        "model": [sys.executable, "-m", setup["package"], "serve", "--host", "127.0.0.1", "--port", "{port}"],
        "plain": [sys.executable, str(work / "plain_app.py"), "{port}", setup["package"], "sync"],
        "plain_async": [sys.executable, str(work / "plain_app.py"), "{port}", setup["package"], "async"],
        "asgi_floor": [sys.executable, str(work / "floor_app.py"), "{port}", "asgi"],
    }
    servers: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    try:
        for name, template in commands.items():
            port = bench_scoring.free_port()
            cmd = [c.replace("{port}", str(port)) for c in template]
            servers[name] = bench_scoring.Server(name, cmd, port, env, work / f"server-{name}.log")
            if name != "asgi_floor":
                checks[name] = bench_scoring.check_scores(port, [b.encode() for b in bodies], expected, n=50)
                if not checks[name]["ok"]:
                    raise SystemExit(f"the {name} server does not score correctly: {checks[name]['detail']}")
        log("servers up and scoring correctly: " + ", ".join(f"{k} ({s.started_s:.1f} s)" for k, s in servers.items()))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        order = list(servers)
        load: list[tuple[float, float, float]] = [os.getloadavg()]
        for rnd in range(args.rounds):
            for name in order if rnd % 2 == 0 else order[::-1]:
                server = servers[name]
                run_wrk(wrk, server.port, script, body_file, args.warmup, args.connections, args.wrk_threads)
                cpu0 = cpu_seconds(server.proc.pid)
                result = run_wrk(wrk, server.port, script, body_file, args.seconds, args.connections, args.wrk_threads)
                cpu = cpu_seconds(server.proc.pid) - cpu0
                seconds = result["duration_us"] / 1e6
                result["requests_per_s"] = result["requests"] / seconds
                result["server_cpu_s"] = cpu
                result["server_cpu_share"] = cpu / seconds
                result["requests_per_cpu_s"] = result["requests"] / cpu if cpu > 0 else float("nan")
                result["load_average"] = os.getloadavg()
                runs[name].append(result)
                log(
                    f"round {rnd + 1}/{args.rounds} {name}: {result['requests_per_s']:,.0f} req/s, "
                    f"p50 {result['latency_us']['p50'] / 1e3:.2f} ms, p99 {result['latency_us']['p99'] / 1e3:.2f} ms, "
                    f"errors {sum(result['errors'].values())}, server CPU {result['server_cpu_share']:.0%}"
                )
            load.append(os.getloadavg())
        for name, server in servers.items():
            if server.proc.poll() is not None:
                raise SystemExit(f"the {name} server exited during the run:\n{server.log_file.read_text()[-3000:]}")
    finally:
        for server in servers.values():
            server.stop()
    summary = {name: summarise(r) for name, r in runs.items()}
    plain = max(("plain", "plain_async"), key=lambda k: summary[k]["requests_per_s"])
    plain_cpu = max(("plain", "plain_async"), key=lambda k: summary[k]["requests_per_cpu_s"])
    return {
        "setup": setup,
        "checks": checks,
        "server_commands": {name: shlex.join(s.cmd) for name, s in servers.items()},
        "runs": runs,
        "summary": summary,
        "faster_plain": plain,
        "ratio_model_to_plain_throughput": summary["model"]["requests_per_s"] / summary[plain]["requests_per_s"],
        "ratio_model_to_each_plain_throughput": {
            k: summary["model"]["requests_per_s"] / summary[k]["requests_per_s"] for k in ("plain", "plain_async")
        },
        "faster_plain_per_cpu_s": plain_cpu,
        "ratio_model_to_plain_per_cpu_s": summary["model"]["requests_per_cpu_s"]
        / summary[plain_cpu]["requests_per_cpu_s"],
        "ratio_model_to_floor_throughput": summary["model"]["requests_per_s"] / summary["asgi_floor"]["requests_per_s"],
        "load_average_per_round": load,
    }


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def markdown(r: dict[str, Any]) -> str:
    s, mach, summ, g = r["setup"], r["machine"], r["summary"], GOALS
    labels = {k: v.format(package=s["package"]) for k, v in LABELS.items()}
    model = summ["model"]
    lines = [
        f"# REST throughput at concurrency {r['arguments']['connections']} ({mach['cpus']} cores, Python "
        f"{mach['python']}, uvicorn {mach['uvicorn']}, wrk {mach['wrk']})",
        "",
        f"Model: LightGBM, {s['trees']} trees, {s['n_features']} features, from the wheel `{s['wheel']}`. Load: wrk, "
        f"{r['arguments']['wrk_threads']} thread, {r['arguments']['connections']} keep-alive connections, one record "
        f"per POST cycling through 1,000 records; {r['arguments']['rounds']} rounds of "
        f"{r['arguments']['seconds']:g} s per server (after {r['arguments']['warmup']:g} s of warm-up each), the "
        "servers taking turns; medians over rounds. Each server is one uvicorn worker "
        f"(httptools {'installed' if mach['httptools_installed'] else 'not installed'}, uvloop "
        f"{'installed' if mach['uvloop_installed'] else 'not installed'}); the model's and the plain app's "
        "answers were checked against the in-process scores first.",
        "",
        "| server | req/s | p50 ms | p90 ms | p99 ms | worst p99 ms | errors | server CPU | req per CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("model", "plain", "plain_async", "asgi_floor"):
        x = summ[name]
        lines.append(
            f"| {labels[name]} | {x['requests_per_s']:,.0f} | {x['p50_ms']:.2f} | {x['p90_ms']:.2f} | "
            f"{x['p99_ms']:.2f} | {x['p99_worst_ms']:.2f} | {x['errors']} | {x['server_cpu_share']:.0%} | "
            f"{x['requests_per_cpu_s']:,.0f} |"
        )
    ratio = r["ratio_model_to_plain_throughput"]
    lines += [
        "",
        "| goal | measured | target | |",
        "|---|---:|---:|---|",
        f"| throughput, service / the faster plain app ({r['faster_plain']}) | {ratio:.2f}x | "
        f">= {g['throughput_ratio']:.0f}x | "
        f"{verdict(ratio >= g['throughput_ratio'])} |",
        f"| p99 latency of the service | {model['p99_ms']:.2f} ms | < {g['p99_ms']:.0f} ms | "
        f"{verdict(model['p99_ms'] < g['p99_ms'])} |",
        f"| errors of the service | {model['errors']} | {g['errors']} | {verdict(model['errors'] == 0)} |",
        "",
        "Service / each plain app: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in r["ratio_model_to_each_plain_throughput"].items())
        + ". Per server CPU second (less sensitive to other processes on the cores): service / the leaner plain "
        f"app ({r['faster_plain_per_cpu_s']}) {r['ratio_model_to_plain_per_cpu_s']:.2f}x; the service reaches "
        f"{r['ratio_model_to_floor_throughput']:.0%} of the constant-answer ASGI floor's throughput.",
        "",
        "Runs (req/s): "
        + "; ".join(
            f"{name} " + ", ".join(f"{x['requests_per_s']:,.0f}" for x in runs) for name, runs in r["runs"].items()
        )
        + ".",
        "",
        f"Measured {r['measured_at']} with `{r['command']}` ({r['total_seconds']:.0f} s). 1-minute load average at "
        "start and after each round: "
        + " / ".join(f"{la[0]:.1f}" for la in r["load_average_per_round"])
        + f" on {mach['cpus']} cores (other processes share them; wrk and the server share them too).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server and round (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each measured run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the servers taking turns in each (3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (32)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1: the server keeps a core)")
    parser.add_argument("--train-rows", type=int, default=100_000, help="simulated rows for training (100,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--save-wheel", type=Path, default=None, help="copy the wheel built in setup into this folder")
    parser.add_argument("--wheel", type=Path, default=None, help="serve this wheel (from --save-wheel): no training")
    args = parser.parse_args()
    if min(args.seconds, args.warmup, args.rounds, args.connections, args.wrk_threads) <= 0:
        parser.error("--seconds, --warmup, --rounds, --connections and --wrk-threads must be above 0")
    wrk = shutil.which("wrk")
    if wrk is None:
        log(
            "error: the load generator `wrk` is not installed\n"
            "  expected: Debian's wrk on the PATH\n"
            "  what to do: `make browser` installs it (or: apt-get install wrk), then run this again"
        )
        return 2
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": "python bench/bench_throughput.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "goals": GOALS,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": bench_scoring._cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "uvicorn": bench_scoring._version("uvicorn"),
            "fastapi": bench_scoring._version("fastapi"),
            "prometheus_client": bench_scoring._version("prometheus-client"),
            "httptools_installed": bench_scoring.importlib.util.find_spec("httptools") is not None,
            "uvloop_installed": bench_scoring.importlib.util.find_spec("uvloop") is not None,
            "wrk": version.removeprefix("wrk ").strip(),
        },
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with tempfile.TemporaryDirectory(prefix="nbops-bench-throughput-") as tmp:
        result.update(bench(args, wrk, Path(tmp)))
    result["total_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (args.out / "throughput.md").write_text(md)
    print(md)
    log(f"total {result['total_seconds']:.0f} s; wrote {args.out / 'throughput.json'} and {args.out / 'throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
