"""Feature engineering: the split, the fitted feature transform and the project's own feature code."""

from nbops.features.build import FeaturesResult, build_features
from nbops.features.code import load_feature_code, try_feature_code
from nbops.features.split import Split, split_rows

__all__ = ["FeaturesResult", "Split", "build_features", "load_feature_code", "split_rows", "try_feature_code"]
