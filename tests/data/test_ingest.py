"""The ingest stage on small generated tables: counts add up, nothing is lost, schema is reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from nbops.config.params import IngestParams
from nbops.data.ingest import ingest, simulator_schema
from nbops.data.schema import TableSchema
from nbops.data.validate import REASON_COLUMN, ROW_COLUMN
from nbops.errors import DataError

N = 200
# 0-based positions of the bad rows, and what is wrong with them.
BAD = {17: ("income", "abc"), 64: ("month", "2023-13"), 150: ("y", None)}


def _table(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "customer_email": [f"client{i:04d}@mail.example" for i in range(N)],
            "month": [f"2023-{i % 12 + 1:02d}" for i in range(N)],
            "income": rng.uniform(0, 100, N).round(2).astype(str),
            "grade": rng.choice(["A", "B", "C"], N),
            "y": rng.choice(["0", "1"], N),
        }
    )
    for pos, (col, value) in BAD.items():
        df.loc[pos, col] = value
    return df


def _products(folder: Path) -> dict[str, Path]:
    return {
        "raw": folder / "data" / "raw.parquet",
        "valid": folder / "data" / "valid.parquet",
        "quarantine": folder / "data" / "quarantine.parquet",
        "summary": folder / "reports" / "ingest_summary.json",
        "profile": folder / "reports" / "profile.json",
    }


def _run(project: Path, csv: Path, out: str = "out", **params):
    products = _products(project / out)
    result = ingest(
        IngestParams(data=str(csv), target="y", tracking="disabled", **params),
        project=project,
        **products,
    )
    return result, products


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "loans.csv"
    _table().to_csv(path, index=False)
    return path


def test_counts_add_up_and_quarantine_holds_exactly_the_bad_rows(tmp_path, csv):
    result, products = _run(tmp_path, csv)
    summary = json.loads(products["summary"].read_text())
    assert summary["rows_read"] == N
    assert summary["rows_quarantined"] == len(BAD)
    assert summary["rows_valid"] + summary["rows_quarantined"] == summary["rows_read"]
    assert sum(r["rows"] for r in summary["quarantine_reasons"]) == len(BAD)
    assert {r["column"] for r in summary["quarantine_reasons"]} == {col for col, _ in BAD.values()}

    valid = pd.read_parquet(products["valid"])
    quarantine = pd.read_parquet(products["quarantine"])
    assert len(valid) == N - len(BAD)
    assert quarantine[ROW_COLUMN].tolist() == sorted(p + 1 for p in BAD)
    for _, record in quarantine.iterrows():
        col, value = BAD[record[ROW_COLUMN] - 1]
        assert record[REASON_COLUMN].startswith(f"{col}:")
        if value is not None:
            assert repr(value) in record[REASON_COLUMN]
            assert record[col] == value  # kept as written

    # The raw snapshot is exactly what was read.
    raw = pd.read_parquet(products["raw"])
    pd.testing.assert_frame_equal(raw, pd.read_csv(csv, dtype=str), check_dtype=False)
    # The valid rows are the good input rows, typed.
    good = _table().drop(index=list(BAD)).reset_index(drop=True)
    np.testing.assert_allclose(valid["income"].to_numpy(float), good["income"].astype(float).to_numpy())
    assert result.validation.n_rows == N


def test_schema_is_inferred_on_first_use_and_reused_with_edits(tmp_path, csv):
    first, products = _run(tmp_path, csv)
    schema_file = tmp_path / "schemas" / "loans.schema.yaml"
    assert first.schema_created is True
    assert first.schema_path == schema_file and schema_file.exists()
    assert TableSchema.load(schema_file).to_dict() == first.schema.to_dict()

    # The user edits the schema: income must be at most 95, and grade is dropped from the features.
    raw = yaml.safe_load(schema_file.read_text())
    for col in raw["columns"]:
        if col["name"] == "income":
            col["max"] = 95.0
        if col["name"] == "grade":
            col["role"] = "ignore"
    schema_file.write_text(yaml.safe_dump(raw, sort_keys=False))

    second, products = _run(tmp_path, csv, out="out2")
    assert second.schema_created is False
    assert second.schema.column("income").max == 95.0
    assert second.schema.column("grade").role == "ignore"
    assert "grade" not in [c.name for c in second.schema.features]
    incomes = pd.to_numeric(_table()["income"], errors="coerce")
    over = set(np.flatnonzero(incomes.to_numpy() > 95))
    assert over, "the example needs incomes above the edited maximum"
    expected_bad = sorted({p + 1 for p in set(BAD) | over})
    quarantine = pd.read_parquet(products["quarantine"])
    assert quarantine[ROW_COLUMN].tolist() == expected_bad
    assert json.loads(products["summary"].read_text())["schema_created"] is False


def test_schema_with_another_target_is_refused(tmp_path, csv):
    _run(tmp_path, csv)
    schema_file = tmp_path / "schemas" / "loans.schema.yaml"
    with pytest.raises(DataError) as info:
        ingest(
            IngestParams(data=str(csv), target="grade", tracking="disabled"),
            project=tmp_path,
            **_products(tmp_path / "again"),
        )
    assert info.value.file == str(schema_file)


def test_fingerprint_same_file_same_print_changed_cell_different(tmp_path, csv):
    first, _ = _run(tmp_path, csv, out="a")
    second, _ = _run(tmp_path, csv, out="b")
    assert first.fingerprint == second.fingerprint
    assert first.source_sha256 == second.source_sha256

    changed = tmp_path / "changed" / "loans.csv"
    changed.parent.mkdir()
    df = _table()
    df.loc[3, "income"] = str(float(df.loc[3, "income"]) + 1)
    df.to_csv(changed, index=False)
    third, _ = _run(tmp_path, changed, out="c")
    assert third.fingerprint != first.fingerprint


def test_too_many_bad_rows_raise_after_writing_the_quarantine(tmp_path, csv):
    products = _products(tmp_path / "out")
    with pytest.raises(DataError) as info:
        ingest(
            IngestParams(data=str(csv), target="y", tracking="disabled", max_quarantine_fraction=0.01),
            project=tmp_path,
            **products,
        )
    err = info.value
    assert err.file == str(csv)
    assert err.rows == sorted(p + 1 for p in BAD)
    assert "max_quarantine_fraction=0.01" in str(err)
    assert str(products["quarantine"]) in str(err)
    quarantine = pd.read_parquet(products["quarantine"])
    assert quarantine[ROW_COLUMN].tolist() == sorted(p + 1 for p in BAD)
    assert quarantine[REASON_COLUMN].notna().all()


def test_pii_values_reach_neither_valid_rows_nor_profile_nor_summary(tmp_path, csv):
    df = _table()
    # 'contact' is not pii by its name: it is marked in the settings.
    df["contact"] = [f"+44 7700 {i:06d}" for i in range(N)]
    df.to_csv(csv, index=False)
    result, products = _run(tmp_path, csv, pii_columns=["contact"])
    assert set(result.schema.private) == {"customer_email", "contact"}
    valid = pd.read_parquet(products["valid"])
    assert "customer_email" not in valid.columns and "contact" not in valid.columns
    secrets = df["customer_email"].tolist() + df["contact"].tolist()
    cells = set(valid.astype(str).to_numpy().ravel())
    assert not cells & set(secrets)
    for name in ("profile", "summary"):
        text = products[name].read_text()
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{name} JSON holds pii values: {leaked[:3]}"
        assert "@mail.example" not in text
    assert "customer_email" not in json.loads(products["profile"].read_text())["columns"]


def test_pii_setting_over_an_existing_schema_keeps_values_out_of_the_summary(tmp_path, csv):
    df = _table()
    df["contact"] = np.resize(["ann@x.org", "bob@y.org", "cy@z.org"], N)
    df.to_csv(csv, index=False)
    _run(tmp_path, csv, out="a")  # 'contact' is inferred as a categorical feature
    df.loc[5, "contact"] = "dee@w.org"  # a new person
    df.to_csv(csv, index=False)
    _, products = _run(tmp_path, csv, out="b", pii_columns=["contact"])
    text = products["summary"].read_text()
    leaked = [s for s in ["ann@x.org", "bob@y.org", "cy@z.org", "dee@w.org"] if s in text]
    assert leaked == []
    quarantine = pd.read_parquet(products["quarantine"])
    assert 6 not in quarantine[ROW_COLUMN].tolist()  # a pii value is no reason to quarantine


def test_parquet_input_is_read_typed(tmp_path):
    df = _table().drop(index=list(BAD)).reset_index(drop=True)
    df["income"] = df["income"].astype(float)
    df["y"] = df["y"].astype(int)
    path = tmp_path / "typed.parquet"
    df.to_parquet(path, index=False)
    result, products = _run(tmp_path, path)
    assert result.validation.n_quarantined == 0
    assert len(pd.read_parquet(products["valid"])) == len(df)
    assert (tmp_path / "schemas" / "typed.schema.yaml").exists()


def test_simulated_source(tmp_path):
    products = _products(tmp_path / "sim")
    result = ingest(
        IngestParams(data="simulate", rows=2000, seed=5, tracking="disabled"),
        project=tmp_path,
        **products,
    )
    summary = json.loads(products["summary"].read_text())
    assert summary["rows_read"] == 2000
    assert summary["rows_valid"] + summary["rows_quarantined"] == 2000
    assert summary["dataset"] == "credit_risk" and summary["task_type"] == "binary"
    assert result.schema_created is True
    assert result.schema.to_dict() == simulator_schema().to_dict()
    assert (tmp_path / "schemas" / "credit_risk.schema.yaml").exists()
    raw = pd.read_parquet(products["raw"])
    assert len(raw) == 2000
    valid = pd.read_parquet(products["valid"])
    assert set(valid["default"].unique()) == {0.0, 1.0}
    assert not set(result.schema.private) & set(valid.columns)
