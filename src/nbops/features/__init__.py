"""Feature engineering: the split and the fitted feature transform."""

from nbops.features.build import FeaturesResult, build_features, load_schema_product
from nbops.features.split import Split, split_rows

__all__ = ["FeaturesResult", "Split", "build_features", "load_schema_product", "split_rows"]
