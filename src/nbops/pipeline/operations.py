"""An operator's registry actions (promote, roll back), taken under the root's build lock, so that a
promotion never lands in the middle of a build that reads or writes the same registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nbops import locks
from nbops.config import paths
from nbops.registry.store import ModelVersion, Registry

OnWait = Callable[[list[locks.Holder]], None]


def products_root(registry: Registry) -> Path:
    """The products root a dataset's registry lives under (``<root>/registry/<dataset>``)."""
    return registry.root.parent.parent


def promote_version(
    registry: Registry, version: str, *, reason: str, wait: bool = True, on_wait: OnWait | None = None
) -> tuple[str | None, ModelVersion]:
    """Verify ``version`` and make it production; returns the previous production version and it."""
    with locks.project_lock(
        products_root(registry) / paths.BUILD_LOCK, command=locks.command_line(), wait=wait, on_wait=on_wait
    ):
        chosen = registry.get(version)
        registry.verify(chosen.version)
        return registry.promote(chosen.version, reason), chosen


def rollback_production(
    registry: Registry, *, reason: str, wait: bool = True, on_wait: OnWait | None = None
) -> tuple[str, str]:
    """Put the previous production version back; returns (before, after)."""
    with locks.project_lock(
        products_root(registry) / paths.BUILD_LOCK, command=locks.command_line(), wait=wait, on_wait=on_wait
    ):
        return registry.rollback(reason)
