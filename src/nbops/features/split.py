"""Train / validation / test split: by time when the table has a time column, else random (seeded).

A time-ordered split keeps the test set in the future of the training data, as it will be in
production; rows sharing a timestamp always land in the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """The three row sets and how they were cut."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str  # "time" or "random"

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def split_rows(
    df: pd.DataFrame,
    *,
    time_column: str | None,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
) -> Split:
    """Cut ``df`` into train, validation and test sets.

    Args:
        df: the valid rows.
        time_column: a datetime column to order by, or None for a random split.
        valid_fraction, test_fraction: approximate shares of rows.
        seed: seed of the random split.

    Returns:
        The split; every split is non-empty.
    """
    n = len(df)
    if n < 30:
        raise ValueError(f"{n} valid rows are too few to split into train, validation and test (need at least 30)")
    if time_column:
        t = df[time_column]
        order = np.argsort(t.to_numpy(), kind="stable")
        ranked = t.to_numpy()[order]
        # Cut at the timestamps at the requested quantiles, so equal timestamps stay together.
        test_start = ranked[int(n * (1 - test_fraction))]
        valid_start = ranked[int(n * (1 - test_fraction - valid_fraction))]
        test_mask = (t >= test_start).to_numpy()
        valid_mask = ((t >= valid_start) & (t < test_start)).to_numpy()
        if test_mask.all() or valid_mask.sum() == 0 or (~(test_mask | valid_mask)).sum() == 0:
            fallback = split_rows(df, time_column=None, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed)
            fallback.method = "random (too few distinct times)"
            return fallback
        train_mask = ~(test_mask | valid_mask)
        method = "time"
    else:
        rng = np.random.default_rng(seed)
        u = rng.random(n)
        test_mask = u < test_fraction
        valid_mask = (u >= test_fraction) & (u < test_fraction + valid_fraction)
        train_mask = ~(test_mask | valid_mask)
        method = "random"
    return Split(
        train=df[train_mask].reset_index(drop=True),
        valid=df[valid_mask].reset_index(drop=True),
        test=df[test_mask].reset_index(drop=True),
        method=method,
    )
