"""Model versioning: an immutable version per trained model, aliases, the promotion gate, model cards."""

from nbops.registry.store import ModelVersion, Registry, RegistryError

__all__ = ["ModelVersion", "Registry", "RegistryError"]
