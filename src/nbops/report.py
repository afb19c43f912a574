"""Small display helpers for the stage notebooks, so the notebooks stay a few lines each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure


def show_summary(summary: Mapping[str, Any], drop: Iterable[str] = ()) -> pd.DataFrame:
    """A key/value mapping as a two-column table (nested values shown as text)."""
    skip = set(drop)
    rows = [(k, v if isinstance(v, int | float | str | bool | type(None)) else str(v)) for k, v in summary.items() if k not in skip]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def show_figures(figures: Mapping[str, Figure | Path], include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> None:
    """Display figures in order (inside Jupyter; a no-op elsewhere).

    A figure already saved as PNG is shown from its file: drawing it again would double the cost.
    """
    try:
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - outside Jupyter there is nothing to show
        return
    wanted = list(include) if include is not None else [k for k in figures if k not in set(exclude)]
    for name in wanted:
        item = figures[name]
        display(Image(filename=str(item)) if isinstance(item, Path) else item)
