"""The GitHub Actions workflows call only things that exist: make targets and variables in the
Makefile, nbops subcommands and options the parser accepts, the CI entry point, and the files
`nbops compare` writes. No network and no GitHub: the YAML is read and each shell command checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbops.cli import build_parser
from nbops.config.cron import validate_cron
from nbops.pipeline.check import check_project
from nbops.pipeline.compare import default_output
from tests.support import REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTIONS = {"actions/checkout@v4", "actions/setup-python@v5", "actions/cache@v4", "actions/upload-artifact@v4"}
SEPARATORS = {"&&", "||", ";", "|", "&"}


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(wf: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in wf["jobs"].items() for step in job["steps"]]


def commands(script: str, variables: dict[str, str]) -> list[list[str]]:
    """The simple commands of a step's shell script, as argument lists, with $VARS substituted."""
    out: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        for name, value in variables.items():
            line = line.replace(f'"${name}"', value).replace(f"${{{name}}}", value).replace(f"${name}", value)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in SEPARATORS or token.startswith(">"):
                if current:
                    out.append(current)
                current = []
                if token.startswith(">"):
                    break  # a redirection ends what we check on this line
            else:
                current.append(token)
        if current:
            out.append(current)
    return out


def all_commands(wf: dict[str, Any]) -> list[tuple[str, list[str]]]:
    variables = {"ENV_FILE": "env.yaml", "GITHUB_STEP_SUMMARY": "/dev/null", "GITHUB_OUTPUT": "/dev/null"}
    return [(job, cmd) for job, step in steps(wf) if "run" in step for cmd in commands(step["run"], variables)]


def makefile() -> tuple[set[str], set[str]]:
    """The Makefile's targets and variables."""
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))
    variables = set(re.findall(r"^(?:export\s+)?([A-Z_][A-Z0-9_]*)\s*[:?+]?=", text, flags=re.M))
    return targets, variables


@pytest.mark.parametrize("name", ["ci.yml", "scheduled.yml"])
def test_workflows_parse_and_use_current_actions_on_python_311(name: str) -> None:
    wf = workflow(name)
    assert wf["name"] and wf["on"] and wf["jobs"]
    for job in wf["jobs"].values():
        assert job["runs-on"] == "ubuntu-latest"
        assert job.get("timeout-minutes"), "a job without a timeout can hang for 6 hours"
    for job_id, step in steps(wf):
        if "run" in step:  # GitHub runs each script with `bash -e`: it must at least parse
            proc = subprocess.run(["bash", "-n", "-c", step["run"]], capture_output=True, text=True)
            assert proc.returncode == 0, (
                f"{name}: job {job_id}, step {step.get('name', step['run'][:40])!r}: {proc.stderr}"
            )
    used = {step["uses"] for _, step in steps(wf) if "uses" in step}
    assert used <= ACTIONS, used - ACTIONS
    for _, step in steps(wf):
        if step.get("uses", "").startswith("actions/setup-python"):
            version = str(step["with"]["python-version"])
            assert version == "3.11" or (
                version == "${{ env.PYTHON_VERSION }}" and wf["env"]["PYTHON_VERSION"] == "3.11"
            )
        if step.get("uses", "").startswith("actions/cache") and step["with"]["path"] == ".venv":
            assert "hashFiles('requirements.lock'" in step["with"]["key"] and "python-version" in step["with"]["key"]


def test_ci_runs_make_test_as_ci_run_does_and_make_lint() -> None:
    ci_run = (REPO / ".ci" / "run").read_text()
    assert (
        re.search(r"^make lint$", ci_run, flags=re.M)
        and re.search(r"^make test$", ci_run, flags=re.M)
        and os.access(REPO / ".ci" / "run", os.X_OK)
    )
    cmds = [cmd for _, cmd in all_commands(workflow("ci.yml"))]
    assert [".ci/run"] in cmds or ["make", "test"] in cmds
    assert ["make", "lint"] in cmds
    targets, _ = makefile()
    lint = (REPO / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "pre-commit run --all-files" in lint and (REPO / ".pre-commit-config.yaml").exists()


@pytest.mark.parametrize("name", ["ci.yml", "scheduled.yml"])
def test_every_make_target_and_variable_exists(name: str) -> None:
    targets, variables = makefile()
    made = [cmd for _, cmd in all_commands(workflow(name)) if cmd[0] == "make"]
    assert made
    for cmd in made:
        for arg in cmd[1:]:
            if "=" in arg:
                assert arg.split("=", 1)[0] in variables, (
                    f"{name}: `{' '.join(cmd)}` sets {arg.split('=')[0]}, which the Makefile does not use"
                )
            else:
                assert arg in targets, (
                    f"{name}: `{' '.join(cmd)}`: no target '{arg}' in the Makefile ({', '.join(sorted(targets))})"
                )


@pytest.mark.parametrize("name", ["ci.yml", "scheduled.yml"])
def test_every_nbops_command_is_a_real_subcommand_with_real_options(name: str) -> None:
    parser = build_parser()
    subcommands = set(next(a for a in parser._actions if a.dest == "command").choices)
    ran = [cmd for _, cmd in all_commands(workflow(name)) if Path(cmd[0]).name == "nbops"]
    assert ran
    for cmd in ran:
        assert cmd[1] in subcommands, f"{name}: `nbops {cmd[1]}` is not one of {sorted(subcommands)}"
        try:
            parser.parse_args(cmd[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{' '.join(cmd)}` does not parse")


def test_compare_job_uploads_what_nbops_compare_writes() -> None:
    wf = workflow("ci.yml")
    job = wf["jobs"]["compare"]
    cmds = [cmd for j, cmd in all_commands(wf) if j == "compare"]
    build = cmds.index(["make", "run", "ENV_FILE=env.test.yaml"])
    compare = cmds.index([".venv/bin/nbops", "compare", "--env", "env.test.yaml"])
    assert build < compare
    written = default_output(check_project(REPO, "env.test.yaml"), REPO).relative_to(REPO)
    uploads = [s for s in job["steps"] if s.get("uses") == "actions/upload-artifact@v4"]
    assert [s["with"]["path"] for s in uploads] == [str(written)]
    assert uploads[0]["with"]["if-no-files-found"] == "error"


@pytest.mark.slow  # runs the root-finding step once per env file
def test_scheduled_runs_the_cron_pipeline_and_uploads_reports(tmp_path: Path) -> None:
    wf = workflow("scheduled.yml")
    crons = [entry["cron"] for entry in wf["on"]["schedule"]]
    assert crons and all(validate_cron(c, "scheduled.yml") for c in crons)
    # The same schedule as `nbops schedule install` takes from env.yaml.
    assert crons == [check_project(REPO, "env.yaml").settings.schedule]
    assert "workflow_dispatch" in wf["on"]
    options = wf["on"]["workflow_dispatch"]["inputs"]["env_file"]["options"]
    assert all((REPO / o).exists() for o in options)

    cmds = [cmd for _, cmd in all_commands(wf)]
    pipeline = (
        [".venv/bin/nbops", "build", "--env", "env.yaml"],
        [".venv/bin/nbops", "retrain", "--if-needed", "--env", "env.yaml"],
    )
    assert cmds.index(pipeline[0]) + 1 == cmds.index(pipeline[1])
    assert [".venv/bin/nbops", "site", "--env", "env.yaml"] in cmds  # the static site, kept as an artifact
    (job,) = wf["jobs"].values()
    uploads = [s for s in job["steps"] if s.get("uses") == "actions/upload-artifact@v4"]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"
    assert "${{ steps.root.outputs.root }}/reports/" in uploads[0]["with"]["path"].splitlines()
    assert "${{ steps.root.outputs.root }}/site/" in uploads[0]["with"]["path"].splitlines()

    # The step that finds the product root gives the folder `nbops compare` writes into.
    (root_step,) = [s for s in job["steps"] if s.get("id") == "root"]
    script = root_step["run"].replace(".venv/bin/python", shlex.quote(sys.executable))
    output = tmp_path / "github_output"
    for env_file in options:
        output.write_text("")
        subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=REPO,
            check=True,
            env={**os.environ, "ENV_FILE": env_file, "GITHUB_OUTPUT": str(output)},
            timeout=60,
        )
        expected = default_output(check_project(REPO, env_file), REPO).parent
        assert output.read_text() == f"root={expected.parent}\n"
        assert expected.name == "reports"
