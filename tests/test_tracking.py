"""W&B tracking: real offline runs, every file inside the project, private columns never logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import files_containing

SCRIPT = """
import sys, pandas as pd
from pathlib import Path
from nbops.tracking import start_run
project = Path(sys.argv[1])
with start_run("unit", config={"alpha": 1}, mode="offline", project_dir=project, private_columns=["email"]) as run:
    run.log_metrics({"auc": 0.9})
    run.log_table("rows", pd.DataFrame({"email": ["secret@example.org"], "x": [1]}))
    artifact = project / "model.txt"
    artifact.write_text("tree")
    run.log_artifact("model", "model", [artifact])
    print(run.run_id)
"""


def test_offline_run_lands_inside_the_project_and_drops_private_columns(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), NBOPS_BUILD_ID="build-123")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(project)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stdout.strip().splitlines()[-1]
    runs = list((project / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert files_containing(project / "wandb", ["build-123"]), "run group missing"
    assert files_containing(project / "wandb", ["secret@example.org"]) == []
    assert not any(home.rglob("*")), f"W&B wrote outside the project: {list(home.rglob('*'))[:5]}"


def test_disabled_tracking_does_not_import_wandb(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from nbops.tracking import start_run; "
        f"r = start_run('x', config={{}}, mode='disabled', project_dir=Path({str(tmp_path)!r})); "
        "r.log_metrics({'a': 1}); r.finish(); print('wandb' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "False"
    assert not (tmp_path / "wandb").exists()
