"""`make dashboard` run as a user runs it, in a project copy that it can serve, and stopped again."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.processes import free_port
from tests.support.project import REPO, copy_project

VENV = Path(sys.executable).parent.parent  # the worktree's .venv, which `make install` made
# What `make dashboard` reads besides the project: the Makefile and the files its install step depends on.
MAKE_FILES = ("Makefile", "requirements.lock", "pyproject.toml", "requirements/overrides.txt")
# The dashboards `make dashboard` prints a link to, and the element each shows once its widgets render.
READY = {"monitoring": ".nbops-kpis", "model": ".nbops-threshold-result", "experiments": ".nbops-runs-table"}
LINK = re.compile(r"^(" + "|".join(READY) + r"):\s+(http://\S+)$")


def dashboard_copy(dest: Path) -> Path:
    """A project copy that `make dashboard` can serve: the project, its dashboards and the Makefile
    with the files its ``install`` prerequisite depends on (times kept, so the worktree's .venv is
    up to date for make)."""
    project = copy_project(dest)
    shutil.copytree(REPO / "dashboards", project / "dashboards", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in MAKE_FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, project / name)
    return project


def make_dashboard(
    project: Path, log: Path, *extra: str, timeout: float = 120
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Run `make dashboard` in ``project`` as a user would (a free port, the test env file, the
    worktree's .venv) and return the process and the links it printed, once Voila answers."""
    make = ["make", "-C", str(project), f"VENV={VENV}", "ENV_FILE=env.test.yaml", f"DASHBOARD_PORT={free_port()}"]
    stale = subprocess.run([*make, "-q", f"{VENV}/.installed"], capture_output=True, text=True)
    if stale.returncode != 0:
        pytest.fail(
            f"{VENV} is older than requirements.lock or pyproject.toml: `make dashboard` would reinstall it from a "
            f"temporary copy. Run `make install` in {REPO}, then the tests again."
        )
    env = {k: v for k, v in os.environ.items() if k not in ("NBOPS_PROJECT", "NBOPS_ENV", "MAKEFLAGS", "MAKELEVEL")}
    proc = subprocess.Popen(
        [*make, "dashboard", *extra],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=env,
        start_new_session=True,
    )
    # A thread reads what make prints (and keeps reading, so a full pipe never blocks the server).
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    links: dict[str, str] = {}
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while len(links) < len(READY) and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        printed.append(line.rstrip("\n"))
        if m := LINK.match(line.strip()):
            links[m[1]] = m[2]
    if len(links) < len(READY):
        stop(proc)
        pytest.fail(
            f"`make dashboard` printed no link to each of {', '.join(READY)} within {timeout:.0f} s; stdout: "
            f"{printed}; log: {log.read_text()[-3000:]}"
        )
    base = "{0.scheme}://{0.netloc}".format(urlsplit(links["monitoring"]))
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            # A static file, not a notebook: every notebook GET starts a kernel.
            if httpx.get(f"{base}/voila/static/voila.js", timeout=2).status_code < 500:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    return proc, links


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop make and the Voila it started (their own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
