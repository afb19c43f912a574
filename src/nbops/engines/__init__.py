"""Where the heavy stages compute: pandas in one process, or a Dask cluster, behind one interface
(:class:`nbops.engines.base.Engine`), chosen once from the parameters by :func:`engine_for`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbops.engines.base import Engine


def engine_for(params: Any) -> Engine:
    """The engine ``params.engine`` names ('pandas' or 'dask'; Dask imported only when chosen)."""
    name = getattr(params, "engine", "pandas")
    if name == "dask":
        from nbops.engines.dask import DaskEngine

        return DaskEngine(params)
    from nbops.engines.pandas import PandasEngine

    return PandasEngine()
