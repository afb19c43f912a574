"""Tests for the credit-risk simulator (nbops.data.simulate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from nbops.cli.simulate import main
from nbops.data.simulate import (
    ID_COLUMN,
    NEW_LOAN_PURPOSE,
    SCENARIOS,
    TARGET,
    TIME_COLUMN,
    DriftedFeature,
    SimulationTruth,
    declared_schema,
    generator,
    simulate_batch,
    simulate_history,
    write_simulation,
)

SCHEMA = declared_schema()
COLUMNS = {c["name"]: c for c in SCHEMA["columns"]}
FEATURES = [c["name"] for c in SCHEMA["columns"] if c["role"] == "feature"]
CATEGORICAL = [c["name"] for c in SCHEMA["columns"] if c["kind"] == "categorical"]

EXPECTED_DRIFTED = {
    "none": set(),
    "shock": {
        "annual_income",
        "debt_to_income",
        "credit_utilization",
        "num_delinquencies_2y",
        "months_since_last_delinquency",
        "num_credit_inquiries_6m",
    },
    "gradual": {"loan_amount", "interest_rate"},
    "new-category": {"loan_purpose"},
    "concept": set(),
}
PSI_DRIFT = 0.25  # named features must exceed this even at 1k rows
PSI_STABLE = 0.05  # un-named features must stay below this at 5k rows


# --------------------------------------------------------------------------- helpers


def psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """Two-sample population stability index (missing values get their own bin).

    Numeric: bins at the reference deciles; categorical: one bin per category.
    """
    eps = 1e-4
    if COLUMNS[str(reference.name)]["kind"] == "categorical":
        ref = reference.fillna("<missing>").value_counts(normalize=True)
        cur = current.fillna("<missing>").value_counts(normalize=True)
        index = ref.index.union(cur.index)
        p = ref.reindex(index, fill_value=0.0).to_numpy()
        q = cur.reindex(index, fill_value=0.0).to_numpy()
    else:
        ref_v = reference.to_numpy(dtype=float)
        cur_v = current.to_numpy(dtype=float)
        edges = np.unique(np.quantile(ref_v[~np.isnan(ref_v)], np.linspace(0, 1, bins + 1)[1:-1]))

        def hist(v: np.ndarray) -> np.ndarray:
            counts = np.bincount(np.searchsorted(edges, v[~np.isnan(v)], side="right"), minlength=len(edges) + 1)
            return np.append(counts, np.isnan(v).sum()) / len(v)

        p, q = hist(ref_v), hist(cur_v)
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def model_matrix(df: pd.DataFrame) -> pd.DataFrame:
    x = df[FEATURES].copy()
    for col in CATEGORICAL:
        cats = list(COLUMNS[col]["categories"])
        if col == "loan_purpose":
            cats.append(NEW_LOAN_PURPOSE)
        x[col] = pd.Categorical(x[col], categories=cats)
    return x


def assert_matches_schema(df: pd.DataFrame, *, allow_new_purpose: bool = False) -> None:
    assert list(df.columns) == list(COLUMNS)
    for name, col in COLUMNS.items():
        s = df[name]
        if col["dtype"] == "str":
            assert pd.api.types.is_string_dtype(s.dtype), (name, s.dtype)
        else:
            assert str(s.dtype) == col["dtype"], (name, s.dtype)
        if not col["nullable"]:
            assert not s.isna().any(), name
        values = s.dropna()
        if col["kind"] == "numeric" and len(values):
            if col["min"] is not None:
                assert values.min() >= col["min"], name
            if col["max"] is not None:
                assert values.max() <= col["max"], name
        if col["kind"] == "categorical":
            extra = set(values.unique()) - set(col["categories"])
            if allow_new_purpose and name == "loan_purpose":
                extra -= {NEW_LOAN_PURPOSE}
            assert not extra, (name, extra)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    df, _ = simulate_history(rows=100_000, seed=0)
    return df


@pytest.fixture(scope="module")
def model(history: pd.DataFrame) -> tuple[lgb.LGBMClassifier, float]:
    """LightGBM fitted on 80k history rows, with its AUC on the 20k held out."""
    order = np.random.default_rng(0).permutation(len(history))
    train, test = history.iloc[order[:80_000]], history.iloc[order[80_000:]]
    clf = lgb.LGBMClassifier(n_estimators=100, num_threads=2, verbose=-1, random_state=0)
    clf.fit(model_matrix(train), train[TARGET])
    auc = roc_auc_score(test[TARGET], clf.predict_proba(model_matrix(test))[:, 1])
    return clf, float(auc)


# --------------------------------------------------------------------------- schema & shape


def test_declared_schema_is_plain_and_complete() -> None:
    json.dumps(SCHEMA)  # plain data
    assert SCHEMA["target"] == TARGET
    assert SCHEMA["time_column"] == TIME_COLUMN
    assert SCHEMA["id_column"] == ID_COLUMN
    keys = {"name", "kind", "role", "nullable", "min", "max", "categories"}
    for col in SCHEMA["columns"]:
        assert keys <= set(col)
        assert col["kind"] in {"numeric", "categorical", "time", "id"}
        assert col["role"] in {"feature", "target", "time", "id"}
        assert (col["categories"] is not None) == (col["kind"] == "categorical")
    roles = [c["role"] for c in SCHEMA["columns"]]
    assert roles.count("target") == roles.count("time") == roles.count("id") == 1
    assert 18 <= len(FEATURES) <= 22
    assert COLUMNS["credit_utilization"]["min"] == 0 and COLUMNS["credit_utilization"]["max"] == 1.5
    assert (COLUMNS["age"]["min"], COLUMNS["age"]["max"]) == (18, 100)
    assert NEW_LOAN_PURPOSE not in COLUMNS["loan_purpose"]["categories"]


def test_history_columns_dtypes_and_ranges_match_schema(history: pd.DataFrame) -> None:
    assert len(history) == 100_000
    assert_matches_schema(history)
    assert set(history["loan_term_months"].unique()) == {36, 60}
    assert set(history[TARGET].unique()) == {0, 1}
    assert history["credit_utilization"].max() > 1.0  # can exceed the limit a little


def test_missing_values_are_realistic(history: pd.DataFrame) -> None:
    missing = history.isna().mean()
    for col in ("employment_length_years", "savings_balance", "education"):
        assert 0.01 <= missing[col] <= 0.10, (col, missing[col])
    assert COLUMNS["education"]["kind"] == "categorical"
    no_delinquency = history["num_delinquencies_2y"] == 0
    assert history["months_since_last_delinquency"].isna().equals(no_delinquency)
    nullable = {c for c, spec in COLUMNS.items() if spec["nullable"]}
    assert set(missing[missing > 0].index) == nullable


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_rate_is_near_ten_percent(seed: int) -> None:
    df, truth = simulate_history(rows=100_000, seed=seed)
    assert 0.08 <= df[TARGET].mean() <= 0.12
    assert truth.default_rate == pytest.approx(df[TARGET].mean())


# --------------------------------------------------------------------------- determinism & ids


def test_same_arguments_give_identical_tables() -> None:
    a, ta = simulate_history(rows=5_000, seed=7)
    b, tb = simulate_history(rows=5_000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert ta == tb
    c, tc = simulate_batch(3, rows=2_000, seed=7, drift="shock")
    d, td = simulate_batch(3, rows=2_000, seed=7, drift="shock")
    pd.testing.assert_frame_equal(c, d)
    assert tc == td


def test_different_seeds_differ() -> None:
    a, _ = simulate_history(rows=5_000, seed=1)
    b, _ = simulate_history(rows=5_000, seed=2)
    for col in ("annual_income", "age", "loan_purpose", TARGET):
        assert not a[col].equals(b[col]), col
    c, _ = simulate_batch(1, rows=2_000, seed=1)
    d, _ = simulate_batch(1, rows=2_000, seed=2)
    assert not c["annual_income"].equals(d["annual_income"])


def test_ids_are_unique_across_history_and_batches() -> None:
    tables = [simulate_history(rows=20_000, seed=3)[0]]
    tables += [
        simulate_batch(k, rows=5_000, seed=3, drift=d)[0] for k, d in [(1, "none"), (2, "shock"), (12, "gradual")]
    ]
    ids = pd.concat([t[ID_COLUMN] for t in tables], ignore_index=True)
    assert ids.is_unique
    assert ids.str.fullmatch(r"A\d{10}").all()
    assert tables[0][ID_COLUMN].iloc[12] == "A0000000012"


# --------------------------------------------------------------------------- months


def test_history_spans_24_months_with_mild_growth() -> None:
    df, truth = simulate_history(rows=50_000, seed=0)
    months = sorted(df[TIME_COLUMN].unique())
    assert len(months) == 24
    assert months[0] == "2023-01" and months[-1] == "2024-12"
    assert truth.months == months and truth.batch is None and truth.scenario == "none"
    assert df[TIME_COLUMN].is_monotonic_increasing
    counts = df[TIME_COLUMN].value_counts().sort_index()
    assert counts.min() > 0.6 * counts.mean()  # roughly uniform
    assert counts.iloc[-3:].mean() > counts.iloc[:3].mean()  # mild growth


@pytest.mark.parametrize(("batch", "month"), [(1, "2025-01"), (6, "2025-06"), (13, "2026-01")])
def test_batch_month_follows_the_history(batch: int, month: str) -> None:
    df, truth = simulate_batch(batch, rows=500, seed=0)
    assert set(df[TIME_COLUMN]) == {month}
    assert truth.months == [month] and truth.batch == batch


def test_custom_start_and_length() -> None:
    df, truth = simulate_history(rows=3_000, seed=0, start="2020-11", months=3)
    assert truth.months == ["2020-11", "2020-12", "2021-01"]
    batch, _ = simulate_batch(2, rows=10, seed=0, start="2020-11", months=3)
    assert set(batch[TIME_COLUMN]) == {"2021-03"}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: simulate_history(rows=0), "rows"),
        (lambda: simulate_history(seed=-1), "seed"),
        (lambda: simulate_history(start="2023-13"), "YYYY-MM"),
        (lambda: simulate_history(months=0), "months"),
        (lambda: simulate_batch(0), "batch"),
        (lambda: simulate_batch(1, drift="tsunami"), "shock"),
    ],
)
def test_bad_arguments_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_write_round_trip_and_sidecar(tmp_path: Path, suffix: str) -> None:
    df, truth = simulate_batch(2, rows=3_000, seed=5, drift="new-category")
    out = tmp_path / "nested" / "deeper" / f"batch_02{suffix}"
    table_path, truth_path = write_simulation(df, truth, out)
    assert table_path == out and table_path.exists()
    assert truth_path == tmp_path / "nested" / "deeper" / "batch_02.truth.json"
    back = pd.read_csv(table_path) if suffix == ".csv" else pd.read_parquet(table_path)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-12)
    payload = json.loads(truth_path.read_text())
    assert payload == truth.to_dict()
    assert payload["drifted_features"][0]["name"] == "loan_purpose"
    assert SimulationTruth.from_dict(payload) == truth
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, truth_path.name])


def test_write_overwrites_and_leaves_no_temp_files_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df, truth = simulate_history(rows=200, seed=0)
    out = tmp_path / "history.parquet"
    write_simulation(df, truth, out)
    write_simulation(df, truth, out)  # overwrite works
    before = out.read_bytes()

    def broken(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_simulation(df, truth, out)
    assert out.read_bytes() == before  # the old table is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.parquet", "history.truth.json"]


def test_unknown_suffix_is_rejected(tmp_path: Path) -> None:
    df, truth = simulate_history(rows=100, seed=0)
    with pytest.raises(ValueError, match=r"\.json.*\.csv.*\.parquet.*\.pq"):
        write_simulation(df, truth, tmp_path / "table.json")
    with pytest.raises(ValueError, match="''"):
        write_simulation(df, truth, tmp_path / "table")
    assert list(tmp_path.iterdir()) == []


def test_truth_to_dict_is_json_ready() -> None:
    _, truth = simulate_batch(6, rows=1_000, seed=2, drift="gradual")
    data = json.loads(json.dumps(truth.to_dict()))
    assert data["scenario"] == "gradual" and data["batch"] == 6 and data["seed"] == 2
    assert data["rows"] == 1_000 and data["months"] == ["2025-06"]
    assert data["concept_drift"] is False
    assert {d["name"] for d in data["drifted_features"]} == {"loan_amount", "interest_rate"}
    assert all(d["kind"] and d["description"] for d in data["drifted_features"])


# --------------------------------------------------------------------------- CLI


def test_cli_writes_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "history.csv"
    assert main(["--rows", "2000", "--seed", "4", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 2000 and df[TIME_COLUMN].nunique() == 24
    truth = json.loads((tmp_path / "out" / "history.truth.json").read_text())
    assert truth["batch"] is None and truth["seed"] == 4 and truth["scenario"] == "none"
    printed = capsys.readouterr().out
    assert str(out) in printed and "history.truth.json" in printed


def test_cli_writes_drifted_batch(tmp_path: Path) -> None:
    out = tmp_path / "batch.parquet"
    assert main(["--rows", "1500", "--batch", "3", "--drift", "shock", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 1500 and set(df[TIME_COLUMN]) == {"2025-03"}
    truth = json.loads((tmp_path / "batch.truth.json").read_text())
    assert truth["scenario"] == "shock" and truth["batch"] == 3
    assert {d["name"] for d in truth["drifted_features"]} == EXPECTED_DRIFTED["shock"]


def test_cli_drift_without_batch_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv"
    assert main(["--drift", "shock", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--batch" in err and "later" in err and "batches" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --out missing
        ["--rows", "0", "--out", "x.csv"],
        ["--rows", "many", "--out", "x.csv"],
        ["--seed", "-3", "--out", "x.csv"],
        ["--batch", "0", "--out", "x.csv"],
        ["--batch", "1", "--drift", "tsunami", "--out", "x.csv"],
        ["--out", "x.xlsx"],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- drift scenarios


@pytest.mark.parametrize("drift", SCENARIOS)
def test_truth_names_exactly_the_scenario_features(drift: str) -> None:
    _, truth = simulate_batch(1, rows=1_000, seed=0, drift=drift)
    assert truth.scenario == drift
    assert {d.name for d in truth.drifted_features} == EXPECTED_DRIFTED[drift]
    assert truth.concept_drift == (drift == "concept")
    assert all(isinstance(d, DriftedFeature) and d.description for d in truth.drifted_features)


@pytest.mark.parametrize("drift", SCENARIOS)
def test_unnamed_columns_keep_the_reference_process_exactly(drift: str) -> None:
    """Every column a scenario does not name is identical to the no-drift batch."""
    reference, _ = simulate_batch(4, rows=3_000, seed=9, drift="none")
    drifted, truth = simulate_batch(4, rows=3_000, seed=9, drift=drift)
    named = {d.name for d in truth.drifted_features}
    for col in [c for c in COLUMNS if c != TARGET]:
        if col in named:
            assert not drifted[col].equals(reference[col]), col
        else:
            pd.testing.assert_series_equal(drifted[col], reference[col])


@pytest.mark.parametrize("drift", SCENARIOS)
@pytest.mark.parametrize("batch", [1, 6])
def test_named_features_move_and_others_do_not(history: pd.DataFrame, drift: str, batch: int) -> None:
    small, truth = simulate_batch(batch, rows=1_000, seed=1, drift=drift)
    large, _ = simulate_batch(batch, rows=5_000, seed=2, drift=drift)
    named = {d.name for d in truth.drifted_features}
    for col in FEATURES:
        if col in named:
            value = psi(history[col], small[col])
            assert value > PSI_DRIFT, (col, value)
        else:
            value = psi(history[col], large[col])
            assert value < PSI_STABLE, (col, value)


def test_gradual_drift_grows_with_the_batch(history: pd.DataFrame) -> None:
    psis = {}
    for k in (1, 6, 12):
        df, _ = simulate_batch(k, rows=5_000, seed=3, drift="gradual")
        psis[k] = {c: psi(history[c], df[c]) for c in ("loan_amount", "interest_rate")}
        psis[k]["median_loan"] = df["loan_amount"].median()
    for col in ("loan_amount", "interest_rate", "median_loan"):
        assert psis[1][col] < psis[6][col] < psis[12][col], col
    assert psis[1]["median_loan"] > 1.3 * history["loan_amount"].median()


def test_shock_raises_the_default_rate() -> None:
    _, none = simulate_batch(1, rows=20_000, seed=0, drift="none")
    _, shock = simulate_batch(1, rows=20_000, seed=0, drift="shock")
    assert shock.default_rate > none.default_rate + 0.05
    assert 0.08 <= none.default_rate <= 0.12


def test_shock_keeps_delinquency_columns_consistent() -> None:
    df, _ = simulate_batch(2, rows=5_000, seed=0, drift="shock")
    assert df["months_since_last_delinquency"].isna().equals(df["num_delinquencies_2y"] == 0)
    assert df["credit_utilization"].max() <= 1.5


def test_new_category_share_and_schema() -> None:
    df, _ = simulate_batch(1, rows=5_000, seed=0, drift="new-category")
    share = (df["loan_purpose"] == NEW_LOAN_PURPOSE).mean()
    assert share >= 0.20
    declared = set(COLUMNS["loan_purpose"]["categories"])
    assert set(df["loan_purpose"].unique()) == declared | {NEW_LOAN_PURPOSE}
    assert_matches_schema(df, allow_new_purpose=True)
    with pytest.raises(AssertionError):
        assert_matches_schema(df)  # the new category is deliberately undeclared


def test_concept_drift_changes_only_the_target(model) -> None:
    clf, _ = model
    none, _ = simulate_batch(1, rows=20_000, seed=0, drift="none")
    concept, truth = simulate_batch(1, rows=20_000, seed=0, drift="concept")
    assert truth.concept_drift and truth.drifted_features == []
    pd.testing.assert_frame_equal(none.drop(columns=TARGET), concept.drop(columns=TARGET))
    assert not none[TARGET].equals(concept[TARGET])
    assert 0.08 <= truth.default_rate <= 0.12
    auc_none = roc_auc_score(none[TARGET], clf.predict_proba(model_matrix(none))[:, 1])
    auc_concept = roc_auc_score(concept[TARGET], clf.predict_proba(model_matrix(concept))[:, 1])
    assert auc_none >= 0.75
    assert auc_concept < auc_none - 0.15, (auc_none, auc_concept)


# --------------------------------------------------------------------------- signal & scale


def test_signal_is_learnable(model) -> None:
    _, auc = model
    assert auc >= 0.75, auc


def test_nonlinear_utilisation_hinge(history: pd.DataFrame) -> None:
    rate = history.groupby(pd.cut(history["credit_utilization"], [0, 0.4, 0.6, 0.8, 1.0, 1.5]), observed=True)[
        TARGET
    ].mean()
    slope_low = rate.iloc[2] - rate.iloc[1]
    slope_high = rate.iloc[3] - rate.iloc[2]
    assert slope_high > 2 * slope_low > 0


def test_one_million_rows() -> None:
    df, truth = simulate_history(rows=1_000_000, seed=11)
    assert df.shape == (1_000_000, len(COLUMNS))
    assert truth.rows == 1_000_000 and len(truth.months) == 24
    assert 0.09 <= truth.default_rate <= 0.11
    assert df[ID_COLUMN].iloc[-1] == "A0000999999"


def test_tables_larger_than_one_chunk_are_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "CHUNK_ROWS", 1_000)
    a, ta = simulate_history(rows=4_500, seed=2)
    b, _ = simulate_history(rows=4_500, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert_matches_schema(a)
    assert a[ID_COLUMN].is_unique and 0.05 < ta.default_rate < 0.16
    # chunks use different random streams
    assert not np.array_equal(a["annual_income"].iloc[:1000], a["annual_income"].iloc[1000:2000])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 400),
    seed=st.integers(0, 2**32),
    batch=st.integers(1, 48),
    drift=st.sampled_from(SCENARIOS),
)
def test_any_batch_respects_the_schema(rows: int, seed: int, batch: int, drift: str) -> None:
    df, truth = simulate_batch(batch, rows=rows, seed=seed, drift=drift)
    assert len(df) == rows == truth.rows
    assert_matches_schema(df, allow_new_purpose=drift == "new-category")
    assert df[ID_COLUMN].is_unique
    assert re.fullmatch(r"\d{4}-\d{2}", truth.months[0])
    assert truth.default_rate == pytest.approx(df[TARGET].mean())
