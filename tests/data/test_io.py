"""read_table refuses what cannot be a table, keeps CSV text as written; writes are atomic."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbops.data.io import (
    SUPPORTED_SUFFIXES,
    atomic_path,
    file_sha256,
    read_table,
    write_json,
    write_parquet,
    write_text,
    write_with,
)
from nbops.errors import DataError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- refusing bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["table.xlsx", "table.txt", "table"])
def test_unknown_suffix_is_refused_naming_it_and_the_supported_ones(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    text = str(info.value)
    assert str(path) in text
    suffix = path.suffix or "(no suffix)"
    assert f"'{suffix}'" in text
    for supported in SUPPORTED_SUFFIXES:
        assert supported in text


def test_missing_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.file == str(path)
    assert "not found" in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_zero_byte_file_is_refused(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.file == str(path)
    assert "0 bytes" in str(info.value)


def test_header_only_csv_is_refused(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.file == str(path)
    assert "no data rows" in str(info.value)
    assert "3 columns and 0 rows" in str(info.value)


def test_parquet_without_rows_is_refused(tmp_path):
    path = tmp_path / "empty_rows.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), path)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert "no data rows" in str(info.value)


def test_corrupt_parquet_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.file == str(path)


def test_duplicate_csv_column_names_are_refused_naming_the_column(tmp_path):
    # pandas would silently rename the second one to 'amount.1'.
    path = tmp_path / "dupes.csv"
    path.write_text("id,amount,region,amount\n1,10,north,11\n2,20,south,21\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    err = info.value
    assert err.file == str(path)
    assert err.column == "amount"
    assert "duplicate column names" in str(err)
    assert "positions [2, 4]" in str(err)


def test_duplicate_parquet_column_names_are_refused_naming_the_column(tmp_path):
    path = tmp_path / "dupes.parquet"
    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array(["a", "b"]), pa.array([3, 4])], names=["x", "y", "x"])
    pq.write_table(table, path)
    assert pq.read_schema(path).names == ["x", "y", "x"]  # the file really holds the duplicate
    with pytest.raises(DataError) as info:
        read_table(path)
    err = info.value
    assert err.file == str(path)
    assert err.column == "x"
    assert "duplicate column names" in str(err)


def test_duplicate_parquet_column_names_are_refused(tmp_path):
    # Whatever the message, a table with two 'x' columns must never be returned.
    path = tmp_path / "dupes.parquet"
    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["x", "x"])
    pq.write_table(table, path)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.file == str(path)


# --- reading ------------------------------------------------------------------------------------


def test_csv_values_are_kept_as_text(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("code,amount,flag\n007,1.50,TRUE\n0100,2e3,false\n,3,\n")
    df = read_table(path)
    assert list(df.columns) == ["code", "amount", "flag"]
    assert df["code"].tolist()[:2] == ["007", "0100"]
    assert df["amount"].tolist() == ["1.50", "2e3", "3"]
    assert df["flag"].tolist()[:2] == ["TRUE", "false"]
    assert pd.isna(df.loc[2, "code"]) and pd.isna(df.loc[2, "flag"])
    for col in df.columns:
        assert not pd.api.types.is_numeric_dtype(df[col]), col
        assert not pd.api.types.is_bool_dtype(df[col]), col


def test_parquet_round_trip_keeps_types(tmp_path):
    df = pd.DataFrame({"a": [1.5, 2.5, None], "b": ["x", "y", "z"], "c": [1, 2, 3]})
    path = write_parquet(df, tmp_path / "sub" / "t.parquet")
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert pd.api.types.is_float_dtype(back["a"]) and pd.api.types.is_integer_dtype(back["c"])


def test_pq_suffix_is_read_as_parquet(tmp_path):
    df = pd.DataFrame({"a": [1, 2]})
    path = tmp_path / "t.pq"
    df.to_parquet(path, index=False)
    assert read_table(path)["a"].tolist() == [1, 2]


# --- atomic writes ------------------------------------------------------------------------------


def test_atomic_writes_leave_no_temp_file(tmp_path):
    write_json({"b": 1, "a": [1, 2]}, tmp_path / "x.json")
    write_text("hello", tmp_path / "x.txt")
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    write_with(lambda p: p.write_bytes(b"\x00\x01"), tmp_path / "x.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.json", "x.parquet", "x.txt"]
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "model.txt"
    dest.write_text("old content")

    def writer(tmp):
        tmp.write_text("half written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_with(writer, dest)
    assert dest.read_text() == "old content"
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt"]


def test_failed_parquet_write_keeps_the_old_file(tmp_path):
    dest = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), dest)
    before = file_sha256(dest)
    unwritable = pd.DataFrame({"a": [object()]})  # pyarrow cannot convert a bare object
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type
        write_parquet(unwritable, dest)
    assert file_sha256(dest) == before
    assert _leftovers(tmp_path) == []


def test_atomic_path_creates_the_folder_and_replaces_in_place(tmp_path):
    dest = tmp_path / "a" / "b" / "out.txt"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent
        assert tmp != dest
        tmp.write_text("new")
        assert not dest.exists()  # nothing visible until the block succeeds
    assert dest.read_text() == "new"
    assert _leftovers(dest.parent) == []


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 5000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()
