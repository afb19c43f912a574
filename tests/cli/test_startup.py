"""Start-up: `nbops --help` and each command's `--help` build the whole parser without importing the
heavy libraries, which each command imports when it runs (the imports are checked, never timed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "numpy", "pyarrow", "lightgbm", "sklearn", "pydantic", "matplotlib", "yaml", "scipy")
PROBE = """
import json, sys
from nbops.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["drift", "--help"], ["estimate", "--help"], ["monitor", "--help"], ["models", "--help"]]
)
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: nbops" in proc.stdout
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == [], f"`nbops {' '.join(argv)}` imported {imported} before any command ran"
