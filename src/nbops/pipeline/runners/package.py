"""Package: the scoring wheel of the production (or candidate) version, in dist/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbops.config.params import PackageParams
from nbops.data.io import file_sha256, write_json
from nbops.deploy.wheel import build_wheel
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import read_json
from nbops.registry.store import Registry, RegistryError


def run_package(stage: Stage[PackageParams]) -> dict[str, Any]:
    """Build the wheel of the version the alias names, from the registry register wrote."""
    registry = Registry(read_json(stage.inp("register", "registration"))["registry"])
    version = registry.alias(stage.params.package_alias)
    if version is None:
        raise RegistryError(f"no '{stage.params.package_alias}' model in {registry.root} to package")
    registry.verify(version.version)
    wheel = build_wheel(version, stage.out("manifest").parent)
    info = {
        "wheel": str(wheel),
        "package": version.metadata["package"],
        "model_version": version.version,
        "wheel_sha256": file_sha256(Path(wheel)),
        "alias": stage.params.package_alias,
    }
    write_json(info, stage.out("manifest"))
    return info
