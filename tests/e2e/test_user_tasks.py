"""The README's notebook task of your own, added to a built project exactly as the README shows and
built: it gets what a built-in stage gets (typed params, run identity and `nbops why`, reports as
.ipynb and .html, a W&B run in the build's group, the Airflow export)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nbops.pipeline import lineage
from nbops.pipeline.build import last_build_record
from tests.support import EXAMPLE_TASK, add_example_task, copy_project, files_containing, nbops, output_of

pytestmark = pytest.mark.slow
REPORTS = Path("build/test/reports")


@pytest.fixture(scope="module")
def with_review(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh project with the README's task added, then built (`make run` on the small sample)."""
    project = copy_project(tmp_path_factory.mktemp("user-task") / "project")
    add_example_task(project)
    proc = nbops(project, "build", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)[-4000:]
    return project, output_of(proc)


def test_only_the_new_task_runs_and_writes_its_products(with_review: tuple[Path, str]) -> None:
    project, out = with_review
    assert "Ran 10 of 10 tasks:" in out and "✓ segment_review" in out
    summary = json.loads((project / REPORTS / "segment_review.json").read_text())
    assert summary["threshold"] == 0.3  # pipeline.yaml's value, not the cell's default (0.5)
    assert summary["columns"] == ["education", "employment_type", "home_ownership", "region", "loan_purpose"]
    table = pd.read_parquet(project / REPORTS / "segment_review.parquet")
    assert set(table["column"]) == set(summary["columns"]) and table["rows"].gt(0).all()
    assert 0 < summary["lowest_ratio"] <= 1 and summary["lowest_ratio"] == pytest.approx(table["ratio"].min())


def test_its_reports_are_for_a_reader_and_carry_its_identity(with_review: tuple[Path, str]) -> None:
    project, _ = with_review
    identity = lineage.load_state(project / "build/test")[EXAMPLE_TASK]["identity"]
    executed = json.loads((project / REPORTS / "segment_review.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    page = (project / REPORTS / "segment_review.html").read_text()
    assert identity in page and "Findings" in page and "share not flagged" not in page  # the figure is an image
    # as the built-in reports: neither parameters cell, nor this machine's paths
    assert "upstream = None" not in page and "threshold = 0.3" not in page and str(project) not in page


def test_its_wandb_run_is_in_the_builds_group(with_review: tuple[Path, str]) -> None:
    project, _ = with_review
    record = last_build_record(project / "build/test")
    assert record is not None
    build_id = record["build_id"]
    identity = lineage.load_state(project / "build/test")[EXAMPLE_TASK]["identity"]
    runs = [r for r in (project / "wandb/wandb").glob("offline-run-*") if files_containing(r, [identity])]
    assert len(runs) == 1, "one W&B run carries the task's identity"
    assert files_containing(runs[0], [build_id, "segment_review", "lowest_ratio"])


def test_a_changed_parameter_reruns_it_and_nbops_why_says_so(with_review: tuple[Path, str]) -> None:
    project, _ = with_review
    spec = project / "pipeline.yaml"
    original = spec.read_text()
    try:
        spec.write_text(original.replace("      threshold: 0.3", "      threshold: 0.25"))
        proc = nbops(project, "build", "--env", "env.test.yaml")
        assert proc.returncode == 0, output_of(proc)[-3000:]
        assert "Ran 1 of 10 tasks: segment_review" in output_of(proc)
        why = nbops(project, "why", EXAMPLE_TASK, "--env", "env.test.yaml")
        assert "parameter 'threshold' changed: 0.3 -> 0.25" in output_of(why)
        assert json.loads((project / REPORTS / "segment_review.json").read_text())["threshold"] == 0.25
        again = nbops(project, "build", "--env", "env.test.yaml")
        assert "Nothing changed" in output_of(again), output_of(again)[-2000:]
    finally:  # the module's project as the other tests expect it
        spec.write_text(original)
        assert nbops(project, "build", "--env", "env.test.yaml").returncode == 0


def test_the_airflow_export_runs_it_after_its_upstream(with_review: tuple[Path, str], tmp_path: Path) -> None:
    project, _ = with_review
    dags = tmp_path / "dags"
    dags.mkdir()
    proc = nbops(project, "export", "airflow", str(dags), "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)
    dag = next(dags.glob("*.py")).read_text()
    block = dag[dag.index("    'segment_review': {") :]
    assert block.startswith(
        "    'segment_review': {\n        'notebook': 'notebooks/examples/segment_review.ipynb',\n"
        "        'upstream': [\n            'ingest',\n            'features',\n            'evaluate',\n        ],"
    )
    assert 'build --env "$NBOPS_ENV_FILE" --task segment_review\'' in dag
