"""`nbops schedule install|remove|show` against the real `crontab` command (Debian's cron).

The user's crontab (root's on this machine) is saved before each test that writes it and restored
after, whatever happens. The entries these tests install are for 31 February, a date that never
comes, so a cron daemon running on the machine never fires them while a test is under way.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbops.cli import main
from nbops.config.cron import validate_cron
from nbops.pipeline.schedule import command_of, read_crontab, write_crontab
from tests.support import REPO, copy_project

NEVER = "0 0 31 2 *"
MARKER = "# nbops-schedule"
# What cron gives a job: no login shell, a minimal PATH.
CRON_ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": os.path.expanduser("~"), "LOGNAME": getpass.getuser()}


# -- the real crontab ------------------------------------------------------------------------------


@pytest.fixture
def saved_crontab() -> Iterator[None]:
    """Save root's crontab, run the test, put it back exactly (or remove it if there was none)."""
    crontab = shutil.which("crontab")
    if crontab is None:
        pytest.fail("the `crontab` command is missing: `make browser` (run by `make test`) installs Debian's cron")
    before = subprocess.run([crontab, "-l"], capture_output=True, text=True)
    had = before.returncode == 0
    try:
        yield
    finally:
        if had:
            subprocess.run([crontab, "-"], input=before.stdout, text=True, check=True)
        else:
            subprocess.run([crontab, "-r"], capture_output=True)
        after = subprocess.run([crontab, "-l"], capture_output=True, text=True)
        assert (after.returncode == 0) == had and (not had or after.stdout == before.stdout)


def test_what_we_accept_the_real_crontab_accepts(saved_crontab: None) -> None:
    expressions = [
        "0 6 * * *",
        "*/15 1-5/2 1,15 jan-mar mon-fri",
        "0 6 * JAN SUN",
        "59 23 31 12 7",
        "*/59 */23 */30 */11 */7",
    ]
    write_crontab([f"{validate_cron(e)} /bin/true" for e in expressions])
    assert len(read_crontab()) == len(expressions)


def _schedule(project: Path, *args: str) -> int:
    return main(["--project", str(project), "schedule", *args])


def _ours(lines: list[str]) -> list[str]:
    return [line for line in lines if MARKER in line]


def test_install_is_idempotent_and_remove_keeps_every_other_entry(
    saved_crontab: None, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    others = [
        "# a colleague's crontab",
        'MAILTO=""',
        f"{NEVER} /bin/true # keep me",
        f"{NEVER} /bin/true {MARKER} project={project} env=env.yaml",  # the same project, another env
    ]
    write_crontab(others)
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", NEVER) == 0
    assert "installed the schedule" in capsys.readouterr().out
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", "0 0 30 2 *") == 0
    assert "replaced the schedule" in capsys.readouterr().out
    lines = read_crontab()
    assert lines[:4] == others
    mine = [line for line in lines if line.endswith(f"{MARKER} project={project} env=env.test.yaml")]
    assert len(mine) == 1 and len(lines) == 5
    assert mine[0].startswith("0 0 30 2 * ")  # the second install replaced the first line
    assert f"{project}/.venv/bin/nbops" not in mine[0]  # the copy has no .venv: the nbops running now
    assert (
        f"{REPO}/.venv/bin/nbops build --env env.test.yaml && {REPO}/.venv/bin/nbops retrain --if-needed --env "
        "env.test.yaml" in mine[0]
    )
    assert f"cd {project} && " in mine[0] and ">> build/test/reports/scheduled.log 2>&1" in mine[0]

    assert _schedule(project, "show", "--env", "env.test.yaml") == 0
    assert mine[0] in capsys.readouterr().out

    assert _schedule(project, "remove", "--env", "env.test.yaml") == 0
    assert "removed the schedule" in capsys.readouterr().out
    assert read_crontab() == others
    assert _schedule(project, "remove", "--env", "env.test.yaml") == 0
    assert "nothing removed" in capsys.readouterr().out
    assert _schedule(project, "show", "--env", "env.test.yaml") == 0
    out = capsys.readouterr().out
    assert "no nbops schedule for" in out and f"env={project}" not in out and others[3] in out


def test_schedule_defaults_to_the_env_file_and_bad_values_change_nothing(
    saved_crontab: None, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    env = project / "env.test.yaml"
    env.write_text(env.read_text().replace('schedule: "0 6 * * *"', f'schedule: "{NEVER}"'))
    write_crontab([f"{NEVER} /bin/true # keep me"])
    assert _schedule(project, "install", "--env", "env.test.yaml") == 0
    assert _ours(read_crontab())[0].startswith(f"{NEVER} cd {project} && ")

    before = read_crontab()
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", "0 25 * * *") == 2
    err = capsys.readouterr().err
    assert "--cron: field 2 (hour)" in err and "found: '25'" in err
    env.write_text(env.read_text().replace(f'schedule: "{NEVER}"', 'schedule: "0 6 * * mon-funday"'))
    assert _schedule(project, "install", "--env", "env.test.yaml") == 2
    assert "env.test.yaml: schedule: field 5 (day of week)" in capsys.readouterr().err
    assert read_crontab() == before


def test_an_entry_cron_would_refuse_as_too_long_is_not_written(
    saved_crontab: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    project = copy_project(tmp_path / ("x" * 200) / ("y" * 200) / ("z" * 200))
    write_crontab([f"{NEVER} /bin/true # keep me"])
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", NEVER) == 2
    err = capsys.readouterr().err
    assert "cron refuses 1000 or more" in err and "shorter path" in err
    assert read_crontab() == [f"{NEVER} /bin/true # keep me"]


def test_missing_crontab_says_how_to_install_it(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _schedule(project, "show", "--env", "env.test.yaml") == 2
    assert "apt-get install cron" in capsys.readouterr().err


STUB = """#!/bin/sh
# A stand-in for nbops: records where and how it ran; exits with the code in $FAIL_FILE for build.
echo "$PWD|$*" >> {calls}
if [ "$1" = build ] && [ -s {fail} ]; then exit "$(cat {fail})"; fi
echo "stub nbops $1 done"
"""


def test_the_installed_command_runs_under_cron_conditions(
    saved_crontab: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line as installed, unescaped as cron does, run by /bin/sh with cron's bare environment,
    in a project whose folder name has a space and a % (a newline to cron unless escaped); the
    project's .venv/bin/nbops is a stub that records its calls."""
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    project = copy_project(tmp_path / "my 100% project")
    calls, fail = tmp_path / "calls.txt", tmp_path / "fail.txt"
    stub = project / ".venv" / "bin" / "nbops"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB.format(calls=calls, fail=fail))
    stub.chmod(0o755)
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", NEVER, "--set", "rows=2000") == 0
    line = _ours(read_crontab())[0]
    assert r"my 100\% project" in line and "my 100% project" not in line
    command = command_of(line)
    assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0
    log = project / "build" / "test" / "reports" / "scheduled.log"

    def run() -> None:
        subprocess.run(["/bin/sh", "-c", command], env=CRON_ENV, cwd="/", check=True, timeout=30)

    run()
    assert calls.read_text().splitlines() == [
        f"{project}|build --env env.test.yaml --set rows=2000",
        f"{project}|retrain --if-needed --env env.test.yaml --set rows=2000",
    ]
    text = log.read_text()
    assert "nbops build, retrain --if-needed (env.test.yaml)" in text
    assert "stub nbops build done" in text and "stub nbops retrain done" in text
    assert text.rstrip().endswith("exit status 0") and "%" not in text

    # A failed build: no retraining, and the failure is in the log.
    fail.write_text("3")
    calls.unlink()
    run()
    assert calls.read_text().splitlines() == [f"{project}|build --env env.test.yaml --set rows=2000"]
    assert log.read_text().rstrip().endswith("exit status 3")

    # A run while the previous one still holds the lock skips itself.
    calls.unlink()
    with (project / "build" / "test" / ".nbops" / "schedule.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run()
    assert not calls.exists()
    assert log.read_text().rstrip().endswith("previous run still going: skipped")


def test_a_hostile_env_file_name_is_echoed_never_run(
    saved_crontab: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--env 'env$(touch PWN).yaml'` once reached the entry's echo unquoted: cron's shell ran it."""
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    project = copy_project(tmp_path / "project")
    hostile = "env$(touch PWN).yaml"
    shutil.copy(project / "env.test.yaml", project / hostile)
    calls, fail = tmp_path / "calls.txt", tmp_path / "fail.txt"
    stub = project / ".venv" / "bin" / "nbops"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB.format(calls=calls, fail=fail))
    stub.chmod(0o755)
    assert _schedule(project, "install", "--env", hostile, "--cron", NEVER) == 0
    command = command_of(_ours(read_crontab())[0])
    subprocess.run(["/bin/sh", "-c", command], env=CRON_ENV, cwd="/", check=True, timeout=30)
    assert not list(project.rglob("PWN")) and not Path("/PWN").exists(), "the env name was run as a command"
    assert calls.read_text().splitlines()[0] == f"{project}|build --env {hostile}"
    log = (project / "build/test/reports/scheduled.log").read_text()
    assert f"nbops build, retrain --if-needed ({hostile})" in log


def test_the_real_entry_points_at_existing_files(
    saved_crontab: None, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a stub: the command parses and every path it runs or enters exists."""
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    assert _schedule(project, "install", "--env", "env.test.yaml", "--cron", NEVER) == 0
    command = command_of(_ours(read_crontab())[0])
    assert subprocess.run(["bash", "-n", "-c", command]).returncode == 0
    nbops = REPO / ".venv" / "bin" / "nbops"
    assert f"cd {project} &&" in command and project.is_dir()
    assert f"{nbops} build" in command and os.access(nbops, os.X_OK)
    assert shutil.which("flock", path=CRON_ENV["PATH"]) and "flock -n 9" in command
    # Removing the only entry leaves no crontab at all, as before the first install.
    assert _schedule(project, "remove", "--env", "env.test.yaml") == 0
    assert "no crontab" in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stderr
