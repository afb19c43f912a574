"""Refresh the checked outputs of the stage notebooks (`make notebook-outputs`).

Cells tagged ``nbval-check-output`` (nbval's cell tag; a tag, not a ``# NBVAL_CHECK_OUTPUT``
comment, so no test marker reaches a reader's report) also have ``keep_output: true`` in their
metadata, which nbstripout honours: their committed output is what ``pytest --nbval-lax`` compares a
fresh run against, so each stage has at least one deterministic output under test. Checked cells that
are test scaffolding rather than something a reader needs are tagged ``report-hide`` as well and left
out of the HTML report (pipeline.yaml). This script runs the notebooks in order in a temporary copy
of the project (with their default parameters, as nbval does) and copies only those outputs back into
the sources; every other output stays stripped.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import REPO, copy_project  # noqa: E402

CHECK_TAG = "nbval-check-output"


def main() -> int:
    # As tests/test_notebooks.py runs nbval: on their own the notebooks take the small sample's values.
    os.environ["NBOPS_ENV"] = "env.test.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        for source in sorted((REPO / "notebooks").glob("*.ipynb")):
            copy = project / "notebooks" / source.name
            nb = nbformat.read(copy, as_version=4)
            NotebookClient(
                nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(copy.parent)}}
            ).execute()
            original = json.loads(source.read_text())
            for cell, ran in zip(original["cells"], nb.cells, strict=True):
                if cell["cell_type"] == "code" and CHECK_TAG in cell.get("metadata", {}).get("tags", []):
                    cell["metadata"]["keep_output"] = True
                    cell["outputs"] = [dict(o) for o in ran.outputs]
                    # nbval compares only cells with an execution count ("unrun" cells are skipped).
                    cell["execution_count"] = 1
                    for output in cell["outputs"]:
                        if "execution_count" in output:
                            output["execution_count"] = 1
                    print(f"{source.name}: {''.join(o.get('text', '') for o in ran.outputs).strip()}")
            # nbformat's own layout, the one nbstripout (the git filter and the pre-commit hook) writes
            nbformat.write(nbformat.from_dict(original), source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
