"""nbops.monitoring.plots on a real monitoring history (the session's tiny model monitoring four
simulated months, two of them labelled): the PSI table, the bands, the performance series, the
reference-against-batch shares, and the PNG and SVG charts drawn from them."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.data.simulate import simulate_batch
from nbops.monitoring.drift import DriftThresholds
from nbops.monitoring.history import read_history, upsert_history
from nbops.monitoring.monitor import AlertRules, monitor_batch, watch_level
from nbops.monitoring.plots import (
    band_labels,
    compact,
    distribution_shares,
    drift_heatmap,
    drift_heatmap_svg,
    metric_name,
    performance_over_time,
    performance_series,
    performance_svg,
    psi_band,
    psi_bands,
    psi_matrix,
)
from nbops.monitoring.profile import ReferenceProfile
from nbops.runtime.integrity import PROFILE_FILE
from nbops.runtime.model import ScoringModel
from tests.support import TinyModel

SVG = "{http://www.w3.org/2000/svg}"
MONTHS = {1: "none", 2: "shock", 3: "none", 4: "new-category"}
THRESHOLD = 0.2


@pytest.fixture(scope="module")
def monitored(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four months monitored on arrival (no labels), the first two again once their labels came."""
    path = tmp_path_factory.mktemp("plots") / "history.parquet"
    model = ScoringModel.from_folder(tiny_model.version.path)
    profile = ReferenceProfile.load(tiny_model.version.file(PROFILE_FILE))
    rules = AlertRules(DriftThresholds(THRESHOLD, 1))
    batches = {}
    for k, scenario in MONTHS.items():
        batch, truth = simulate_batch(k, rows=800, seed=7, drift=scenario)
        month = truth.months[0]
        batches[month] = batch
        common = {"model": model, "profile": profile, "reference_metrics": tiny_model.metrics, "rules": rules}
        upsert_history(path, [monitor_batch(month, batch.drop(columns=["default"]), month=month, **common).row])
        if k <= 2:
            upsert_history(path, [monitor_batch(month, batch, target="default", month=month, **common).row])
    return {"history": read_history(path), "profile": profile, "batches": batches}


def test_the_psi_table_has_a_row_per_feature_and_a_column_per_batch(monitored: dict) -> None:
    history = monitored["history"]
    m = psi_matrix(history)
    assert list(m.columns) == history["batch_id"].astype(str).tolist() and len(m.columns) == 4
    assert set(m.index) == set(monitored["profile"].features)
    for batch, row in history.set_index("batch_id").iterrows():
        for feature in m.index:
            assert m.at[feature, str(batch)] == pytest.approx(row[f"psi__{feature}"])
    shocked = m.columns[1]  # the shock month drifts features past the threshold; the clean one does not
    assert (m[shocked] >= THRESHOLD).any() and not (m[m.columns[0]] >= THRESHOLD).any()
    assert psi_matrix(pd.DataFrame(columns=["batch_id"])).empty


def test_the_four_bands_cover_every_psi_and_say_their_limits() -> None:
    bands = psi_bands(THRESHOLD)
    assert [name for _, _, name in bands] == ["stable", "watch", "drifted", "severe"]
    assert bands[0][0] == 0 and bands[-1][1] == math.inf
    assert all(high == nxt[0] for (_, high, _), nxt in zip(bands, bands[1:], strict=False))  # contiguous
    assert bands[1][0] == watch_level(THRESHOLD) and bands[3][0] == 2 * THRESHOLD
    watch = watch_level(THRESHOLD)
    assert [psi_band(v, THRESHOLD) for v in (0.0, watch - 1e-9, watch, 0.2, 0.39, 0.4, 7.0)] == [0, 0, 1, 2, 2, 3, 3]
    assert band_labels(THRESHOLD) == [f"stable < {watch:g}", f"watch {watch:g}–0.2", "drifted 0.2–0.4", "severe ≥ 0.4"]


def test_names_and_bin_edges_read_as_words_and_short_numbers() -> None:
    assert metric_name("perf__roc_auc") == metric_name("roc_auc") == "ROC AUC"
    assert metric_name("perf__labelled_rows") == "labelled rows"
    assert [compact(v) for v in (1_234_567, -45_678, 9_999, 0.012345)] == ["1.23M", "-45.7k", "1e+04", "0.0123"]


def test_the_performance_series_marks_the_months_whose_labels_are_pending(monitored: dict) -> None:
    history = monitored["history"]
    s = performance_series(history, "perf__roc_auc", 0.78, 0.73)
    labelled = history["perf__roc_auc"].notna().to_numpy()
    assert labelled.tolist() == [True, True, False, False]
    assert s.pending.tolist() == (~labelled).tolist()
    np.testing.assert_array_equal(s.values[labelled], history.loc[labelled, "perf__roc_auc"].to_numpy(float))
    assert (s.rows[labelled] == 800).all() and not s.lower_is_better
    assert s.breached(0.70) and not s.breached(0.80) and not s.breached(float("nan"))
    assert performance_series(history, "perf__rmse", None, 1.0).lower_is_better
    assert performance_series(history, "perf__rmse", None, 1.0).breached(1.5)


def test_reference_and_batch_shares_per_bin_and_per_level(monitored: dict) -> None:
    profile = monitored["profile"]
    batch = next(iter(monitored["batches"].values()))
    numeric, categorical = next(iter(profile.numeric)), next(iter(profile.categorical))
    labels, reference, current = distribution_shares(profile, numeric, batch[numeric])
    assert len(labels) == len(reference) == len(current) == len(profile.numeric[numeric].edges) + 2
    assert labels[-1] == "missing" and labels[0].startswith("≤ ") and labels[-2].startswith("> ")
    assert reference.sum() == pytest.approx(1) and current.sum() == pytest.approx(1)
    unseen = batch[categorical].astype(object).copy()
    unseen.iloc[:200] = "a level never seen in training"
    labels, reference, current = distribution_shares(profile, categorical, unseen)
    assert labels == [*profile.categorical[categorical].levels, "unseen", "missing"]
    assert current[labels.index("unseen")] == pytest.approx(200 / len(batch))


def test_the_png_heatmap_writes_the_drifted_values_and_nothing_else(monitored: dict) -> None:
    m = psi_matrix(monitored["history"])
    fig = drift_heatmap(monitored["history"], THRESHOLD)
    grid = fig.axes[1]
    written = sorted(t.get_text() for t in grid.texts)
    assert written == sorted(f"{v:.2f}" for v in m.to_numpy().ravel() if v >= THRESHOLD) and written
    assert [t.get_text() for t in grid.get_yticklabels()] == list(m.index)
    empty = drift_heatmap(pd.DataFrame(columns=["batch_id"]))
    assert [t.get_text() for t in empty.axes[0].texts] == ["No monitored batch yet"]


def test_the_png_performance_chart_draws_the_labelled_months_and_the_limits(monitored: dict) -> None:
    fig = performance_over_time(monitored["history"], "perf__roc_auc", 0.78, 0.73)
    ax = fig.axes[0]
    (line, *_) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1] and len(ax.patches) == 2  # two pending months shaded
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "test split 0.780" in legend and "alert below 0.730" in legend and "labels pending" in legend
    nothing = performance_over_time(monitored["history"].assign(perf__roc_auc=np.nan))
    assert "No labelled batch yet" in nothing.axes[0].texts[0].get_text()


def test_the_svg_heatmap_has_a_hover_for_every_cell_and_escapes_what_the_data_says(monitored: dict) -> None:
    history = monitored["history"].copy()
    history.loc[0, "batch_id"] = "<script>alert('x')</script>"
    svg = drift_heatmap_svg(history, THRESHOLD, standalone=True)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)  # well-formed XML
    tips = [g for g in root.iter(f"{SVG}g") if g.get("class") == "nbops-tip"]
    features = psi_matrix(history).index
    cells = [g for g in tips if g.get("data-feature") is not None]
    assert len(cells) == len(features) * 4 and len(tips) == len(cells) + 4  # + one status per batch
    statuses = [g.get("data-status") for g in tips if g.get("data-status") is not None]
    assert statuses == history["status"].astype(str).tolist()
    assert root.get("width") and root.get("data-threshold") == "0.2"


def test_the_svg_performance_chart_says_each_value_and_each_pending_month(monitored: dict) -> None:
    history = monitored["history"]
    root = ET.fromstring(performance_svg(history, "perf__roc_auc", 0.78, 0.73))
    tips = {g.get("data-batch"): g.get("data-value") for g in root.iter(f"{SVG}g") if g.get("data-batch")}
    months = history["batch_id"].astype(str).tolist()
    assert list(tips) == months
    assert [tips[m] for m in months[2:]] == ["labels pending", "labels pending"]
    assert [float(tips[m]) for m in months[:2]] == pytest.approx(history["perf__roc_auc"][:2].tolist(), abs=5e-4)
    roles = {e.get("data-role") for e in root.iter() if e.get("data-role")}
    assert {"pending", "reference", "alert-level", "y-label"} <= roles
    # no metric at all: the chart says so, counting only the months whose labels have not arrived
    nothing = performance_svg(history.assign(perf__roc_auc=np.nan), "perf__roc_auc", None, None)
    assert "No labelled batch yet: labels pending for 2 batch(es)" in nothing


def test_an_unreadable_month_is_a_grey_cell_not_a_crash(tmp_path: Path, monitored: dict) -> None:
    history = monitored["history"].copy()
    psi = [c for c in history.columns if c.startswith("psi__")]
    history.loc[3, psi] = np.nan  # as a batch that could not be compared is recorded
    root = ET.fromstring(drift_heatmap_svg(history, THRESHOLD))
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert sum("not measured (the batch could not be compared)" in t for t in titles) == len(psi)
