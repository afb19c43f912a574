"""nbops.config.notebook_params: a notebook of your own is typed by its annotated parameters cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbops.config.notebook_params import notebook_model, task_model
from nbops.config.params import STAGES, validate_params
from nbops.config.spec import notebook_parameters, parameters_cell
from nbops.errors import ConfigError
from tests.support import REPO


def notebook(tmp_path: Path, parameters: str, *, tagged: bool = True, name: str = "mine.ipynb") -> Path:
    path = tmp_path / name
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"] if tagged else []}, "source": parameters}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


CELL = """\
from typing import Annotated, Literal
from pydantic import Field

upstream = None
product = None
threshold: float = 0.5
segments: list[str] = []
min_rows: Annotated[int, Field(ge=10)] = 50
mode: Literal["fast", "full"] = "fast"
label = "loans"
window: int
"""


def test_the_annotated_cell_is_the_model(tmp_path: Path) -> None:
    model = notebook_model(notebook(tmp_path, CELL), "my_review")
    assert model.__name__ == "MyReviewParams"
    assert set(model.model_fields) == {"threshold", "segments", "min_rows", "mode", "label", "window"}
    params: Any = validate_params(model, {"window": 3}, where="t")
    assert (params.threshold, params.segments, params.min_rows, params.mode, params.label, params.window) == (
        0.5,
        [],
        50,
        "fast",
        "loans",
        3,
    )
    assert validate_params(model, {"window": "4", "threshold": "0.25"}, where="t").threshold == 0.25  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": 1, "threshold": "abc"}, "t: 'threshold' expected a number, found 'abc' (str)"),
        ({"window": 1, "treshold": 0.2}, "t: unknown key 'treshold'. Did you mean 'threshold'?"),
        ({"window": 1, "min_rows": 3}, "t: 'min_rows' expected an integer (≥ 10), found 3 (int)"),
        ({"window": 1, "mode": "slow"}, "t: 'mode' expected one of 'fast', 'full', found 'slow'"),
        ({"window": 1, "segments": "region"}, "t: 'segments' expected"),
        ({"window": 1, "label": 3}, "t: 'label' expected"),  # an unannotated literal's type is its default's
        ({}, "t: 'window' is required (an integer) and was not given; add 'window: ...'"),
    ],
)
def test_values_get_the_built_in_stages_messages(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    model = notebook_model(notebook(tmp_path, CELL), "mine")
    with pytest.raises(ConfigError) as err:
        validate_params(model, values, where="t")
    assert message in str(err.value)


def test_reading_the_cell_never_runs_the_users_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cell = f"import os\nos.system('touch {marker}')\nfrom os import system\nthreshold: float = 0.5\n"
    model = notebook_model(notebook(tmp_path, cell), "mine")
    assert set(model.model_fields) == {"threshold"} and not marker.exists()


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("x: Decimal = 1\n", "mine.ipynb line 1: the type of parameter 'x' cannot be read (Decimal"),
        ("import os\nx: str = os.getcwd()\n", "mine.ipynb line 2: the default of parameter 'x' is not a literal"),
        ("x: int = 'many'\n", "the default of parameter 'x' ('many') is not a valid int"),
        ("x: float = \n", "mine.ipynb: the parameters cell does not parse (line 1"),
    ],
)
def test_an_unusable_declaration_names_the_line_and_parameter(tmp_path: Path, cell: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        notebook_model(notebook(tmp_path, cell), "mine")
    assert message in str(err.value)


def test_a_notebook_without_a_parameters_cell_says_how_to_add_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cell tagged 'parameters'.*add the tag 'parameters'"):
        parameters_cell(notebook(tmp_path, "x: int = 1\n", tagged=False))


def test_built_in_stages_keep_their_models_and_the_cell_parses_annotations(tmp_path: Path) -> None:
    assert task_model("train", Path("unused")) is STAGES["train"]
    assert notebook_parameters(notebook(tmp_path, CELL)) == {
        "upstream": None,
        "product": None,
        "threshold": 0.5,
        "segments": [],
        "min_rows": 50,
        "mode": "fast",
        "label": "loans",
        "window": ...,
    }


def test_the_model_follows_an_edited_cell(tmp_path: Path) -> None:
    path = notebook(tmp_path, "x: int = 1\n")
    assert set(task_model("mine", path).model_fields) == {"x"}
    path.write_text(path.read_text().replace("x: int = 1", "x: int = 1\\ny: float = 2.0"))
    assert set(task_model("mine", path).model_fields) == {"x", "y"}


def test_the_worked_example_declares_what_the_readme_says() -> None:
    model = task_model("segment_review", REPO / "notebooks/examples/segment_review.ipynb")
    assert set(model.model_fields) == {"segment_columns", "threshold", "min_rows", "min_ratio"}
    with pytest.raises(ConfigError, match="'threshold' expected a number \\(> 0, < 1\\), found 'abc'"):
        validate_params(model, {"threshold": "abc"}, where="t")
