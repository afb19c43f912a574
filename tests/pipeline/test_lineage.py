"""Run identities: what changed since the last build, computed without Ploomber."""

from __future__ import annotations

import json
from pathlib import Path

from nbops.pipeline import lineage
from nbops.pipeline.check import check_project


def _tasks(project: Path, **overrides: object):
    return check_project(project, "env.test.yaml", overrides).tasks


def _pretend_built(project: Path, tasks) -> None:
    for task in tasks:
        for path in map(Path, task.product.values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    lineage.save_state(Path(check_project(project, "env.test.yaml").settings.root), tasks, "b1")


def test_never_built_then_nothing_changed(project: Path) -> None:
    tasks = _tasks(project)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    assert all(why == ["never built"] for why in lineage.changes(tasks, root).values())
    _pretend_built(project, tasks)
    assert all(why == [] for why in lineage.changes(tasks, root).values())


def test_parameter_change_propagates_downstream_only(project: Path) -> None:
    tasks = _tasks(project)
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    why = lineage.changes(_tasks(project, learning_rate=0.2), root)
    assert why["ingest"] == [] and why["features"] == []
    # the tune task's study starts from the parameters as set: it reruns too, and train after it
    assert why["tune"] == ["parameter 'learning_rate' changed: 0.05 -> 0.2"]
    assert why["train"] == ["parameter 'learning_rate' changed: 0.05 -> 0.2", "input from 'tune' changed"]
    assert why["evaluate"] == ["input from 'train' changed"]


def test_code_change_and_deleted_product_are_reported(project: Path) -> None:
    tasks = _tasks(project)
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    nb_path = project / "notebooks" / "02_features.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][-1]["source"].append("\n# a reviewer's tweak\n")
    nb_path.write_text(json.dumps(nb))
    Path(tasks[0].product["quarantine"]).unlink()
    why = lineage.changes(_tasks(project), root)
    n_cells = len(lineage.code_cells(nb_path))
    assert why["features"][0] == f"notebook code changed (02_features.ipynb: code cell {n_cells} of {n_cells})"
    assert "a product was removed since the last build (quarantine.parquet)" in why["ingest"]


def test_outputs_and_metadata_do_not_change_the_identity(project: Path) -> None:
    before = lineage.identities(_tasks(project))
    nb_path = project / "notebooks" / "01_ingest.ipynb"
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["noise\n"]}]
            cell["execution_count"] = 42
    nb["metadata"]["widgets"] = {"state": {}}
    nb_path.write_text(json.dumps(nb))
    assert lineage.identities(_tasks(project)) == before


def test_data_file_change_is_named_as_such(project: Path) -> None:
    tasks = _tasks(project, data_version="size10-mtime1")
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    why = lineage.changes(_tasks(project, data_version="size11-mtime2"), root)
    assert why["ingest"] == ["the data file changed (its size or modification time differs)"]


def test_why_text_says_what_ran_why_and_what_will_run(project: Path) -> None:
    tasks = _tasks(project)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    assert "never built: it will run in the next build" in lineage.why_text(tasks, root, "train")
    for task in tasks:
        for path in map(Path, task.product.values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    lineage.save_state(root, tasks, "b1", ran={t.name: True for t in tasks}, reasons=lineage.changes(tasks, root))
    changed = _tasks(project, learning_rate=0.3)
    reasons = lineage.changes(changed, root)
    lineage.save_state(root, changed, "b2", ran={t.name: bool(reasons[t.name]) for t in changed}, reasons=reasons)
    text = lineage.why_text(changed, root, "train")
    assert "last build b2: ran because parameter 'learning_rate' changed: 0.05 -> 0.3" in text
    assert "next build: up to date" in text
    ingest = lineage.why_text(changed, root, "ingest")
    assert "last build b2: skipped, up to date" in ingest and "last ran in build b1 because never built" in ingest
    # back to the old value: train would run again, and says from what to what
    assert "will run, because parameter 'learning_rate' changed: 0.3 -> 0.05" in lineage.why_text(tasks, root, "train")


def test_why_an_unknown_task_lists_the_tasks(project: Path) -> None:
    import pytest

    from nbops.errors import ConfigError

    root = Path(check_project(project, "env.test.yaml").settings.root)
    with pytest.raises(ConfigError, match="no such task in pipeline.yaml; the tasks are ingest, features"):
        lineage.why_text(_tasks(project), root, "trian")


def test_one_task_record_keeps_the_others(project: Path) -> None:
    tasks = _tasks(project)
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    before = lineage.load_state(root)
    lineage.save_state(root, tasks, "b9", ran={"monitor": True}, reasons={"monitor": ["forced"]}, only={"monitor"})
    after = lineage.load_state(root)
    assert after["monitor"]["build_id"] == "b9" and after["train"] == before["train"]


def test_stamp_writes_the_identity_into_ploomber_metadata(project: Path) -> None:
    task = next(t for t in _tasks(project) if t.name == "train")
    model = Path(task.product["model"])
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("x")
    meta = model.parent / f".{model.name}.metadata"
    meta.write_text(json.dumps({"timestamp": 1.0, "stored_source_code": "code", "params": {"a": 1}}))
    lineage.stamp_ploomber_metadata(task, "abc123", "b1")
    data = json.loads(meta.read_text())
    assert data["nbops_run_identity"] == "abc123" and data["params"] == {"a": 1} and data["timestamp"] == 1.0


def test_editing_the_feature_module_reruns_features_and_downstream_and_names_the_file(project: Path) -> None:
    module = project / "features.py"
    module.write_text("def loan_to_income(df):\n    return df['loan_amount'] / df['annual_income']\n")
    tasks = _tasks(project, feature_code="features.py")
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    assert all(why == [] for why in lineage.changes(_tasks(project, feature_code="features.py"), root).values())
    module.write_text("def loan_to_income(df):\n    return df['loan_amount'] / (1 + df['annual_income'])\n")
    why = lineage.changes(_tasks(project, feature_code="features.py"), root)
    assert why["ingest"] == []
    assert why["features"] == ["feature code changed (features.py)"]
    assert why["tune"] == ["input from 'features' changed"]
    assert why["train"] == ["input from 'features' changed", "input from 'tune' changed"]
    assert all(why[t] for t in ("evaluate", "register", "package", "batch_score", "monitor"))
    text = lineage.why_text(_tasks(project, feature_code="features.py"), root, "features")
    assert "next build: will run, because feature code changed (features.py)" in text


def test_the_feature_module_is_part_of_the_features_identity_only(project: Path) -> None:
    module = project / "features.py"
    module.write_text("def a(df):\n    return df['age']\n")
    before = lineage.identities(_tasks(project, feature_code="features.py"))
    module.write_text("def a(df):\n    return df['age'] * 2\n")
    after = lineage.identities(_tasks(project, feature_code="features.py"))
    assert before["ingest"]["identity"] == after["ingest"]["identity"]
    assert before["features"]["identity"] != after["features"]["identity"]
    assert set(after["features"]["components"]["project_code"]) == {"features.py"}
    assert "project_code" not in after["train"]["components"]


SAVE_ONE_TASK = """\
import sys
from pathlib import Path
from nbops.pipeline import lineage
from nbops.pipeline.check import check_project
checked = check_project(Path(sys.argv[1]), "env.test.yaml")
print("saving", flush=True)
root = Path(checked.settings.root)
lineage.save_state(root, checked.tasks, "b-other", ran={"batch_score": True}, only={"batch_score"})
"""


def test_one_task_record_waits_for_the_state_lock(project: Path) -> None:
    """Single-task runs (an Airflow DAG's independent stages) record their lineage side by side: each
    one's read-modify-write of lineage.json waits for the other's, so neither record is lost."""
    import subprocess
    import sys
    import time

    from nbops import locks
    from nbops.config import paths

    tasks = _tasks(project)
    _pretend_built(project, tasks)
    root = Path(check_project(project, "env.test.yaml").settings.root)
    state_file = root / lineage.STATE_FILE
    with locks.project_lock(root / paths.STATE_LOCK, command="test: another single-task run"):
        other = subprocess.Popen(
            [sys.executable, "-c", SAVE_ONE_TASK, str(project)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None and other.stdout.readline().strip() == "saving"
        before = state_file.read_bytes()
        time.sleep(1.0)  # the other process's save_state, were it not waiting, would have written by now
        assert state_file.read_bytes() == before, "save_state wrote lineage.json while another held the state lock"
        # what this run records while holding the lock is kept by the other's write
        lineage.save_state(root, tasks, "b-this", ran={"monitor": True}, only={"monitor"})
    _, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    after = lineage.load_state(root)
    assert after["monitor"]["build_id"] == "b-this" and after["batch_score"]["build_id"] == "b-other"
    assert after["train"]["build_id"] == "b1"
