"""Feature engineering: the split and the fitted feature transform."""

from nbops.features.build import FeaturesResult, build_features
from nbops.features.split import Split, split_rows

__all__ = ["FeaturesResult", "Split", "build_features", "split_rows"]
