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
from nbops.runtime.model import LABEL_COLUMN, PROBABILITY_PREFIX


def class_summary(scored: pd.DataFrame) -> dict[str, Any]:
    """A multiclass batch's scores in brief: rows per predicted class and each class's mean probability."""
    counts = scored[LABEL_COLUMN].astype("string").value_counts()
    return {
        "predicted_classes": {str(k): int(v) for k, v in counts.items()},
        "mean_probability": {
            c.removeprefix(PROBABILITY_PREFIX): float(scored[c].mean())
            for c in scored.columns
            if c.startswith(PROBABILITY_PREFIX)
        },
    }


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
    scored = pd.read_parquet(dest)
    summary: dict[str, Any] = {"wheel": wheel.name, "batch": str(source), "rows": int(len(scored))}
    if "prediction" in scored.columns:
        scores = scored["prediction"]
        summary["mean_prediction"] = float(scores.mean())
        summary["quantiles"] = {str(q): float(scores.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
    else:  # a multiclass model: the most likely class of each row, and each class's mean probability
        summary.update(class_summary(scored))
    summary["scorer_output"] = proc.stdout.strip()
    write_json(summary, summary_out)
    return summary
