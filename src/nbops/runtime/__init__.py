"""The scoring runtime: what the exported wheel carries.

It imports only numpy, pandas, pyarrow and lightgbm (FastAPI, uvicorn and prometheus-client for
serving), never Jupyter, Ploomber, W&B or the rest of nbops, and uses only relative imports, so that
the packager copies this folder into the wheel unchanged. The same feature transform serves training and scoring.

Names are imported on first use, so that reading checksums or schemas does not load LightGBM.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ScoringModel": ".model",
    "IntegrityError": ".integrity",
    "FieldSpec": ".schema",
    "InputError": ".schema",
    "InputSchema": ".schema",
    "Problem": ".schema",
    "FeatureCode": ".derived",
    "FeatureCodeError": ".derived",
    "FeatureTransform": ".transform",
    "UnseenCategoryError": ".transform",
    "CompiledModelWarning": ".compiled",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
