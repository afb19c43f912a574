"""Write environment.yml (for conda users) from requirements.lock, so both name the same pins.

Run by `make lock`; tests/test_environment.py checks the two agree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lock_pins(lock: Path) -> list[str]:
    pins = []
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+", line):
            pins.append(line.split(";")[0].strip())
    return pins


def main() -> int:
    pins = lock_pins(ROOT / "requirements.lock")
    lines = [
        "# For conda users: `conda env create -f environment.yml && conda activate nbops`.",
        "# Generated from requirements.lock by requirements/write_environment_yml.py (`make lock`);",
        "# the pins are the lock's, and tests/test_environment.py checks that they agree.",
        "name: nbops",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        *[f"      - {p}" for p in pins],
        "      - -e .",
    ]
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
