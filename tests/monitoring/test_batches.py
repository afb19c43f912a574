"""nbops.monitoring.batches: reading a batch to monitor (CSV or Parquet, a clear error otherwise),
reading the REST API's prediction log as written by its own writer, and finding what is still to
monitor (batches not in the history yet; the active log every time, a rotated log once)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbops.data.simulate import simulate_batch
from nbops.errors import DataError
from nbops.monitoring.batches import pending_batches, read_frame, read_prediction_log
from nbops.monitoring.history import upsert_history
from nbops.runtime.serve import PredictionLog


def test_csv_and_parquet_read_back_the_same_table(tmp_path: Path) -> None:
    batch, _ = simulate_batch(1, rows=50, seed=3)
    batch.to_csv(tmp_path / "b.csv", index=False)
    batch.to_parquet(tmp_path / "b.pq", index=False)
    from_csv, from_parquet = read_frame(tmp_path / "b.csv"), read_frame(tmp_path / "b.pq")
    assert list(from_csv.columns) == list(from_parquet.columns) == list(batch.columns)
    pd.testing.assert_series_equal(from_csv["annual_income"], batch["annual_income"], check_exact=False)
    pd.testing.assert_frame_equal(from_parquet, batch)
    (tmp_path / "empty.csv").write_text("")
    assert read_frame(tmp_path / "empty.csv").empty  # an empty drop is an empty batch, not a crash


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("batch.xlsx", ["unknown file type", "'.xlsx'", "convert it to CSV or Parquet"]),
        ("profile.json", ["unknown file type", "a reference profile (.json) is accepted only as the REFERENCE"]),
        ("missing.csv", ["file not found"]),
    ],
)
def test_an_unusable_file_names_itself_and_what_to_do(tmp_path: Path, name: str, words: list[str]) -> None:
    path = tmp_path / name
    if not name.startswith("missing"):
        path.write_text("{}")
    with pytest.raises(DataError) as err:
        read_frame(path)
    message = str(err.value)
    assert str(path) in message and all(w in message for w in words), message


def _log(folder: Path, max_bytes: int = 50 << 20) -> PredictionLog:
    return PredictionLog(folder, max_bytes=max_bytes)


def test_the_prediction_log_is_one_row_per_record_with_its_score_and_version(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.append({"ts": 1.0, "model_version": "v0001", "records": [{"age": 30}, {"age": 41}], "predictions": [0.1, 0.2]})
    log.append({"ts": 2.0, "model_version": "v0002", "records": [{"age": float("nan")}], "predictions": [0.3]})
    log.close()
    (tmp_path / "predictions.jsonl").write_text((tmp_path / "predictions.jsonl").read_text() + "\n\n")
    rows = read_prediction_log(tmp_path / "predictions.jsonl")
    assert rows["prediction"].tolist() == [0.1, 0.2, 0.3]
    assert rows["model_version"].tolist() == ["v0001", "v0001", "v0002"] and rows["ts"].tolist() == [1.0, 1.0, 2.0]
    assert rows["age"].iloc[:2].tolist() == [30, 41] and pd.isna(rows["age"].iloc[2])  # NaN was logged as null


def test_a_log_line_with_more_records_than_scores_is_refused(tmp_path: Path) -> None:
    (tmp_path / "predictions.jsonl").write_text('{"records": [{"a": 1}, {"a": 2}], "predictions": [0.5]}\n')
    with pytest.raises(ValueError):
        read_prediction_log(tmp_path / "predictions.jsonl")


def test_pending_batches_are_new_drops_the_active_log_and_unseen_rotated_logs(tmp_path: Path) -> None:
    drops, logs, history = tmp_path / "drops", tmp_path / "logs", tmp_path / "history.parquet"
    drops.mkdir()
    for name in ("2025-01.csv", "2025-02.parquet", "notes.txt", "2025-03.pq"):
        (drops / name).write_text("x")
    log = _log(logs, max_bytes=150)  # a line is about 100 bytes: rotated once, after the second request
    for i in range(3):
        log.append({"ts": float(i), "model_version": "v1", "records": [{"age": 30 + i}] * 3, "predictions": [0.1] * 3})
    log.close()
    rotated = sorted(p.stem for p in logs.glob("predictions-*.jsonl"))
    assert len(rotated) == 1, rotated
    found = pending_batches(drops, logs, history)
    assert [b for b, _ in found] == ["2025-01", "2025-02", "2025-03", *(f"serving-{s}" for s in rotated)] + [
        "serving-predictions"
    ]
    # monitored once: the drops and the rotated logs are done; the active log grows, so it comes again
    upsert_history(history, [{"batch_id": b, "status": "ok"} for b, _ in found])
    assert pending_batches(drops, logs, history) == [("serving-predictions", logs / "predictions.jsonl")]
    assert pending_batches(drops, None, history) == []
    assert pending_batches(tmp_path / "no-such-folder", None, history) == []
