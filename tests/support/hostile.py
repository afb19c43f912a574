"""A table as an attacker (or a careless export) writes it: markup in column names and category
values, a backtick, a comma in a name, a row index saved with the CSV, an infinite target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT_VALUE = "<script>alert(1)</script>"
IMG_COLUMN = "<img src=x onerror=alert(2)>"
HOVER_VALUE = "<b onmouseover=alert(3)>bold</b>"
BACKTICK_COLUMN = "x`y"
COMMA_COLUMN = "a,b"


def write_hostile_table(path: Path, rows: int = 4000, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    months = pd.date_range("2023-01-01", periods=24, freq="MS").repeat(rows // 24 + 1)[:rows]
    df = pd.DataFrame(
        {
            "month": months.strftime("%Y-%m-%d"),
            IMG_COLUMN: rng.normal(size=rows),
            COMMA_COLUMN: rng.normal(size=rows),
            BACKTICK_COLUMN: rng.choice([SCRIPT_VALUE, "plain", HOVER_VALUE], rows),
            "grade": rng.choice(["A", "B", "C"], rows),
        }
    )
    logit = df[IMG_COLUMN] + (df[BACKTICK_COLUMN] == "plain") * 1.0 - 2
    df["default"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    df.loc[7, "default"] = np.inf
    df.to_csv(path)  # with its row index: a blank first header, as pandas writes by default
    return path
