"""Fixtures of the pipeline tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import copy_project
from tests.support.builds import run_in_process

# The small sample made smaller: every stage runs, in seconds (W&B is tested in tests/test_tracking.py).
QUICK = {
    "tracking": "disabled",
    "rows": 2000,
    "num_boost_round": 40,
    "shap_sample": 100,
    "batch_rows": 400,
    "production_months": 3,
    "production_rows": 400,
}


@pytest.fixture(scope="session")
def ran_in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project copy whose eight tasks ran in this process (their runners, in DAG order, no Ploomber)
    with env.test.yaml and :data:`QUICK`. Read-only: a test that changes it works on its own copy."""
    project = copy_project(tmp_path_factory.mktemp("in-process") / "project")
    checked, results = run_in_process(project, "env.test.yaml", QUICK)
    return {"project": project, "checked": checked, "results": results, "overrides": QUICK}
