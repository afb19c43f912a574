"""The stage notebooks as committed: checked outputs only where nbval checks them, test markers in
cell tags (never in the source a report shows), and parameters cells that declare only what
Ploomber injects (any value shown is the stage model's default)."""

from __future__ import annotations

import json

from nbops.config.spec import notebook_parameters
from tests.support import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_every_stage_notebook_has_a_checked_deterministic_output() -> None:
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        checked = [c for c in cells if "nbval-check-output" in _tags(c)]
        assert checked, f"{path.name} has no cell checked by nbval (tag a deterministic cell nbval-check-output)"
        assert all(c["outputs"] and c["metadata"].get("keep_output") for c in checked), (
            f"{path.name}: checked cell without a committed output (run `make notebook-outputs`)"
        )
        others = [c for c in cells if c["cell_type"] == "code" and c not in checked]
        assert not any(c["outputs"] for c in others), f"{path.name}: outputs committed outside checked cells"


def test_test_markers_are_cell_tags_never_source_comments() -> None:
    """A ``# NBVAL_...`` comment is code, and code is shown in the HTML report: the markers live in
    cell tags, and scaffolding a reader does not need (tagged report-hide) is nbval-checked."""
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        for number, cell in enumerate(cells):
            source = "".join(cell["source"])
            assert "NBVAL" not in source.upper().replace("-", "_"), (
                f"{path.name} cell {number}: an nbval marker in the source; use the tag (nbval-check-output, "
                "nbval-ignore-output, nbval-skip)"
            )
            if "report-hide" in _tags(cell):
                assert "nbval-check-output" in _tags(cell), (
                    f"{path.name} cell {number}: hidden from the report but not checked by nbval"
                )


def test_notebooks_declare_only_what_ploomber_needs_and_any_default_is_the_models() -> None:
    """One home per parameter: the stage's typed model. A parameters cell declares ``upstream`` and
    ``product`` (Ploomber injects there); a value it shows for a parameter must be the model's default."""
    from nbops.config.params import STAGES

    for path in NOTEBOOKS:
        params = notebook_parameters(path)
        assert params.pop("product") is None and params.pop("upstream") is None, path.name
        model = STAGES[path.stem.split("_", 1)[1]]
        for key, value in params.items():
            assert key in model.model_fields, f"{path.name}: '{key}' is not a parameter of {model.__name__}"
            assert value == model.model_fields[key].get_default(call_default_factory=True), (
                f"{path.name}: '{key} = {value!r}' differs from {model.__name__}'s default"
            )
