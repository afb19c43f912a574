"""The one feature transform, fitted on training data and applied identically at scoring time.

Numeric features pass through as float64; categorical features become integer codes over the levels
seen in training, which LightGBM treats as categories. Missing values stay NaN, which LightGBM
routes down its learned missing-value branch. The fitted state is plain JSON: never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT_VERSION = 1


class UnseenCategoryError(ValueError):
    """A categorical value was not seen in training and ``strict`` was requested."""

    def __init__(self, column: str, values: Sequence[str], rows: Sequence[int], allowed: Sequence[str]):
        self.column, self.values, self.rows, self.allowed = column, list(values), list(rows), list(allowed)
        shown = ", ".join(map(repr, self.values[:5]))
        super().__init__(
            f"column '{column}': unseen categor{'y' if len(self.values) == 1 else 'ies'} {shown} "
            f"at rows {', '.join(map(str, self.rows[:10]))}; expected one of {', '.join(self.allowed[:10])}"
        )


def level_strings(col: pd.Series) -> pd.Series:
    """Categorical values as text, the same way at fit and at scoring time.

    Whole numbers print without a decimal point, so a code column read as float because it has a
    missing value (1.0) still matches the level learned as "1".
    """
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype=float, na_value=np.nan)
        finite = values[~np.isnan(values)]
        if finite.size == 0 or np.all(np.mod(finite, 1) == 0):
            return col.astype("Int64").astype("string")
    return col.astype("string")


def _level_key(value: Any) -> Any:
    """A record value as the level text ``level_strings`` would give it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


@dataclass
class FeatureTransform:
    """Maps a table to the exact float64 matrix the booster is trained on and scores."""

    numeric: list[str]
    categorical: dict[str, list[str]]
    feature_names: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.feature_names:
            self.feature_names = [*self.numeric, *self.categorical]
        self._index = {name: pd.Index(levels) for name, levels in self.categorical.items()}
        # Per feature: None for numeric, or the level -> code lookup (the serving path).
        self._plan = [
            (name, {lv: float(i) for i, lv in enumerate(self.categorical[name])} if name in self.categorical else None)
            for name in self.feature_names
        ]

    @classmethod
    def fit(cls, df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> FeatureTransform:
        """Learn the categorical levels from training rows (sorted, so the codes are deterministic)."""
        levels = {name: sorted(level_strings(df[name]).dropna().unique().tolist()) for name in categorical}
        return cls(numeric=list(numeric), categorical=levels)

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical features in the matrix (for LightGBM)."""
        return [self.feature_names.index(n) for n in self.categorical]

    def transform(self, df: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """Return the feature matrix, columns in ``feature_names`` order.

        Args:
            df: rows with at least the feature columns (other columns are ignored).
            strict: raise :class:`UnseenCategoryError` on a category not seen in training instead of
                treating it as missing.
        """
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise KeyError(f"missing feature columns: {', '.join(missing)}")
        out = np.empty((len(df), len(self.feature_names)), dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            col = df[name]
            if name in self._index:
                codes = self._index[name].get_indexer(pd.Index(level_strings(col).astype(object)))
                if strict:
                    unseen = (codes < 0) & col.notna().to_numpy()
                    if unseen.any():
                        rows = np.flatnonzero(unseen)
                        raise UnseenCategoryError(
                            name,
                            pd.unique(col.to_numpy()[rows]).astype(str).tolist(),
                            rows.tolist(),
                            self.categorical[name],
                        )
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The same matrix as ``transform(pd.DataFrame(records))``, without building a DataFrame.

        A one-row DataFrame costs several times the prediction itself, so serving encodes records
        directly; a test proves both paths give identical matrices.
        """
        out = np.empty((len(records), len(self._plan)), dtype=np.float64)
        nan = np.nan
        for i, record in enumerate(records):
            row = out[i]
            for j, (name, codes) in enumerate(self._plan):
                value = record.get(name)
                if codes is None:
                    row[j] = nan if value is None else float(value)
                else:
                    row[j] = nan if value is None else codes.get(_level_key(value), nan)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureTransform:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"feature transform format {data.get('format_version')} is not supported (expected {FORMAT_VERSION})"
            )
        return cls(numeric=data["numeric"], categorical=data["categorical"], feature_names=data["feature_names"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureTransform:
        return cls.from_dict(json.loads(Path(path).read_text()))
