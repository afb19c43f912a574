"""Monitoring figures shared by the monitor report and the dashboards."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure


def psi_matrix(history: pd.DataFrame) -> pd.DataFrame:
    """Feature × batch PSI table from the history's psi__<feature> columns."""
    cols = [c for c in history.columns if c.startswith("psi__")]
    if history.empty or not cols:
        return pd.DataFrame()
    m = history.set_index("batch_id")[cols].astype(float).T
    m.index = [c.removeprefix("psi__") for c in m.index]
    return m


def drift_heatmap(history: pd.DataFrame, threshold: float = 0.2) -> Figure:
    """PSI per feature (rows) and batch (columns), banded at 0.1 (watch) and the alert threshold."""
    m = psi_matrix(history)
    fig = Figure(figsize=(max(6, 0.45 * m.shape[1] + 3), max(3, 0.3 * m.shape[0] + 1.2)))
    ax = fig.subplots()
    if m.empty:
        ax.text(0.5, 0.5, "No monitored batch yet", ha="center", va="center")
        ax.axis("off")
        return fig
    cmap = ListedColormap(["#e8f1e4", "#fbe3a1", "#f08a5d", "#b83b5e"])
    bounds = [0, 0.1, threshold, 2 * threshold, max(10.0, float(np.nanmax(m.values)) + 1)]
    norm = BoundaryNorm(bounds, cmap.N)
    image = ax.imshow(m.values, aspect="auto", cmap=cmap, norm=norm)
    ax.set_yticks(range(m.shape[0]), m.index)
    ax.set_xticks(range(m.shape[1]), m.columns, rotation=60, ha="right")
    ax.set_title(f"Feature drift (PSI) by batch: yellow ≥ 0.1 watch, red ≥ {threshold:g} drifted")
    # Equal-height bands, one label each, whatever the numeric width of the band.
    bar = fig.colorbar(image, ax=ax, spacing="uniform", pad=0.01)
    bar.set_ticks([(a + b) / 2 for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    bar.set_ticklabels(["stable < 0.1", f"watch < {threshold:g}", f"drifted < {2 * threshold:g}", "severe"])
    fig.tight_layout()
    return fig


def performance_over_time(history: pd.DataFrame, metric: str = "perf__roc_auc", reference: float | None = None) -> Figure:
    """A performance metric per batch once labels arrived, with the test-set value for reference."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    if metric not in history.columns or history[metric].isna().all():
        ax.text(0.5, 0.5, "No labelled batch yet: labels arrive after a delay", ha="center", va="center")
        ax.axis("off")
        return fig
    data = history.dropna(subset=[metric])
    ax.plot(data["batch_id"], data[metric], marker="o", label=metric.removeprefix("perf__"))
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", label=f"test split {reference:.3f}")
    ax.set_title(f"{metric.removeprefix('perf__')} by batch (labelled months)")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    fig.tight_layout()
    return fig
