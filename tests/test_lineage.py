"""Run identities: what changed since the last build, computed without Ploomber."""

from __future__ import annotations

import json
from pathlib import Path

from nbops import lineage
from nbops.check import check_project


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
    assert why["train"] == ["parameter 'learning_rate' changed"]
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
    assert why["features"][0] == "notebook code changed (02_features.ipynb)"
    assert "a product was modified or removed since the last build" in why["ingest"]


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
