"""nbops: a notebook-native MLOps workflow.

The library behind the stage notebooks, organised by lifecycle stage: ``nbops.data`` (ingest,
validation, simulation), ``nbops.features``, ``nbops.modeling``, ``nbops.runtime`` (the scoring
runtime exported in the wheel) and ``nbops.tracking``. It never imports Ploomber.
"""

from __future__ import annotations

__version__ = "0.1.0"

from nbops.stage import Stage, stage

__all__ = ["Stage", "stage", "__version__"]
