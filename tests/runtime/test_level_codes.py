"""The vectorised category lookup (``level_codes``) gives exactly the reference positions on every kind
of column a batch brings: Arrow text, Python text, objects, Categoricals, integers, booleans, floats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nbops.runtime import transform as transform_module
from nbops.runtime.transform import FeatureTransform, level_codes, level_strings


def reference(col: pd.Series, index: pd.Index) -> np.ndarray:
    """The per-row way: each value's level text, looked up one by one."""
    found = index.get_indexer(pd.Index(level_strings(col).astype(object)))
    return np.where(found < 0, np.nan, found).astype(np.float64)


TEXT = ["b", None, "a", "zz", "c", "a", None, "b"]
LEVELS = pd.Index(["a", "b", "c"])
NUMBER_LEVELS = pd.Index(["0", "1", "2", "3"])
COLUMNS = {
    "str (Arrow)": (pd.Series(TEXT, dtype=pd.StringDtype("pyarrow", na_value=np.nan)), LEVELS),
    "string (Arrow, NA)": (pd.Series(TEXT, dtype=pd.StringDtype("pyarrow")), LEVELS),
    "string (Python)": (pd.Series(TEXT, dtype=pd.StringDtype("python")), LEVELS),
    "ArrowDtype string": (pd.Series(TEXT, dtype=pd.ArrowDtype(pa.string())), LEVELS),
    "ArrowDtype large_string": (pd.Series(TEXT, dtype=pd.ArrowDtype(pa.large_string())), LEVELS),
    "object text": (pd.Series(TEXT, dtype=object), LEVELS),
    "object text with NaN": (pd.Series(["a", np.nan, "c", "q"], dtype=object), LEVELS),
    "object mixed": (pd.Series(["1", 1, 1.0, True, None, 2.5], dtype=object), pd.Index(["1", "1.0", "True", "2.5"])),
    "category of text": (pd.Series(pd.Categorical(TEXT)), LEVELS),
    "category with unused and unseen": (pd.Series(pd.Categorical(["a", "q"], categories=["q", "a", "x"])), LEVELS),
    "category of floats": (pd.Series(pd.Categorical([1.0, 2.0, None])), pd.Index(["1", "1.0", "2.0"])),
    "empty category": (pd.Series(pd.Categorical([None, None], categories=[])), LEVELS),
    "int64": (pd.Series([3, 1, 0, 7, 1]), NUMBER_LEVELS),
    "Int64 with NA": (pd.Series([3, None, 0, 7], dtype="Int64"), NUMBER_LEVELS),
    "whole floats with NaN": (pd.Series([1.0, np.nan, 3.0, -0.0, 0.0, 9.0]), NUMBER_LEVELS),
    "fractional floats": (pd.Series([1.0, 1.5, -0.0, 0.0, np.nan]), pd.Index(["1.0", "1.5", "0.0", "-0.0"])),
    "floats with inf": (pd.Series([1.0, np.inf, np.nan]), pd.Index(["1.0", "inf"])),
    "all NaN floats": (pd.Series([np.nan, np.nan]), NUMBER_LEVELS),
    "bool": (pd.Series([True, False, True]), pd.Index(["False", "True"])),
    "boolean with NA": (pd.Series([True, None, False], dtype="boolean"), pd.Index(["False", "True"])),
    "empty text": (pd.Series([], dtype="str"), LEVELS),
}


@pytest.mark.parametrize("kind", list(COLUMNS))
def test_level_codes_equal_the_reference_on_every_column_kind(kind):
    col, index = COLUMNS[kind]
    got = level_codes(col, index)
    assert got.dtype == np.float64 and got.shape == (len(col),)
    np.testing.assert_array_equal(got, reference(col, index))


@pytest.mark.parametrize(
    "kind", ["str (Arrow)", "string (Python)", "object text", "category of text", "int64", "whole floats with NaN"]
)
def test_common_columns_take_a_path_without_a_string_per_row(kind, monkeypatch):
    """Text, Categoricals, integers and whole floats never go through level_strings row by row."""
    col, index = COLUMNS[kind]
    seen: list[int] = []
    original = transform_module.level_strings

    def counting(values: pd.Series) -> pd.Series:
        seen.append(len(values))
        return original(values)

    monkeypatch.setattr(transform_module, "level_strings", counting)
    level_codes(col, index)
    assert all(n <= len(index) + 1 for n in seen), f"level_strings ran on {seen} values for {len(col)} rows"


def test_a_parquet_batch_transforms_exactly_as_the_reference(tmp_path):
    """A batch read back from Parquet (Arrow text) and the same rows as Python objects: one matrix."""
    rng = np.random.default_rng(3)
    n = 5_000
    train = pd.DataFrame(
        {
            "grade": rng.choice(["A", "B", "C", None], n),
            "branch": rng.choice([1.0, 2.0, 3.0, np.nan], n),
            "income": rng.normal(size=n),
        }
    )
    transform = FeatureTransform.fit(train, ["income"], ["grade", "branch"])
    batch = train.assign(grade=rng.choice(["A", "B", "C", "D", None], n))
    batch.to_parquet(tmp_path / "batch.parquet", index=False)
    read = pd.read_parquet(tmp_path / "batch.parquet")
    assert isinstance(read["grade"].dtype, pd.StringDtype)
    expected = np.column_stack(
        [
            batch["income"].to_numpy(),
            reference(batch["grade"].astype(object), pd.Index(transform.categorical["grade"])),
            reference(batch["branch"], pd.Index(transform.categorical["branch"])),
        ]
    )
    for frame in (read, batch.astype({"grade": object}), batch.astype({"grade": "category"})):
        np.testing.assert_array_equal(transform.transform(frame), expected)
