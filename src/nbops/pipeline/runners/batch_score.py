"""Batch-score: a new monthly batch scored by the packaged wheel, as a deployment would."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nbops.config.params import BatchScoreParams
from nbops.engines import engine_for
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import read_json


def run_batch_score(stage: Stage[BatchScoreParams]) -> dict[str, Any]:
    """Score a simulated month (or, on your own data, the test split) with the wheel."""
    info = read_json(stage.inp("package", "manifest"))
    batch_path = stage.out("batch")
    if stage.params.data == "simulate":
        from nbops.data.simulate import simulate_batch, write_simulation

        df, truth = simulate_batch(
            stage.params.batch,
            rows=stage.params.batch_rows,
            seed=stage.params.seed,
            drift=stage.params.batch_drift or "none",
        )
        write_simulation(df, truth, batch_path)
    else:
        shutil.copyfile(stage.inp("features", "test"), batch_path)
    return engine_for(stage.params).score_wheel(
        Path(info["wheel"]), info["package"], batch_path, stage.out("predictions"), stage.out("summary")
    )
