"""The pins conda users get (environment.yml) are the lock's pins, and the lock honours the measured pins."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = PIN.match(line.split(";")[0].strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_names_exactly_the_lock_pins() -> None:
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = _pins(pip_section)
    assert conda == lock
    assert "python=3.11" in env["dependencies"]


def test_lock_respects_the_measured_pins() -> None:
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    for line in (REPO / "requirements" / "pins.txt").read_text().splitlines():
        m = PIN.match(line.strip())
        name = m.group(1).lower().replace("_", "-") if m else None
        if name in lock:  # pins.txt also constrains packages a later stage adds (fastapi, uvicorn)
            assert lock[name] == m.group(2), line
    assert {"ploomber", "papermill", "lightgbm", "pandas", "wandb"} <= set(lock)
    assert int(lock["networkx"].split(".")[1]) < 6  # 3.6 breaks `ploomber plot`
    assert "rfc3987-syntax" not in lock  # left out: a 1.6 s import in every Ploomber process


@pytest.mark.parametrize(
    ("make_vars", "expected"),
    [
        (["ENGINE=dask", "ENV_FILE=env.test.yaml"], ["build", "--env", "env.test.yaml", "--set", "engine=dask"]),
        (
            ["DATA=my.csv", "TARGET=churned"],
            ["build", "--env", "env.yaml", "--set", "data=my.csv", "--set", "target=churned"],
        ),
    ],
)
def test_make_run_passes_its_variables_to_nbops_build(make_vars: list[str], expected: list[str]) -> None:
    """`make run ENGINE=dask` is `nbops build --set engine=dask`, which tests/scale builds end to end."""
    out = subprocess.run(["make", "-n", "run", *make_vars], cwd=REPO, capture_output=True, text=True, check=True).stdout
    command = next(line for line in out.splitlines() if "nbops build" in line).split()
    assert command[command.index("build") :] == expected
