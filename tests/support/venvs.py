"""A fresh virtualenv holding only a built scoring wheel and its declared dependencies, as a deployment
installs it, and the environment to run that venv's python in (nothing of the test's own venv)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.project import REPO


def install_wheel(wheel: Path, folder: Path, extra: str = "serve") -> Path:
    """Create a venv in ``folder`` and install ``wheel[extra]`` with uv from the package index,
    constrained to the lock's versions; return the venv's python."""
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "venv", "--python", sys.executable, "--seed", str(folder)], check=True, capture_output=True, text=True
    )
    python = folder / "bin" / "python"
    proc = subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--python",
            str(python),
            "-c",
            str(REPO / "requirements.lock"),
            f"{wheel}[{extra}]",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"installing {wheel.name} failed:\n{proc.stderr[-3000:]}")
    return python


def venv_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would make another venv's python see this one's
    packages (PYTHONPATH, VIRTUAL_ENV, the user site) or nbops' own settings."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("NBOPS_")}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env
