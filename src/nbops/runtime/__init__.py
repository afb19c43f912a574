"""The scoring runtime: what the exported wheel carries.

It imports only numpy, pandas, pyarrow and lightgbm, never Jupyter, Ploomber or W&B, so that the
same feature transform serves training (inside the pipeline) and scoring (inside the wheel).
"""

from nbops.runtime.transform import FeatureTransform, UnseenCategoryError

__all__ = ["FeatureTransform", "UnseenCategoryError"]
