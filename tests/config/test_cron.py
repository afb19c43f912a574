"""Cron expressions (``schedule`` in env.yaml, ``--schedule``): what is valid, normalised, and what an
error names (the field, what was expected, what was found)."""

from __future__ import annotations

import pytest

from nbops.config.cron import CronError, validate_cron

NEVER = "0 0 31 2 *"  # 31 February: never fires


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("0 6 * * *", "0 6 * * *"),
        ("  */15   1-5/2 1,15 jan-mar   mon-fri ", "*/15 1-5/2 1,15 jan-mar mon-fri"),
        ("0 6 * JAN SUN", "0 6 * JAN SUN"),
        ("0,30 8-18 * * 1-5", "0,30 8-18 * * 1-5"),
        ("59 23 31 12 7", "59 23 31 12 7"),
        ("00 06 01 * 0", "00 06 01 * 0"),
        (NEVER, NEVER),
    ],
)
def test_valid_expressions(expression: str, normalised: str) -> None:
    assert validate_cron(expression) == normalised


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 6 * *", ["5 fields", "found 4"]),
        ("0 6 * * * *", ["5 fields", "found 6"]),
        ("", ["5 fields", "found 0"]),
        ("@daily", ["shorthand", "'0 0 * * *'"]),
        ("60 * * * *", ["field 1 (minute)", "0-59", "60 is out of range 0-59"]),
        ("0 24 * * *", ["field 2 (hour)", "a number 0-23", "24 is out of range"]),
        ("0 0 0 * *", ["field 3 (day of month)", "1-31", "0 is out of range 1-31"]),
        ("0 0 * 13 *", ["field 4 (month)", "1-12", "13 is out of range"]),
        ("0 0 * * 8", ["field 5 (day of week)", "0-7", "8 is out of range"]),
        ("0 0 * foo *", ["field 4 (month)", "names (jan", "'foo' is neither a number nor one of the names"]),
        ("0 0 * * mon-funday", ["field 5 (day of week)", "'funday'"]),
        ("x 0 * * *", ["field 1 (minute)", "'x' is not a number"]),
        ("1,,2 * * * *", ["field 1 (minute)", "empty item"]),
        ("1, * * * *", ["field 1 (minute)", "empty item"]),
        ("5-1 * * * *", ["field 1 (minute)", "runs backwards"]),
        ("*/0 * * * *", ["field 1 (minute)", "step /0 must be between 1 and 59"]),
        ("*/60 * * * *", ["field 1 (minute)", "step /60"]),
        ("0 */24 * * *", ["field 2 (hour)", "step /24 must be between 1 and 23"]),
        ("5/10 * * * *", ["field 1 (minute)", "a step needs a range or '*'", "5-59/10"]),
        ("*/2-4 * * * *", ["field 1 (minute)", "is not '*', a value, a range or a step"]),
        ("0 6 * * L", ["field 5 (day of week)"]),
        ("0 6 ? * *", ["field 3 (day of month)"]),
    ],
)
def test_invalid_expressions_name_the_field_what_was_expected_and_found(expression: str, words: list[str]) -> None:
    with pytest.raises(CronError) as info:
        validate_cron(expression, where="env.yaml: schedule")
    message = str(info.value)
    assert message.startswith("env.yaml: schedule: ")
    for word in words:
        assert word in message, message
    if words[0].startswith("field "):
        assert "expected:" in message and "found:" in message
