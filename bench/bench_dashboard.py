"""Benchmark: how long the Voila dashboards take to show their widgets in headless Chromium, with two
years (24 months) of monitoring history. Writes bench/results/dashboard.json and dashboard.md.

    python bench/bench_dashboard.py [--reps 3]

The dashboards are served by `make dashboard`, as a user starts them, and opened through the links
it prints. Each repetition opens a new page (Voila starts a new kernel per page view) and times
navigation -> the KPI tiles (monitoring) or the threshold explorer (model) being rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support import CHROMIUM, nbops, output_of  # noqa: E402
from tests.support import CHROMIUM_FLAGS as FLAGS  # noqa: E402
from tests.support.voila import READY, dashboard_copy, make_dashboard, stop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--pause",
        type=float,
        default=10.0,
        help="seconds between page views (Voila refills its pre-heated kernel pool meanwhile)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {name: [] for name in READY}
    with tempfile.TemporaryDirectory() as tmp:
        project = dashboard_copy(Path(tmp) / "project")
        proc = nbops(
            project, "build", "--env", "env.test.yaml", "--set", "production_months=24", "--set", "tracking=disabled"
        )
        if proc.returncode != 0:
            raise SystemExit(output_of(proc)[-3000:])
        server, links = make_dashboard(project, Path(tmp) / "voila.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                for _ in range(args.reps + 1):  # the first view warms the file-system cache; not counted
                    for name, ready in READY.items():
                        time.sleep(args.pause)
                        page = browser.new_page(viewport={"width": 1280, "height": 1600})
                        start = time.perf_counter()
                        page.goto(links[name], wait_until="domcontentloaded")
                        page.wait_for_selector(ready, timeout=120_000)
                        results[name].append(time.perf_counter() - start)
                        page.close()
                browser.close()
        finally:
            stop(server)
    measured = {k: v[1:] for k, v in results.items()}
    med = {k: statistics.median(v) for k, v in measured.items()}
    summary = {
        "pause_between_views_s": args.pause,
        "median_seconds": med,
        "all_seconds": measured,
        "history_months": 24,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = [
        f"# Dashboard load time (Voila in headless Chromium, 24 months of history, median of {args.reps})",
        "",
        "| dashboard | seconds to widgets rendered | goal |",
        "|---|---:|---:|",
        f"| monitoring | {med['monitoring']:.2f} | ≤ 5 s |",
        *(f"| {name} | {med[name]:.2f} | |" for name in READY if name != "monitoring"),
        "",
        f"Measured {summary['measured_at']} with `python bench/bench_dashboard.py --reps {args.reps} --pause "
        f"{args.pause:g}`: each view gets a",
        "pre-heated kernel (started, imports done; Voila refills the pool between views) that reads the latest",
        "outputs and draws the widgets when the page opens.",
    ]
    (out / "dashboard.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
