"""The model registry: a folder of immutable versions with ``candidate`` and ``production`` aliases.

Layout under ``<root>/registry/<dataset>/``::

    versions/v0001/   model.txt, feature_transform.json, input_schema.json, metadata.json,
                      metrics.json, card.md, card.html, MANIFEST.json (SHA-256 of every file)
    aliases.json      {"candidate": "v0002", "production": "v0001", "history": [...]}

A version is written into a temporary folder and renamed into place in one step, so a crash never
leaves half a version; registering the same model twice returns the existing version. Alias changes
are serialised with a lock file and every change is appended to the history (for rollback).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops.errors import NbopsError
from nbops.files import write_json
from nbops.runtime.integrity import (
    MANIFEST,
    METADATA_FILE,
    MODEL_FILE,
    IntegrityError,
    sha256_bytes,
    verify,
)

ALIASES = ("candidate", "production")


class RegistryError(NbopsError):
    """An unknown version, an empty registry, nothing to roll back to."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its folder and metadata."""

    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def number(self) -> int:
        return int(self.version.lstrip("v"))

    def file(self, name: str) -> Path:
        return self.path / name


class Registry:
    """Versions and aliases of one dataset's models."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    # -- reading ------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        if not self.versions_dir.exists():
            return []
        out = []
        for folder in sorted(self.versions_dir.glob("v[0-9]*")):
            meta = folder / METADATA_FILE
            if folder.is_dir() and meta.exists():
                out.append(ModelVersion(folder.name, folder, json.loads(meta.read_text())))
        return out

    def get(self, version: str) -> ModelVersion:
        name = version if version.startswith("v") else f"v{int(version):04d}" if version.isdigit() else version
        folder = self.versions_dir / name
        if not (folder / METADATA_FILE).exists():
            known = ", ".join(v.version for v in self.versions()) or "none yet"
            raise RegistryError(f"no model version '{version}' in {self.root} (registered: {known})")
        return ModelVersion(name, folder, json.loads((folder / METADATA_FILE).read_text()))

    def aliases(self) -> dict[str, Any]:
        path = self.root / "aliases.json"
        if not path.exists():
            return {"history": []}
        aliases: dict[str, Any] = json.loads(path.read_text())
        return aliases

    def alias(self, name: str) -> ModelVersion | None:
        if name not in ALIASES:
            raise RegistryError(f"unknown alias '{name}' (known: {', '.join(ALIASES)})")
        version = self.aliases().get(name)
        return self.get(version) if version else None

    def verify(self, version: str) -> None:
        """Raise IntegrityError if any file of ``version`` changed since it was registered."""
        mv = self.get(version)
        manifest = json.loads(mv.file(MANIFEST).read_text())
        verify(lambda name: (mv.path / name).read_bytes(), manifest["files"], str(mv.path))
        extra = sorted(p.name for p in mv.path.iterdir() if p.name != MANIFEST and p.name not in manifest["files"])
        if extra:
            raise IntegrityError(
                f"{mv.path} holds files that were not registered: {', '.join(extra)}; remove them (a version is "
                "immutable)"
            )

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def register(
        self,
        files: Mapping[str, bytes],
        metadata: Mapping[str, Any],
        derived: Callable[[dict[str, Any]], Mapping[str, bytes]] | None = None,
    ) -> tuple[ModelVersion, bool]:
        """Store a new immutable version atomically.

        Args:
            files: file name -> content (must include model.txt); metadata.json and MANIFEST.json are
                written here.
            metadata: lineage and metrics; ``version`` and ``created_at`` are added.
            derived: builds more files (the model card) from the final metadata.

        Returns:
            The version, and False when an identical model (same model file) was already registered.
        """
        model_sha = sha256_bytes(files[MODEL_FILE])
        with self._locked():
            for existing in self.versions():
                if existing.metadata.get("model_sha256") == model_sha:
                    return existing, False
            number = max((v.number for v in self.versions()), default=0) + 1
            version = f"v{number:04d}"
            meta = {
                **metadata,
                "version": version,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model_sha256": model_sha,
            }
            contents = {
                **files,
                **(derived(meta) if derived else {}),
                METADATA_FILE: (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode(),
            }
            manifest = {
                "version": version,
                "files": {name: sha256_bytes(data) for name, data in sorted(contents.items())},
            }
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.versions_dir))
            try:
                for name, data in contents.items():
                    (tmp / name).write_bytes(data)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
                for path in tmp.iterdir():
                    os.chmod(path, 0o444)  # immutable by convention and by permission
                os.chmod(tmp, 0o755)
                os.rename(tmp, self.versions_dir / version)  # atomic: the version appears whole or not at all
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self.get(version), True

    def _set(self, alias: str, version: str, reason: str) -> dict[str, Any]:
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias '{alias}' (known: {', '.join(ALIASES)})")
        version = self.get(version).version  # "2" and "v0002" name the same version: store one spelling
        data = self.aliases()
        previous = data.get(alias)
        data[alias] = version
        data.setdefault("history", []).append(
            {
                "alias": alias,
                "version": version,
                "previous": previous,
                "reason": reason,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        write_json(data, self.root / "aliases.json", sort_keys=False)
        return data

    def set_candidate(self, version: str, reason: str = "registered") -> None:
        with self._locked():
            self._set("candidate", version, reason)

    def promote(self, version: str, reason: str = "promoted by hand") -> str | None:
        """Make ``version`` production; return the previous production version."""
        with self._locked():
            previous = self.aliases().get("production")
            self._set("production", version, reason)
            return previous

    def rollback(self) -> tuple[str, str]:
        """Point production back at the version it had before the current one.

        Returns:
            (from_version, to_version).
        """
        with self._locked():
            data = self.aliases()
            current = data.get("production")
            if not current:
                raise RegistryError(f"nothing to roll back: {self.root} has no production model yet")
            # Replay the history as a stack: a promotion pushes, a rollback pops.
            stack: list[str] = []
            for event in data.get("history", []):
                if event["alias"] != "production":
                    continue
                if event["reason"].startswith("rollback") and stack:
                    stack.pop()
                elif not stack or stack[-1] != event["version"]:
                    stack.append(event["version"])
            if len(stack) < 2:
                raise RegistryError(
                    f"nothing to roll back to: {current} is the only version left in the production history"
                )
            target = stack[-2]
            self._set("production", target, f"rollback from {current}")
            return current, target
