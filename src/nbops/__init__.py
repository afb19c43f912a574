"""nbops: a notebook-native MLOps workflow.

The library behind the stage notebooks, organised by lifecycle stage: ``nbops.data`` (ingest,
validation, simulation), ``nbops.features``, ``nbops.modeling``, ``nbops.runtime`` (the scoring
runtime exported in the wheel) and ``nbops.tracking``. It never imports Ploomber.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbops.pipeline.context import Stage, stage

__all__ = ["Stage", "stage", "__version__"]


def __getattr__(name: str) -> Any:
    """``nbops.stage(...)``, what every stage notebook calls first, without importing the pipeline
    layer for someone who only wants, say, ``nbops.runtime``."""
    if name in ("stage", "Stage"):
        from nbops.pipeline import context

        return getattr(context, name)
    raise AttributeError(f"module 'nbops' has no attribute {name!r}")
