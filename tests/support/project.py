"""A throwaway copy of the project, and the nbops command run in it as a user runs it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a build needs: the DAG, the env files, the notebooks, the schemas and the Jupyter settings.
PROJECT_FILES = ("pipeline.yaml", "env.yaml", "env.test.yaml", "notebooks", "schemas", ".jupyter")
# env.test.yaml's products root, under the project folder.
TEST_ROOT = Path("build/test")


def copy_project(dest: Path) -> Path:
    """Copy what a build needs into ``dest`` (created) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def nbops(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``nbops --project PROJECT ARGS`` in a new process, as a user would, capturing its output."""
    full_env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", **(env or {})}
    full_env.pop("NBOPS_PROJECT", None)
    return subprocess.run(
        [sys.executable, "-m", "nbops", "--project", str(project), *args],
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def nbops_in_process(project: Path | None, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``nbops [--project PROJECT] ARGS`` through :func:`nbops.cli.main` in this process (from ``cwd``
    when given): the same parser and command code, its output captured, without the seconds a new
    interpreter spends importing. For tests where the process itself is not the point; ``nbops``
    (a real process) covers the entry point."""
    from nbops.cli import main

    argv = [*(["--project", str(project)] if project is not None else []), *args]
    out, err = io.StringIO(), io.StringIO()
    saved_project = os.environ.pop("NBOPS_PROJECT", None)
    saved_sigpipe = signal.getsignal(signal.SIGPIPE)  # main() resets it for `nbops ... | head`
    try:
        with (
            contextlib.chdir(cwd or Path.cwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse refuses a command line with exit status 2
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.signal(signal.SIGPIPE, saved_sigpipe)
        if saved_project is not None:
            os.environ["NBOPS_PROJECT"] = saved_project
    return subprocess.CompletedProcess(["nbops", *argv], code, out.getvalue(), err.getvalue())


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    """Everything a command printed: stdout, then stderr."""
    return proc.stdout + proc.stderr


def files_containing(folder: Path, needles: Sequence[str]) -> list[Path]:
    """Files under ``folder`` whose bytes contain any of ``needles``."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(path)
    return hits
