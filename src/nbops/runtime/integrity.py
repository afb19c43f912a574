"""Checksums of a model's files: written at registration, verified before every load."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

MANIFEST = "MANIFEST.json"
MODEL_FILE = "model.txt"
TRANSFORM_FILE = "feature_transform.json"
SCHEMA_FILE = "input_schema.json"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "reference_profile.json"  # the training data's profile (the registry's PROFILE_FILE)
# a binary model's performance estimator (CBPE calibration maps as JSON; nbops.monitoring.estimate)
ESTIMATOR_FILE = "performance_estimator.json"
FEATURE_CODE_FILE = "feature_code.py"  # the project's feature code, when the model has derived features


class IntegrityError(RuntimeError):
    """A model file does not match the checksum recorded when the model was registered."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(read: Callable[[str], bytes], manifest: Mapping[str, str], where: str) -> dict[str, bytes]:
    """Read every file listed in ``manifest`` and check its SHA-256; return the verified bytes."""
    contents: dict[str, bytes] = {}
    bad = []
    for name, expected in sorted(manifest.items()):
        try:
            data = read(name)
        except FileNotFoundError:
            bad.append(f"{name}: missing")
            continue
        if sha256_bytes(data) != expected:
            bad.append(f"{name}: checksum {sha256_bytes(data)[:12]}… != recorded {expected[:12]}…")
        contents[name] = data
    if bad:
        raise IntegrityError(
            f"refusing to load the model in {where}: its files changed after it was registered ({'; '.join(bad)}). "
            "Rebuild the package from the registry (`nbops package VERSION`) rather than editing its files."
        )
    return contents
