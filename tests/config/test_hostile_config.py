"""Hostile or careless settings get a clear message where they are first read (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.config.spec import load_yaml
from nbops.errors import ConfigError
from nbops.tracking import artifact_name
from tests.support import nbops_in_process

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"rows: 5000\n# caf\xe9\n", "line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
        (b"x: &a [*a]\n", "key 'x' refers to itself through a YAML alias"),
        (b"x: &a {y: *a}\n", "key 'x' refers to itself through a YAML alias"),
        (BOMB.encode(), "expands through YAML aliases to more than 100,000 values (an alias bomb)"),
        (b"rows: [1, 2\n", "is not valid YAML"),
    ],
)
def test_an_unreadable_env_file_names_the_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "env.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_an_ordinary_shared_alias_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("common: &c [a, b]\nsegment_columns: *c\n")
    assert load_yaml(path) == {"common": ["a", "b"], "segment_columns": ["a", "b"]}


def test_rows_beyond_what_a_machine_holds_fail_the_check(project: Path) -> None:
    proc = nbops_in_process(project, "check", "--set", "rows=100000000000")
    assert proc.returncode == 2 and "'rows' expected an integer (≥ 100, ≤ 50000000), found 100000000000" in proc.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loans 2024 (final)", "loans-2024-final"),
        ("crédit/risque", "cr-dit-risque"),
        ("credit_risk_model", "credit_risk_model"),
        ("???", "artifact"),
        ("x" * 300, "x" * 128),
    ],
)
def test_artifact_names_are_what_wandb_accepts(name: str, expected: str) -> None:
    assert artifact_name(name) == expected
