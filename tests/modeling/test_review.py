"""nbops.modeling.review (the worked example's logic): per-level rates and the four-fifths finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbops.data.ingest import simulator_schema
from nbops.errors import ConfigError, DataError
from nbops.modeling.review import OTHER, review_figure, segment_review


def rows_and_predictions(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """400 rows: region 'north' is flagged 60% of the time, every other region 10%; 20 rows of 'tiny'."""
    rng = np.random.default_rng(seed)
    region = np.array(["north"] * 100 + ["south"] * 140 + ["east"] * 140 + ["tiny"] * 20)
    flagged_share = np.where(region == "north", 0.6, 0.1)
    p = np.where(rng.random(len(region)) < flagged_share, 0.9, 0.1)
    y = (rng.random(len(region)) < p).astype(float)
    rows = pd.DataFrame({"region": region, "education": "bachelor", "default": y})
    return rows, pd.DataFrame({"prediction": p})


def test_each_level_gets_its_rates_and_a_low_ratio_is_a_finding() -> None:
    rows, predictions = rows_and_predictions()
    review = segment_review(simulator_schema(), rows, predictions, columns=["region"], min_rows=50)
    table = review.table.set_index("level")
    assert list(table.index) == ["south", "east", "north", OTHER]  # pooled below min_rows
    north = rows["region"] == "north"
    flagged = predictions["prediction"] >= 0.5
    assert table.loc["north", "rows"] == 100
    assert table.loc["north", "flagged_rate"] == pytest.approx(flagged[north].mean())
    assert table.loc["north", "observed_rate"] == pytest.approx(rows.loc[north, "default"].mean())
    positives = north & (rows["default"] == 1)
    assert table.loc["north", "true_positive_rate"] == pytest.approx(flagged[positives].mean())
    best = table["not_flagged_rate"].max()
    assert table.loc["north", "ratio"] == pytest.approx(table.loc["north", "not_flagged_rate"] / best, abs=1e-4)
    assert len(review.findings) == 1 and review.findings[0].startswith("region = north: ")
    assert review.summary()["lowest_ratio"] == pytest.approx(table["ratio"].min())
    assert review_figure(review).axes  # one panel per column


def test_a_model_that_flags_every_level_alike_has_no_findings() -> None:
    rows, predictions = rows_and_predictions()
    predictions["prediction"] = np.resize([0.9, 0.1, 0.1, 0.1, 0.1], len(rows))  # 20% of every region
    review = segment_review(simulator_schema(), rows, predictions, columns=["region"], min_rows=10)
    assert review.findings == [] and review.table["ratio"].min() > 0.95


def test_misaligned_predictions_and_unknown_columns_say_what_to_do() -> None:
    rows, predictions = rows_and_predictions()
    with pytest.raises(DataError, match="do not match the test split"):
        segment_review(simulator_schema(), rows, predictions.iloc[:10], columns=["region"])
    with pytest.raises(ConfigError, match="column\\(s\\) regoin are not in the test rows; choose from"):
        segment_review(simulator_schema(), rows, predictions, columns=["regoin"])
