"""nbops.experiments.index: the runs index is append-only JSON lines, whole under concurrent writers,
readable after a killed writer, and resolves run ids, build ids and versions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nbops.config import paths
from nbops.experiments.index import (
    RunNotFound,
    RunRecord,
    index_path,
    lineage_params,
    read_runs,
    record_run,
    record_runs,
    select,
    trial_identity,
)

WRITER = textwrap.dedent(
    """
    import sys
    from nbops.experiments.index import RunRecord, record_run
    root, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()  # both writers start together
    for i in range(n):
        # a record far larger than a pipe's atomic write, so an unguarded append could interleave
        record_run(root, RunRecord(identity=f"{name}{i:012d}", task="tune", trial=i,
                                   curves={"valid": [i + k / 1000 for k in range(1500)]}))
    """
)
HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nbops.locks import project_lock
    with project_lock(Path(sys.argv[1]), command="another writer"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def run(identity: str, task: str = "train", **kw: object) -> RunRecord:
    return RunRecord(identity=identity, task=task, **kw)  # type: ignore[arg-type]


def test_a_record_reads_back_as_written_and_the_file_is_strict_json(tmp_path: Path) -> None:
    written = run(
        "a1b2c3d4e5f60718",
        params={"learning_rate": 0.1, "segment_columns": ["region"]},
        metrics={"roc_auc": 0.81, "r2": float("nan")},
        curves={"metric": "auc", "valid": [0.7, 0.8]},
        build_id="20261201-120000-0a1b2c3d",
        version="v0002",
    )
    record_run(tmp_path, written)
    line = index_path(tmp_path).read_text()
    assert index_path(tmp_path) == tmp_path / paths.RUNS_INDEX
    # strict JSON: NaN, which browsers' JSON.parse refuse, is written as null and not read back as a metric
    data = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c} in {line}"))
    assert data["metrics"] == {"roc_auc": 0.81, "r2": None} and data["schema"] == 1
    [back] = read_runs(tmp_path)
    assert back.metrics == {"roc_auc": 0.81}
    assert (back.identity, back.params, back.curves, back.version) == (
        written.identity,
        written.params,
        written.curves,
        "v0002",
    )


def test_reading_an_index_that_does_not_exist_gives_no_runs(tmp_path: Path) -> None:
    assert read_runs(tmp_path / "never-built") == []


def test_a_line_cut_short_by_a_killed_writer_is_skipped_and_the_next_record_is_whole(tmp_path: Path) -> None:
    record_run(tmp_path, run("1" * 16))
    with index_path(tmp_path).open("a") as fh:
        fh.write('{"schema": 1, "identity": "2222", "task": "tr')  # killed mid-line
    record_run(tmp_path, run("3" * 16))
    assert [r.identity for r in read_runs(tmp_path)] == ["1" * 16, "3" * 16]


def test_a_newer_nbops_field_is_ignored(tmp_path: Path) -> None:
    record = {**run("4" * 16).to_dict(), "schema": 2, "something_new": {"x": 1}}
    index_path(tmp_path).parent.mkdir(parents=True)
    index_path(tmp_path).write_text(json.dumps(record) + "\n")
    assert [r.identity for r in read_runs(tmp_path)] == ["4" * 16]


def test_a_status_other_than_ok_or_failed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ok, failed"):
        record_runs(tmp_path, [run("5" * 16, status="pruned")])


def test_two_processes_recording_at_once_lose_and_mix_no_line(tmp_path: Path) -> None:
    n = 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), name, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("aaaa", "bbbb")
    ]
    for w in writers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    for w in writers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in writers:
        assert w.wait(timeout=120) == 0
    lines = index_path(tmp_path).read_text().splitlines()
    assert len(lines) == 2 * n, f"{len(lines)} lines for {2 * n} records"
    records = [RunRecord.from_dict(json.loads(line)) for line in lines]  # every line whole
    assert sorted(r.identity for r in records) == sorted(
        f"{name}{i:012d}" for name in ("aaaa", "bbbb") for i in range(n)
    )
    assert all(len((r.curves or {})["valid"]) == 1500 for r in records)


def test_a_writer_waits_for_the_index_lock(tmp_path: Path) -> None:
    """The append happens under <root>/.nbops/runs.lock: while another process holds it, nothing is written."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / paths.RUNS_LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = threading.Event()
        threading.Thread(target=lambda: (record_run(tmp_path, run("6" * 16)), done.set()), daemon=True).start()
        time.sleep(0.5)
        assert not done.is_set() and read_runs(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()
    assert done.wait(10)
    assert [r.identity for r in read_runs(tmp_path)] == ["6" * 16]


# ----------------------------------------------------------------------------- choosing runs


@pytest.fixture
def index() -> list[RunRecord]:
    """Two builds: the second changed the learning rate, so train, evaluate and register ran again."""
    b1, b2 = "20261201-100000-aaaaaaaa", "20261201-110000-bbbbbbbb"
    t = 1_800_000_000.0
    return [
        run("1ngest0000000000", "ingest", build_id=b1, finished_at=t),
        run("7a11000000000000", "train", build_id=b1, finished_at=t + 1, params={"learning_rate": 0.05},
            components={"upstream": {"ingest": "1ngest0000000000"}}),
        run("e7a1000000000000", "evaluate", build_id=b1, finished_at=t + 2, params={"shap_sample": 500},
            components={"upstream": {"ingest": "1ngest0000000000", "train": "7a11000000000000"}}),
        run("4e61000000000000", "register", build_id=b1, finished_at=t + 3, version="v0001",
            components={"upstream": {"train": "7a11000000000000", "evaluate": "e7a1000000000000"}}),
        run("7a22000000000000", "train", build_id=b2, finished_at=t + 11, params={"learning_rate": 0.1},
            components={"upstream": {"ingest": "1ngest0000000000"}}),
        run("e7a2000000000000", "evaluate", build_id=b2, finished_at=t + 12, params={"shap_sample": 500},
            components={"upstream": {"ingest": "1ngest0000000000", "train": "7a22000000000000"}}),
        run("4e62000000000000", "register", build_id=b2, finished_at=t + 13, version="v0002",
            components={"upstream": {"train": "7a22000000000000", "evaluate": "e7a2000000000000"}}),
        run("0123456789abcdef", "tune", build_id=b2, finished_at=t + 14, trial=0, parent="7a22000000000000"),
    ]  # fmt: skip


def test_a_run_id_is_any_unique_start_of_a_run_identity(index: list[RunRecord]) -> None:
    chosen = select("e7a2", index)
    assert chosen.kind == "run" and [r.identity for r in chosen.runs.values()] == ["e7a2000000000000"]
    assert "evaluate" in chosen.description and "20261201-110000-bbbbbbbb" in chosen.description


def test_an_ambiguous_run_id_lists_the_runs_it_could_be(index: list[RunRecord]) -> None:
    with pytest.raises(RunNotFound) as err:
        select("7a", index)
    message = str(err.value)
    assert "'7a' is the start of 2 runs" in message and "7a11000000000000 (train)" in message
    assert "give more of its digits" in message


def test_a_build_id_or_its_start_selects_the_runs_of_that_build_without_trials(index: list[RunRecord]) -> None:
    chosen = select("20261201-11", index)
    assert chosen.kind == "build" and list(chosen.runs) == ["train", "evaluate", "register"]
    assert select("20261201-100000-aaaaaaaa", index).runs["train"].identity == "7a11000000000000"
    with pytest.raises(RunNotFound, match="start of 2 builds"):
        select("20261201-1", index)


def test_a_version_selects_the_train_and_evaluate_runs_that_produced_it(index: list[RunRecord]) -> None:
    for name in ("v0002", "v2", "V0002"):
        chosen = select(name, index)
        assert chosen.kind == "version"
        assert {t: r.identity for t, r in chosen.runs.items()} == {
            "train": "7a22000000000000",
            "evaluate": "e7a2000000000000",
        }


def test_a_version_whose_register_run_is_not_indexed_is_found_through_the_registry(index: list[RunRecord]) -> None:
    without_register = [r for r in index if r.task != "register"]
    chosen = select("v0001", without_register, versions={"v0001": "7a11000000000000"})
    assert {t: r.identity for t, r in chosen.runs.items()} == {
        "train": "7a11000000000000",
        "evaluate": "e7a1000000000000",
    }
    with pytest.raises(RunNotFound, match="no recorded run produced v0003"):
        select("v0003", index)


def test_a_name_that_matches_nothing_says_what_was_expected(index: list[RunRecord]) -> None:
    with pytest.raises(RunNotFound) as err:
        select("ffff", index)
    assert "expected a run id" in str(err.value) and "`nbops runs` lists them" in str(err.value)
    with pytest.raises(RunNotFound, match="the runs index is empty"):
        select("ffff", [])


def test_an_evaluate_run_carries_the_learning_rate_of_the_model_it_evaluated(index: list[RunRecord]) -> None:
    evaluate = next(r for r in index if r.identity == "e7a2000000000000")
    assert lineage_params(evaluate, index) == {"shap_sample": 500, "learning_rate": 0.1}


def test_a_trial_identity_depends_on_its_study_number_and_parameters() -> None:
    a = trial_identity("parent1", 3, {"learning_rate": 0.1})
    assert len(a) == 16 and a == trial_identity("parent1", 3, {"learning_rate": 0.1})
    assert len({a, trial_identity("parent2", 3, {"learning_rate": 0.1}), trial_identity("parent1", 4, {})}) == 3
