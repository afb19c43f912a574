"""The scoring runtime: what the exported wheel carries.

It imports only numpy, pandas, pyarrow and lightgbm (FastAPI and uvicorn for serving), never Jupyter,
Ploomber, W&B or the rest of nbops, and uses only relative imports, so that the packager copies this
folder into the wheel unchanged. The same feature transform serves training and scoring.
"""

from .model import IntegrityError, ScoringModel
from .schema import FieldSpec, InputError, InputSchema, Problem
from .transform import FeatureTransform, UnseenCategoryError

__all__ = ["FeatureTransform", "FieldSpec", "InputError", "InputSchema", "IntegrityError", "Problem", "ScoringModel", "UnseenCategoryError"]
