"""DataError renders every part a user needs; format_rows keeps long row lists short."""

from __future__ import annotations

import pytest

from nbops.errors import ConfigError, DataError, NbopsError, closest_names, format_rows, missing_column_found, shown


def test_data_error_renders_file_column_rows_expected_found_and_hint():
    err = DataError(
        "values out of range",
        file="data/raw.csv",
        column="income",
        rows=[3, 17, 42],
        expected="a number ≥ 0",
        found="-5",
        hint="fix the extract",
    )
    text = str(err)
    lines = text.splitlines()
    assert lines[0] == "values out of range"
    assert "file data/raw.csv" in text
    assert "column 'income'" in text
    assert "rows 3, 17, 42" in text
    assert "expected: a number ≥ 0" in text
    assert "found: -5" in text
    assert "what to do: fix the extract" in text
    # The structured parts stay available to callers.
    assert (err.file, err.column, err.rows, err.expected, err.found, err.hint) == (
        "data/raw.csv",
        "income",
        [3, 17, 42],
        "a number ≥ 0",
        "-5",
        "fix the extract",
    )


def test_data_error_omits_parts_that_were_not_given():
    text = str(DataError("the file is empty", file="x.csv"))
    assert text.splitlines() == ["the file is empty", "  where: file x.csv"]
    assert "expected" not in text and "found" not in text and "what to do" not in text
    assert str(DataError("just the problem")) == "just the problem"


def test_data_error_rows_are_truncated_in_the_message():
    err = DataError("bad rows", file="f.csv", rows=list(range(1, 26)))
    assert "rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 15 more" in str(err)
    assert err.rows == list(range(1, 26))  # the full list is kept on the object


def test_error_hierarchy():
    assert issubclass(DataError, NbopsError)
    assert issubclass(ConfigError, NbopsError)
    with pytest.raises(NbopsError):
        raise DataError("x")


@pytest.mark.parametrize(
    ("rows", "limit", "expected"),
    [
        ([], 10, ""),
        ([7], 10, "7"),
        ([1, 2, 3], 3, "1, 2, 3"),
        ([1, 2, 3, 4], 3, "1, 2, 3 and 1 more"),
        (list(range(1, 1215)), 3, "1, 2, 3 and 1,211 more"),
    ],
)
def test_format_rows(rows, limit, expected):
    assert format_rows(rows, limit=limit) == expected


def test_format_rows_default_limit_is_ten():
    rows = list(range(100, 131))
    shown = ", ".join(str(r) for r in rows[:10])
    assert format_rows(rows) == f"{shown} and {len(rows) - 10} more"


def test_values_are_shown_as_written_not_as_numpy_reprs() -> None:
    import numpy as np

    assert shown(np.int64(1)) == "1" and shown(np.str_("yes")) == "'yes'" and shown(np.float64(0.5)) == "0.5"


def test_a_column_differing_in_case_is_suggested_and_never_cut_from_the_list() -> None:
    columns = [f"feature_{i}" for i in range(60)] + ["Diagnosis"]
    assert closest_names("diagnosis", columns)[0] == "Diagnosis"
    text = missing_column_found("diagnosis", columns)
    assert text.startswith("no column 'diagnosis'; did you mean 'Diagnosis'?")
    assert "61 columns" in text and "and 21 more" in text
