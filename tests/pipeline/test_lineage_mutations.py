"""Run identities see everything a task runs: each kind of change reruns exactly the tasks it
should, and `nbops why` names the cause before the build.

The project is a copy, and so is the library (src/nbops copied into the test's folder and put first
on PYTHONPATH), so a test can edit a library module the way a developer fixing a bug would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pipeline.yaml", "env.yaml", "env.test.yaml", "notebooks", "schemas", ".jupyter", "requirements.lock")
TASKS = ["ingest", "features", "tune", "train", "evaluate", "register", "package", "batch_score", "monitor"]
AFTER_TRAIN = ["train", "evaluate", "register", "package", "batch_score", "monitor"]
AFTER_EVALUATE = ["evaluate", "register", "package", "batch_score", "monitor"]
SETTINGS = [
    "--env",
    "env.test.yaml",
    "--set",
    "tracking=disabled",
    "--set",
    "data=loans.csv",
    "--set",
    "target=defaulted",
]

pytestmark = pytest.mark.slow


def _table(path: Path, rows: int = 900, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, rows)
    debt = rng.uniform(0, 0.6, rows)
    region = rng.choice(["north", "south", "east"], rows)
    risk = -2.0 + 3.0 * debt - 0.4 * (np.log(income) - 10.5) + (region == "east") * 0.5
    pd.DataFrame(
        {
            "income": income.round(2),
            "debt_ratio": debt.round(4),
            "region": region,
            "defaulted": (rng.random(rows) < 1 / (1 + np.exp(-risk))).astype(int),
        }
    ).to_csv(path, index=False)


class Project:
    """A copy of the project and of the library, and the nbops command run in it."""

    def __init__(self, folder: Path) -> None:
        self.root = folder / "project"
        self.src = folder / "src"
        self.root.mkdir(parents=True)
        for name in PROJECT_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, self.root / name)
            else:
                shutil.copy2(source, self.root / name)
        shutil.copytree(REPO / "src" / "nbops", self.src / "nbops", ignore=shutil.ignore_patterns("__pycache__"))
        _table(self.root / "loans.csv")

    def nbops(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(self.src), "PLOOMBER_STATS_ENABLED": "false"}
        env.pop("NBOPS_PROJECT", None)
        return subprocess.run(
            [sys.executable, "-m", "nbops", "--project", str(self.root), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    def build(self) -> list[str]:
        """Build; the tasks that ran (from the build record)."""
        log = self.root / "build/test/reports/builds.jsonl"
        before = len(log.read_text().splitlines()) if log.exists() else 0
        proc = self.nbops("build", *SETTINGS)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        self.last_output = proc.stdout
        lines = log.read_text().splitlines()
        if len(lines) == before:  # a no-op answers from the lineage without starting Ploomber
            assert "Nothing changed" in proc.stdout, proc.stdout[-2000:]
            return []
        record = json.loads(lines[-1])
        return [name for name in TASKS if record["tasks"].get(name)]

    def why(self, task: str) -> str:
        proc = self.nbops("why", task, *SETTINGS)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = Project(tmp_path_factory.mktemp("mutations"))
    assert p.build() == TASKS
    # the library the build ran is the copy, not the checkout
    assert p.nbops("check", *SETTINGS).returncode == 0
    return p


def _edit_notebook(path: Path, kind: str, text: str) -> None:
    nb = json.loads(path.read_text())
    cell = next(
        c for c in nb["cells"] if c["cell_type"] == kind and "parameters" not in c.get("metadata", {}).get("tags", [])
    )
    cell["source"] = ["".join(cell["source"]) + text]
    path.write_text(json.dumps(nb, indent=1))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# (what changed, how to change it, the tasks that must rerun, (task, what `nbops why` says))
MUTATIONS: list[tuple[str, Callable[[Project], None], list[str], tuple[str, str] | None]] = [
    (
        "a markdown-only cell",
        lambda p: _edit_notebook(p.root / "notebooks/03_train.ipynb", "markdown", "\nA note for readers."),
        [],
        None,
    ),
    (
        "a parameter",
        lambda p: _edit(p.root / "env.test.yaml", "learning_rate: 0.05", "learning_rate: 0.08"),
        ["tune", *AFTER_TRAIN],  # the study starts from the parameters as set
        ("train", "parameter 'learning_rate' changed: 0.05 -> 0.08"),
    ),
    (
        "a notebook code cell",
        lambda p: _edit_notebook(p.root / "notebooks/03_train.ipynb", "code", "\n_checked = True"),
        AFTER_TRAIN,
        ("train", "notebook code changed (03_train.ipynb: code cell"),
    ),
    (
        "a library module used by one stage",
        lambda p: _edit(
            p.src / "nbops/modeling/evaluate.py",
            '\nPREDICTION = "prediction"\n',
            '\nPREDICTION = "prediction"  # renamed later?\n',
        ),
        AFTER_EVALUATE,
        ("evaluate", "library code changed (src/nbops/modeling/evaluate.py)"),
    ),
    (
        "the scoring runtime the wheel carries",
        lambda p: _edit(
            p.src / "nbops/runtime/serve.py",
            '"""',
            '"""(edited) ',
        ),
        ["package", "batch_score"],
        ("package", "library code changed (src/nbops/runtime/serve.py)"),
    ),
    (
        "the lock file",
        lambda p: (p.root / "requirements.lock").write_text(
            (p.root / "requirements.lock").read_text() + "# re-locked\n"
        ),
        TASKS,
        ("ingest", "the environment changed (requirements.lock)"),
    ),
    ("the data file", lambda p: _table(p.root / "loans.csv", seed=1), TASKS, ("ingest", "the data file changed")),
    (
        "a removed product",
        lambda p: (p.root / "build/test/reports/metrics.json").unlink(),
        AFTER_EVALUATE,
        ("evaluate", "a product was removed since the last build (metrics.json)"),
    ),
]


@pytest.mark.parametrize(("what", "mutate", "reruns", "why"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_change_reruns_exactly_the_tasks_it_should(
    project: Project, what: str, mutate: Callable[[Project], None], reruns: list[str], why: tuple[str, str] | None
) -> None:
    mutate(project)
    if why is not None:
        task, cause = why
        said = project.why(task)
        assert f"next build: will run, because {cause}" in said or ("will run, because" in said and cause in said), said
        for other in sorted(set(TASKS) - set(reruns)):
            assert "next build: up to date" in project.why(other), f"{other} would rerun after {what}"
    ran = project.build()
    assert ran == reruns, f"after {what}: ran {ran}, expected {reruns}\n{project.last_output[-2000:]}"
    if not reruns:
        assert "Nothing changed" in project.last_output
    assert project.build() == [], f"a second build after {what} is not a no-op"
