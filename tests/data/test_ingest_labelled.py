"""Ingest with labelled production months (continuous training): rows are appended through the same
validation and quarantine as the main table, the summary names the months, and without
``labelled_through`` nothing changes at all."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nbops.config.params import IngestParams
from nbops.data.ingest import BATCH_COLUMN, MAIN_BATCH, ingest
from nbops.data.simulate import simulate_batch, write_simulation
from nbops.data.validate import REASON_COLUMN, ROW_COLUMN
from nbops.errors import ConfigError, DataError

HISTORY_ROWS = 400
BATCH_ROWS = 150


def _products(folder: Path) -> dict[str, Path]:
    return {
        "raw": folder / "raw.parquet",
        "valid": folder / "valid.parquet",
        "quarantine": folder / "quarantine.parquet",
        "summary": folder / "ingest_summary.json",
        "profile": folder / "profile.json",
    }


def _run(project: Path, out: str, **params):
    products = _products(project / out)
    result = ingest(IngestParams(rows=HISTORY_ROWS, seed=7, tracking="disabled", **params), project=project, **products)
    return result, products


@pytest.fixture
def production(tmp_path: Path) -> Path:
    """Monitored months 2025-01..2025-03 as the monitor task stores them (2025-01 as CSV, the rest Parquet)."""
    folder = tmp_path / "production"
    for k in (1, 2, 3):
        df, truth = simulate_batch(k, rows=BATCH_ROWS, seed=7)
        write_simulation(df, truth, folder / f"{truth.months[0]}.{'csv' if k == 1 else 'parquet'}")
    return folder


def test_without_labelled_through_outputs_are_byte_identical(tmp_path: Path, production: Path) -> None:
    """None (and Ploomber's 'none') leave every product exactly as before: the checked notebook outputs
    and the reproducibility tests depend on it."""
    _run(tmp_path, "first")  # writes schemas/credit_risk.schema.yaml: later runs reuse it
    _, plain = _run(tmp_path, "plain")
    _, with_none = _run(tmp_path, "none", labelled_through=None, labelled_batches=str(production))
    _, with_text = _run(tmp_path, "text", labelled_through="none", labelled_batches=str(production))
    for key in ("valid", "quarantine", "profile", "summary"):
        assert plain[key].read_bytes() == with_none[key].read_bytes() == with_text[key].read_bytes(), key
    summary = json.loads(plain["summary"].read_text())
    assert not any(k.startswith("labelled") for k in summary)
    assert BATCH_COLUMN not in pd.read_parquet(plain["quarantine"]).columns


def test_labelled_months_are_appended_and_named(tmp_path: Path, production: Path) -> None:
    result, products = _run(tmp_path, "out", labelled_through="2025-02", labelled_batches=str(production))
    summary = json.loads(products["summary"].read_text())
    assert summary["labelled_through"] == "2025-02"
    assert summary["labelled_months"] == ["2025-01", "2025-02"]  # 2025-03 is later than labelled_through
    assert summary["labelled_rows_read"] == summary["labelled_rows_added"] == 2 * BATCH_ROWS
    assert summary["rows_read"] == HISTORY_ROWS + 2 * BATCH_ROWS
    assert summary["rows_valid"] + summary["rows_quarantined"] == summary["rows_read"]
    assert [b["file"] for b in summary["labelled_batches"]] == [
        str(production / "2025-01.csv"),
        str(production / "2025-02.parquet"),
    ]
    assert all(len(b["sha256"]) == 64 for b in summary["labelled_batches"])
    assert "labelled production months 2025-01..2025-02" in summary["source"]
    valid = pd.read_parquet(products["valid"])
    assert len(valid) == HISTORY_ROWS + 2 * BATCH_ROWS
    months = valid["month"].dt.strftime("%Y-%m")
    assert (months == "2025-01").sum() == (months == "2025-02").sum() == BATCH_ROWS
    assert "2025-03" not in set(months)
    # the CSV month went through the same typing as the Parquet ones
    assert valid["annual_income"].dtype == "float64" and valid["default"].notna().all()
    assert result.validation.n_rows == summary["rows_read"]


def test_a_bad_row_in_a_month_is_quarantined_with_its_month(tmp_path: Path, production: Path) -> None:
    path = production / "2025-02.parquet"
    df = pd.read_parquet(path)
    df.loc[4, "loan_purpose"] = "spaceship"
    df.to_parquet(path, index=False)
    _, products = _run(tmp_path, "out", labelled_through="2025-02", labelled_batches=str(production))
    summary = json.loads(products["summary"].read_text())
    assert summary["rows_quarantined"] == 1
    assert summary["labelled_rows_added"] == 2 * BATCH_ROWS - 1
    assert summary["quarantine_reasons"][0]["batch"] == "2025-02"
    assert summary["quarantine_reasons"][0]["column"] == "loan_purpose"
    month = next(b for b in summary["labelled_batches"] if b["month"] == "2025-02")
    assert (month["rows_read"], month["rows_valid"], month["rows_quarantined"]) == (BATCH_ROWS, BATCH_ROWS - 1, 1)
    quarantine = pd.read_parquet(products["quarantine"])
    assert len(quarantine) == 1
    row = quarantine.iloc[0]
    assert row[BATCH_COLUMN] == "2025-02" and row[ROW_COLUMN] == 5  # 1-based row in its own file
    assert row["loan_purpose"] == "spaceship" and "loan_purpose" in row[REASON_COLUMN]
    assert list(quarantine.columns[:2]) == [ROW_COLUMN, BATCH_COLUMN]


def test_main_table_rows_are_tagged_main(tmp_path: Path, production: Path) -> None:
    csv = tmp_path / "history.csv"
    df, _ = simulate_batch(1, rows=300, seed=3)  # any table with the simulator's columns
    df["month"] = "2024-06"
    df["age"] = df["age"].astype(str)
    df.loc[2, "age"] = "old"
    df.to_csv(csv, index=False)
    (tmp_path / "schemas").mkdir()
    from nbops.data.ingest import simulator_schema

    simulator_schema().save(tmp_path / "schemas" / "history.schema.yaml")
    _, products = _run(tmp_path, "out", data=str(csv), labelled_through="2025-01", labelled_batches=str(production))
    quarantine = pd.read_parquet(products["quarantine"])
    assert quarantine[BATCH_COLUMN].tolist() == [MAIN_BATCH]
    assert quarantine[ROW_COLUMN].tolist() == [3]


def test_a_month_without_a_file_is_a_clear_error(tmp_path: Path, production: Path) -> None:
    with pytest.raises(DataError) as err:
        _run(tmp_path, "out", labelled_through="2025-09", labelled_batches=str(production))
    text = str(err.value)
    assert "labelled_through=2025-09" in text and "2025-09.parquet" in text
    assert "2025-01, 2025-02, 2025-03" in text  # what was found
    assert "what to do" in text


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _run(tmp_path, "out", labelled_through="2025-01", labelled_batches=str(tmp_path / "nowhere"))


def test_a_malformed_month_is_a_config_error(tmp_path: Path, production: Path) -> None:
    with pytest.raises(ConfigError, match="YYYY-MM"):
        _run(tmp_path, "out", labelled_through="2025-13", labelled_batches=str(production))


def test_months_whose_labels_have_not_arrived(tmp_path: Path, production: Path) -> None:
    """An earlier month without labels is skipped and recorded; the month asked for must have them."""
    path = production / "2025-02.parquet"
    pd.read_parquet(path).drop(columns=["default"]).to_parquet(path, index=False)
    _, products = _run(tmp_path, "out", labelled_through="2025-03", labelled_batches=str(production))
    summary = json.loads(products["summary"].read_text())
    assert summary["labelled_months"] == ["2025-01", "2025-03"]
    assert [s["month"] for s in summary["labelled_skipped"]] == ["2025-02"]
    assert "no labels yet" in summary["labelled_skipped"][0]["reason"]
    with pytest.raises(DataError, match="labels have not arrived"):
        _run(tmp_path, "again", labelled_through="2025-02", labelled_batches=str(production))


def test_too_many_bad_rows_in_months_fail_naming_the_month_files(tmp_path: Path, production: Path) -> None:
    path = production / "2025-03.parquet"
    df = pd.read_parquet(path)
    df["loan_purpose"] = "spaceship"
    df.to_parquet(path, index=False)
    with pytest.raises(DataError) as err:
        _run(tmp_path, "out", labelled_through="2025-03", labelled_batches=str(production), max_quarantine_fraction=0.1)
    text = str(err.value)
    assert str(path) in text and "2025-03: loan_purpose" in text
    # the quarantine file was written first, so the rows can be inspected
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert (quarantine[BATCH_COLUMN] == "2025-03").sum() == BATCH_ROWS
