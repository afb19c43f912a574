"""Batch scoring through the packaged wheel, as a deployment runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.data.io import write_json
from nbops.errors import NbopsError


def score_with_wheel(wheel: Path, package: str, source: Path, dest: Path, summary_out: Path) -> dict[str, Any]:
    """Run ``python -m <package> score`` with only the wheel on the path; summarise the scores."""
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    proc = subprocess.run(
        [sys.executable, "-m", package, "score", str(source), str(dest), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise NbopsError(f"scoring {source} with {wheel.name} failed:\n{proc.stderr.strip()}")
    scores = pd.read_parquet(dest)["prediction"]
    summary = {
        "wheel": wheel.name,
        "batch": str(source),
        "rows": int(len(scores)),
        "mean_prediction": float(scores.mean()),
        "quantiles": {str(q): float(scores.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        "scorer_output": proc.stdout.strip(),
    }
    write_json(summary, summary_out)
    return summary
