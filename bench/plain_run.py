"""The pipeline's stage functions called in one plain Python process, in DAG order (no Ploomber, no
notebooks): the baseline that `bench_build.py` compares a full build against.

Usage: python bench/plain_run.py PROJECT ENV_FILE [UNTIL_TASK]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

t0 = time.perf_counter()

import importlib  # noqa: E402

from nbops.config.params import STAGES  # noqa: E402
from nbops.pipeline.check import check_project  # noqa: E402
from nbops.pipeline.context import Stage  # noqa: E402

RUNNERS = {
    "ingest": importlib.import_module("nbops.pipeline.runners.ingest").run_ingest,
    "features": importlib.import_module("nbops.pipeline.runners.features").run_features,
    "train": importlib.import_module("nbops.pipeline.runners.train").run_train,
    "evaluate": importlib.import_module("nbops.pipeline.runners.evaluate").run_evaluate,
    "register": importlib.import_module("nbops.pipeline.runners.register").run_register,
    "package": importlib.import_module("nbops.pipeline.runners.package").run_package,
    "batch_score": importlib.import_module("nbops.pipeline.runners.batch_score").run_batch_score,
    "monitor": importlib.import_module("nbops.pipeline.runners.monitor").run_monitor,
}


def main(project: Path, env_file: str, until: str | None = None) -> None:
    checked = check_project(project, env_file)
    if until is not None:  # the task and its upstream, as Ploomber's partial build
        by_name = {t.name: t for t in checked.tasks}
        keep, todo = set(), [until]
        while todo:
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                todo += by_name[name].upstream
        checked.tasks[:] = [t for t in checked.tasks if t.name in keep]
    products = {t.name: {k: Path(v) for k, v in t.product.items()} for t in checked.tasks}
    done: set[str] = set()
    pending = list(checked.tasks)
    while pending:  # topological order from the declared upstream
        task = next(t for t in pending if set(t.upstream) <= done)
        params = STAGES[task.name](**{k: v for k, v in task.params.items()})
        stage = Stage(
            task.name, params, products[task.name], {u: products[u] for u in task.upstream}, project, interactive=False
        )
        RUNNERS[task.name](stage)
        done.add(task.name)
        pending.remove(task)
    print(f"plain run: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
