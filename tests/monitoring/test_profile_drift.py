"""The reference profile and the drift comparison, checked against values computed by hand."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon as scipy_js

from nbops.monitoring.drift import (
    ALERT_QUANTILE,
    EPS,
    TAIL_FACTOR,
    DriftThresholds,
    chi2_quantile,
    compare,
    jensen_shannon,
    profile_of_table,
    psi,
)
from nbops.monitoring.profile import (
    PROFILE_VERSION,
    ReferenceProfile,
    bin_shares,
    build_reference_profile,
    category_shares,
)


def psi_by_hand(reference: list[float], current: list[float], floor: float = EPS) -> float:
    """PSI written out term by term, with the documented floor for empty bins."""
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, floor), max(c, floor)
        total += (c - r) * math.log(c / r)
    return total


def psi_term(r: float, c: float) -> float:
    """One bin's contribution; every term of a PSI is >= 0, so one term is a lower bound of the sum."""
    r, c = max(r, EPS), max(c, EPS)
    return (c - r) * math.log(c / r)


@pytest.fixture
def reference_frame() -> pd.DataFrame:
    """Deterministic reference: x uniform over 0..999 (exact deciles), y normal, grade a/b/c at 50/30/20 %."""
    rng = np.random.default_rng(7)
    n = 1000
    grade = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    return pd.DataFrame(
        {
            "x": np.arange(n, dtype=np.float64),
            "y": rng.normal(50.0, 10.0, n),
            "grade": pd.Series(rng.permutation(grade), dtype="str"),
        }
    )


@pytest.fixture
def profile(reference_frame: pd.DataFrame) -> ReferenceProfile:
    return build_reference_profile(reference_frame, ["x", "y"], ["grade"])


# --------------------------------------------------------------------------- psi / jensen-shannon


def test_psi_matches_hand_computation():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3.0), rel=1e-12)
    ref, cur = [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]
    assert psi(ref, cur) == pytest.approx(psi_by_hand(ref, cur), rel=1e-12)


def test_psi_floors_empty_bins_and_stays_finite():
    ref, cur = [0.5, 0.5, 0.0], [0.5, 0.4, 0.1]
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - EPS) * math.log(0.1 / EPS)
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi([1.0, 0.0], [0.0, 1.0]))


def test_psi_of_identical_shares_is_zero_and_psi_is_symmetric():
    shares = [0.1, 0.2, 0.3, 0.4, 0.0]
    assert psi(shares, shares) == 0.0
    a, b = [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]
    assert psi(a, b) == pytest.approx(psi(b, a), rel=1e-12)
    assert psi(a, b) > 0


def test_jensen_shannon_identical_is_zero_disjoint_is_one():
    assert jensen_shannon([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0, abs=1e-12)
    assert jensen_shannon([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.7]) == pytest.approx(1.0, abs=1e-12)


def test_jensen_shannon_hand_value_bounds_and_symmetry():
    # p = [1, 0], q = [1/2, 1/2], m = [3/4, 1/4]:
    # KL(p||m) = log2(4/3); KL(q||m) = 1/2 log2(2/3) + 1/2 log2(2); distance = sqrt(mean of the two).
    kl_p = math.log2(4 / 3)
    kl_q = 0.5 * math.log2(2 / 3) + 0.5 * math.log2(2)
    assert jensen_shannon([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.sqrt(0.5 * kl_p + 0.5 * kl_q), rel=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        p, q = rng.random(k) * (rng.random(k) > 0.2), rng.random(k)
        d = jensen_shannon(p, q)
        assert 0.0 <= d <= 1.0
        assert d == pytest.approx(jensen_shannon(q, p), abs=1e-12)
        if p.sum() > 0:
            assert d == pytest.approx(scipy_js(p, q, base=2), abs=1e-9)


# --------------------------------------------------------------------------- shares


def test_bin_shares_by_hand():
    values = np.array([1.0, 2.0, 3.0, np.nan, 10.0])
    # bins (-inf, 1.5], (1.5, 5], (5, inf), then missing
    np.testing.assert_allclose(bin_shares(values, np.array([1.5, 5.0])), [0.2, 0.4, 0.2, 0.2])
    # a value on an edge belongs to the bin the edge closes: (-inf, e0]
    np.testing.assert_allclose(
        bin_shares(np.array([1.5, 5.0, 5.0001]), np.array([1.5, 5.0])), [1 / 3, 1 / 3, 1 / 3, 0.0]
    )


def test_category_shares_by_hand():
    s = pd.Series(["a", "b", "a", None, "z"], dtype="str")
    np.testing.assert_allclose(category_shares(s, ["a", "b"]), [0.4, 0.2, 0.2, 0.2])  # a, b, unseen, missing


@pytest.mark.parametrize("seed", range(5))
def test_shares_sum_to_one_with_missing_and_unseen(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    values = rng.normal(size=n)
    values[rng.random(n) < 0.2] = np.nan
    edges = np.sort(rng.normal(size=int(rng.integers(0, 12))))
    shares = bin_shares(values, edges)
    assert len(shares) == len(edges) + 2
    assert shares.sum() == pytest.approx(1.0, abs=1e-12)
    assert shares[-1] == pytest.approx(np.isnan(values).mean(), abs=1e-12)

    text = pd.Series(rng.choice(["a", "b", "c", "new", "other-new"], n), dtype="str")
    text[rng.random(n) < 0.15] = None
    cats = category_shares(text, ["a", "b", "c"])
    assert len(cats) == 5
    assert cats.sum() == pytest.approx(1.0, abs=1e-12)
    assert cats[-2] == pytest.approx(text.isin(["new", "other-new"]).mean(), abs=1e-12)  # unseen
    assert cats[-1] == pytest.approx(text.isna().mean(), abs=1e-12)  # missing


def test_reference_profile_bins_are_deciles(profile):
    x = profile.numeric["x"]
    assert len(x.edges) == 9
    np.testing.assert_allclose(x.shares, [0.1] * 10 + [0.0])  # 0..999: exactly 100 values per decile
    assert x.missing_rate == 0.0 and x.min == 0.0 and x.max == 999.0
    grade = profile.categorical["grade"]
    assert grade.levels == ["a", "b", "c"]  # most frequent first
    np.testing.assert_allclose(grade.shares, [0.5, 0.3, 0.2, 0.0, 0.0])


# --------------------------------------------------------------------------- round trip


def test_profile_round_trip_dict_and_file(reference_frame, tmp_path):
    predictions = np.linspace(0.01, 0.99, len(reference_frame))
    original = build_reference_profile(reference_frame, ["x", "y"], ["grade"], predictions)
    again = ReferenceProfile.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original
    path = original.save(tmp_path / "deep" / "reference_profile.json")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    loaded = ReferenceProfile.load(path)
    assert loaded == original
    assert loaded.features == ["x", "y", "grade"]
    batch = reference_frame.assign(x=reference_frame["x"] + 300)
    assert (
        compare(loaded, batch, predictions=predictions).to_dict()
        == compare(original, batch, predictions=predictions).to_dict()
    )


def test_profile_of_another_format_version_is_refused(profile):
    data = profile.to_dict()
    data["version"] = PROFILE_VERSION + 1
    with pytest.raises(ValueError, match="not supported"):
        ReferenceProfile.from_dict(data)


# --------------------------------------------------------------------------- compare


def test_batch_equal_to_reference_does_not_drift(reference_frame, profile):
    report = compare(profile, reference_frame)
    assert report.dataset_drift is False
    assert report.drifted == [] and report.missing_columns == []
    assert {f.name for f in report.features} == {"x", "y", "grade"}
    for f in report.features:
        assert f.score == pytest.approx(0.0, abs=1e-12)
        assert f.jensen_shannon == pytest.approx(0.0, abs=1e-6)


def test_shifted_numeric_column_drifts(reference_frame, profile):
    iqr = profile.numeric["x"].iqr
    report = compare(profile, reference_frame.assign(x=reference_frame["x"] + iqr))
    by_name = {f.name: f for f in report.features}
    assert report.drifted == ["x"] and report.dataset_drift
    # Shifted by half the range, half the rows land in the top decile: its term alone is a lower bound.
    assert by_name["x"].score >= psi_term(0.1, 0.5)
    # Every quantile moved by exactly one reference IQR.
    assert by_name["x"].wasserstein == pytest.approx(1.0, rel=1e-9)


def test_small_shift_is_below_the_threshold_and_thresholds_apply(reference_frame, profile):
    shifted = reference_frame.assign(x=reference_frame["x"] + 70)  # 7 % of the range
    report = compare(profile, shifted)
    score = next(f.score for f in report.features if f.name == "x")
    assert 0 < score < 0.2 and not report.dataset_drift
    strict = compare(profile, shifted, DriftThresholds(psi=score / 2))
    assert strict.drifted == ["x"] and strict.dataset_drift
    # A 3 % shift between 1,000 and 1,000 rows is what chance alone gives (PSI ~ chi2(9) x 2/1000, mean
    # 0.018): a threshold below the 99.99% quantile of that null is raised to it, so it does not drift.
    tiny = reference_frame.assign(x=reference_frame["x"] + 30)
    tiny_score = next(f.score for f in compare(profile, tiny).features if f.name == "x")
    raised = next(f for f in compare(profile, tiny, DriftThresholds(psi=tiny_score / 2)).features if f.name == "x")
    assert raised.threshold == pytest.approx(TAIL_FACTOR * chi2_quantile(9, ALERT_QUANTILE) * (1 / 1000 + 1 / 1000))
    assert raised.threshold > tiny_score and not raised.drifted
    lenient = compare(
        profile, reference_frame.assign(x=reference_frame["x"] + 500), DriftThresholds(min_drifted_features=2)
    )
    assert lenient.drifted == ["x"] and not lenient.dataset_drift


def test_new_category_drifts_through_the_unseen_bin(reference_frame, profile):
    # 70 % of the rows keep the reference mix; 30 % carry a level the reference never saw.
    grade = ["a"] * 350 + ["b"] * 210 + ["c"] * 140 + ["brand-new"] * 300
    batch = reference_frame.assign(grade=pd.Series(grade, dtype="str"))
    report = compare(profile, batch)
    g = next(f for f in report.features if f.name == "grade")
    ref_counts, cur_counts = Counter(reference_frame["grade"]), Counter(grade)
    reference = [ref_counts[k] / 1000 for k in "abc"] + [0.0, 0.0]  # levels, unseen, missing
    current = [cur_counts[k] / 1000 for k in "abc"] + [0.3, 0.0]
    assert g.score == pytest.approx(psi_by_hand(reference, current), rel=1e-9)
    # The known levels alone (all scaled by 0.7) would stay under the threshold: the unseen bin decides.
    assert -0.3 * math.log(0.7) < 0.2 <= psi_term(0.0, 0.3)
    assert g.drifted and report.drifted == ["grade"]


def test_mostly_missing_numeric_column_drifts_through_the_missing_bin(reference_frame, profile):
    x = reference_frame["x"].copy()
    x[x.index % 10 != 0] = np.nan  # 90 % missing; the rest spread evenly over the deciles
    report = compare(profile, reference_frame.assign(x=x))
    f = next(f for f in report.features if f.name == "x")
    assert f.missing_current == pytest.approx(0.9) and f.missing_reference == 0.0
    assert f.score == pytest.approx(psi_by_hand([0.1] * 10 + [0.0], [0.01] * 10 + [0.9]), rel=1e-9)
    assert f.drifted and report.drifted == ["x"]


def test_mostly_missing_categorical_column_drifts_through_the_missing_bin(reference_frame, profile):
    grade = reference_frame["grade"].copy()
    grade[grade.index % 5 != 0] = None  # 80 % missing
    report = compare(profile, reference_frame.assign(grade=grade))
    g = next(f for f in report.features if f.name == "grade")
    assert g.missing_current == pytest.approx(0.8)
    assert g.score >= psi_term(0.0, 0.8)
    assert report.drifted == ["grade"]


def test_batch_missing_a_profiled_column_is_reported_not_a_crash(reference_frame, profile):
    report = compare(profile, reference_frame.drop(columns=["y"]))
    assert report.missing_columns == ["y"]
    assert report.dataset_drift is True
    assert {f.name for f in report.features} == {"x", "grade"}
    assert report.drifted == []
    assert report.to_dict()["missing_columns"] == ["y"]


def test_zero_row_batch_does_not_crash(reference_frame):
    predictions = np.linspace(0.01, 0.99, len(reference_frame))
    profile = build_reference_profile(reference_frame, ["x", "y"], ["grade"], predictions)
    report = compare(profile, reference_frame.iloc[:0])
    assert report.rows == 0
    assert {f.name for f in report.features} == {"x", "y", "grade"}
    assert all(math.isfinite(f.score) and 0.0 <= f.jensen_shannon <= 1.0 for f in report.features)
    json.dumps(report.to_dict())  # serialisable for the history / CLI
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty prediction array
        empty = compare(profile, reference_frame.iloc[:0], predictions=np.array([], dtype=float))
    assert empty.prediction is not None and math.isfinite(empty.prediction.score)


def test_prediction_drift(reference_frame):
    p = np.random.default_rng(3).beta(2, 8, len(reference_frame))
    profile = build_reference_profile(reference_frame, ["x"], [], p)
    assert compare(profile, reference_frame, predictions=p).prediction.drifted is False
    moved = compare(profile, reference_frame, predictions=np.clip(p + 0.3, 0, 1)).prediction
    assert moved.drifted and moved.score >= 0.2


def test_profile_of_table_picks_numeric_and_low_cardinality_text():
    n = 1000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "id": pd.Series([f"A{i:06d}" for i in range(n)], dtype="str"),  # unique: an identifier
            "free_text": pd.Series([f"t{i}" for i in rng.integers(0, 400, n)], dtype="str"),  # > 200 levels
            "amount": rng.normal(size=n),
            "count": rng.integers(0, 5, n),
            "flag": rng.random(n) < 0.5,
            "grade": pd.Series(rng.choice(["a", "b", "c"], n), dtype="str"),
            "target": rng.integers(0, 2, n),
        }
    )
    assert df["free_text"].nunique() > 200
    profile = profile_of_table(df, exclude=("target",))
    assert set(profile.numeric) == {"amount", "count"}
    assert set(profile.categorical) == {"flag", "grade"}
    assert compare(profile, df).dataset_drift is False


def test_categorical_with_more_than_50_levels_does_not_drift_against_itself():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"shop": pd.Series([f"s{i:02d}" for i in rng.integers(0, 60, 5000)], dtype="str")})
    profile = profile_of_table(df)
    assert list(profile.categorical) == ["shop"]
    report = compare(profile, df)
    assert report.drifted == [], report.to_dict()["features"]
