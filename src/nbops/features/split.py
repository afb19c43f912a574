"""Train / validation / test split: by time when the table has a time column, else random (seeded).

A time-ordered split keeps the test set in the future of the training data, as it will be in
production; rows sharing a timestamp always land in the same split. A random split can be stratified
(the features stage stratifies binary targets): each class is cut in the requested shares, so the
validation and test sets have the positive rate of the whole table instead of whatever chance gives a
small table (a 569-row table once gave a test positive rate of 0.276 against 0.396 in train).
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
    stratified_by: str | None = None  # the column a random split kept the class shares of

    def description(self) -> str:
        """How the rows were cut, in words: ``time``, ``random, stratified by default``."""
        return self.method + (f", stratified by {self.stratified_by}" if self.stratified_by else "")

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def split_rows(
    df: pd.DataFrame,
    *,
    time_column: str | None,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    stratify: str | None = None,
) -> Split:
    """Cut ``df`` into train, validation and test sets.

    Args:
        df: the valid rows.
        time_column: a datetime column to order by, or None for a random split.
        valid_fraction, test_fraction: approximate shares of rows.
        seed: seed of the random split.
        stratify: a column (a binary target) whose classes a random split cuts one by one in the
            requested shares; ignored by the time-ordered split, which never looks at the target.

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
            fallback = split_rows(
                df,
                time_column=None,
                valid_fraction=valid_fraction,
                test_fraction=test_fraction,
                seed=seed,
                stratify=stratify,
            )
            fallback.method = "random (too few distinct times)"
            return fallback
        train_mask = ~(test_mask | valid_mask)
        method = "time"
    else:
        rng = np.random.default_rng(seed)
        u = rng.random(n)
        if stratify is not None:
            codes, _ = pd.factorize(df[stratify], use_na_sentinel=False)
            test_mask, valid_mask = _stratified_masks(codes, u, valid_fraction, test_fraction)
        else:
            test_mask = u < test_fraction
            valid_mask = (u >= test_fraction) & (u < test_fraction + valid_fraction)
        train_mask = ~(test_mask | valid_mask)
        method = "random"
    return Split(
        train=df[train_mask].reset_index(drop=True),
        valid=df[valid_mask].reset_index(drop=True),
        test=df[test_mask].reset_index(drop=True),
        method=method,
        stratified_by=stratify if method == "random" else None,
    )


def _stratified_masks(
    codes: np.ndarray, u: np.ndarray, valid_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Test and validation masks that take each class's share of both sets.

    The same uniform numbers as the plain random split decide which rows: within each class the rows
    with the smallest numbers go to test, the next ones to validation. The totals are the requested
    shares of all rows (at least one row each), apportioned to the classes by largest remainder.
    """
    n = len(codes)
    sizes = np.bincount(codes)
    test_counts = _apportion(max(1, round(n * test_fraction)), sizes)
    valid_counts = np.minimum(_apportion(max(1, round(n * valid_fraction)), sizes), sizes - test_counts)
    test_mask = np.zeros(n, dtype=bool)
    valid_mask = np.zeros(n, dtype=bool)
    for k in range(len(sizes)):
        members = np.flatnonzero(codes == k)
        ranked = members[np.argsort(u[members], kind="stable")]
        test_mask[ranked[: test_counts[k]]] = True
        valid_mask[ranked[test_counts[k] : test_counts[k] + valid_counts[k]]] = True
    return test_mask, valid_mask


def _apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` rows shared among classes in proportion to ``sizes`` (largest remainder method)."""
    quotas = total * sizes / sizes.sum()
    counts = np.floor(quotas).astype(int)
    short = total - int(counts.sum())
    if short > 0:
        order = np.argsort(-(quotas - counts), kind="stable")
        counts[order[:short]] += 1
    apportioned: np.ndarray = np.minimum(counts, sizes)
    return apportioned
