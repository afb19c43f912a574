"""The pieces of the dask engine that need no cluster: exact quantiles over partitions (bit-identical
to ``np.quantile``), the partition plan of Parquet data, and merging part files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbops.engines.dask.parquet import merge_parts, parquet_files, plan_pieces, read_piece
from nbops.engines.dask.profile import Moments
from nbops.engines.dask.quantiles import in_intervals, plan, resolve, sketch
from nbops.engines.dask.train import combine_records, early_stopping_point, strip_network_params
from nbops.errors import DataError

PROBS = np.concatenate([np.linspace(0, 1, 11)[1:-1], np.linspace(0, 1, 101), [0.05, 0.25, 0.5, 0.75, 0.95]])


def distributed_quantiles(parts: list[np.ndarray], grid: int):
    sketches = [sketch(np.sort(p), grid) for p in parts]
    p = plan(sketches, PROBS)
    return resolve(p, [in_intervals(np.sort(part), p.lo, p.hi) for part in parts])


@pytest.mark.parametrize("seed", range(40))
def test_quantiles_over_partitions_are_bit_identical_to_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20_000))
    x = [
        rng.normal(size=n),
        rng.integers(0, 4, size=n).astype(float),
        np.exp(3 * rng.normal(size=n)),
        np.round(rng.random(n), 2),
    ][seed % 4]
    parts = np.split(x, np.sort(rng.integers(0, n + 1, size=int(rng.integers(0, 9)))))  # empty parts too
    res = distributed_quantiles(parts, grid=int(rng.integers(2, 300)))
    assert np.array_equal(res.values, np.quantile(x, PROBS))
    for edge in np.unique(res.values[:9]):  # exact counts at quantile edges: the profile's bins
        assert res.count_le(float(edge)) == int((x <= edge).sum())


def test_one_value_and_all_equal_values() -> None:
    assert np.array_equal(distributed_quantiles([np.array([3.5])], 16).values, np.quantile([3.5], PROBS))
    same = [np.full(1000, 2.0), np.full(10, 2.0)]
    assert np.array_equal(distributed_quantiles(same, 8).values, np.full(len(PROBS), 2.0))


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        plan([sketch(np.empty(0))], PROBS)


def test_moments_combine_to_numpys_mean_and_std() -> None:
    x = np.random.default_rng(1).lognormal(size=100_001)
    total = Moments(0, 0.0, 0.0)
    for part in np.array_split(x, 7):
        total = total + Moments.of(part)
    assert total.n == len(x)
    assert total.mean == pytest.approx(x.mean(), rel=1e-13)
    assert np.sqrt(total.m2 / total.n) == pytest.approx(x.std(), rel=1e-12)


def write(path: Path, n: int, row_group_size: int, start: int = 0) -> Path:
    pq.write_table(
        pa.table({"i": np.arange(start, start + n), "s": [f"v{k}" for k in range(start, start + n)]}),
        path,
        row_group_size=row_group_size,
    )
    return path


def test_pieces_know_their_rows_and_offsets(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", 10_000, 3_000)
    pieces = plan_pieces(path)
    assert [(p.row_groups, p.offset, p.rows) for p in pieces] == [
        ((0,), 0, 3000),
        ((1,), 3000, 3000),
        ((2,), 6000, 3000),
        ((3,), 9000, 1000),
    ]
    whole = pd.concat([read_piece(p) for p in pieces])
    assert whole["i"].tolist() == list(range(10_000)) and whole.index.tolist() == list(range(10_000))
    # small tables are cut into row slices so every worker gets a share; big groups are bounded
    small = plan_pieces(write(tmp_path / "small.parquet", 5, 100), min_pieces=2)
    assert [(p.start, p.stop, p.offset) for p in small] == [(0, 2, 0), (2, 5, 2)]
    assert pd.concat([read_piece(p, ["i"]) for p in small])["i"].tolist() == [0, 1, 2, 3, 4]
    assert max(p.rows for p in plan_pieces(path, max_rows=1_000)) == 1_000
    assert sum(p.rows for p in plan_pieces(path, min_pieces=50, max_rows=700)) == 10_000


def test_a_folder_is_read_in_part_order(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for k in (10, 2, 1):
        write(folder / f"part.{k}.parquet", 3, 3, start=100 * k)
    (folder / "_metadata").write_text("ignored")
    assert [p.name for p in parquet_files(folder)] == ["part.1.parquet", "part.2.parquet", "part.10.parquet"]
    dest = merge_parts(folder, tmp_path / "merged.parquet")
    assert dest == 9 and pd.read_parquet(tmp_path / "merged.parquet")["i"].tolist() == [
        100,
        101,
        102,
        200,
        201,
        202,
        1000,
        1001,
        1002,
    ]


def test_what_the_dask_engine_cannot_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match="cannot read this file type") as info:
        parquet_files(tmp_path / "x.csv")
    assert "convert CSV" in str(info.value)
    with pytest.raises(DataError, match="no such file"):
        parquet_files(tmp_path / "nope.parquet")


def test_early_stopping_rule_is_lightgbms() -> None:
    assert early_stopping_point([5, 4, 3, 3, 3, 3], 3, False) == (3, 6)  # no strict improvement for 3 rounds
    assert early_stopping_point([5, 4, 3, 2], 3, False) == (4, 4)  # never triggered: the argmin
    assert early_stopping_point([0.5, 0.7, 0.6, 0.65], 2, True) == (2, 4)


def test_worker_records_combine_into_the_global_curve() -> None:
    """Shard means weighted by shard size: the mean over all rows."""
    per_worker = {
        "a": [
            (0, [("valid", "binary_logloss", 0.5, False)], {"valid": 100}),
            (1, [("valid", "binary_logloss", 0.4, False)], {"valid": 100}),
        ],
        "b": [
            (0, [("valid", "binary_logloss", 0.2, False)], {"valid": 300}),
            (1, [("valid", "binary_logloss", 0.1, False)], {"valid": 300}),
        ],
        "c": [(0, [], {})],  # a worker without validation rows
    }
    history, higher = combine_records(per_worker)
    assert history["valid"]["binary_logloss"] == pytest.approx([(50 + 60) / 400, (40 + 30) / 400])
    assert higher == {"binary_logloss": False}


def test_network_ports_are_stripped_from_the_model_text() -> None:
    text = (
        "tree\n...\nparameters:\n[tree_learner: data]\n[machines: 127.0.0.1:41000,127.0.0.1:41001]\n"
        "[local_listen_port: 41000]\n[num_machines: 2]\nend of parameters\n"
    )
    assert (
        strip_network_params(text)
        == "tree\n...\nparameters:\n[tree_learner: data]\n[num_machines: 2]\nend of parameters\n"
    )
