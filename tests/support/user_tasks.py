"""The README's worked example of a notebook task of your own, added to a project copy as a user adds it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.project import REPO

EXAMPLE_TASK = "segment_review"


def readme_block(containing: str, language: str = "yaml") -> str:
    """The README's fenced ``language`` block that contains ``containing`` (exactly as a user copies it)."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"README: expected one {language} block containing {containing!r}, found {len(found)}"
    return found[0]


def add_example_task(project: Path, **replace: str) -> str:
    """Append the README's segment_review task to ``project``'s pipeline.yaml (``replace``: a line's
    ``key: value`` text for another, e.g. ``threshold='threshold: "abc"'``) and return the YAML added."""
    block = readme_block(f"name: {EXAMPLE_TASK}")
    for key, line in replace.items():
        block, count = re.subn(rf"^(\s*){key}:.*$", lambda m, line=line: m.group(1) + line, block, flags=re.M)
        assert count == 1, f"no '{key}:' line in the README's task"
    spec = project / "pipeline.yaml"
    spec.write_text(spec.read_text().rstrip("\n") + "\n\n" + block)
    return block
