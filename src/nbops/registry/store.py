"""The model registry: a folder of immutable versions with ``candidate`` and ``production`` aliases.

Layout under ``<root>/registry/<dataset>/``::

    versions/v0001/   model.txt, feature_transform.json, input_schema.json, metadata.json,
                      metrics.json, card.md, card.html, MANIFEST.json (SHA-256 of every file)
    aliases.json      {"candidate": "v0002", "production": "v0001"}
    data/<sha256>.parquet  the training data's raw snapshot, content-addressed (one file however many
                      versions share it), for `nbops reproduce`; pruned by keep_data_snapshots
    history.jsonl     one line per event (register, promote, rollback, gate-not-applied): what,
                      which version, who (user@host), when and why; appended, never rewritten

A version is written into a temporary folder and renamed into place in one step, so a crash never
leaves half a version; registering the same model twice returns the existing version. Alias changes
are serialised with a lock file and every event is appended to the history (rollback replays it).
A version is named ``vNNNN`` and nothing else: a name is never a path.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import shutil
import socket
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
HISTORY_FILE = "history.jsonl"
VERSION_NAME = re.compile(r"v\d{4,}")


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
        """The readable versions, oldest first (damaged ones: :meth:`damaged`)."""
        return [v for v in self._scan() if isinstance(v, ModelVersion)]

    def damaged(self) -> dict[str, str]:
        """Versions that cannot be read, each with why (a missing or truncated metadata file...)."""
        return {name: why for name, why in (v for v in self._scan() if isinstance(v, tuple))}

    def _scan(self) -> list[ModelVersion | tuple[str, str]]:
        if not self.versions_dir.exists():
            return []
        out: list[ModelVersion | tuple[str, str]] = []
        for folder in sorted(self.versions_dir.glob("v[0-9]*")):
            if not folder.is_dir() or not VERSION_NAME.fullmatch(folder.name):
                continue
            try:
                out.append(ModelVersion(folder.name, folder, _read_metadata(folder)))
            except RegistryError as exc:
                out.append((folder.name, str(exc)))
        return out

    def get(self, version: str) -> ModelVersion:
        """The version named ``version`` (``v0003`` or ``3``); an unknown, malformed or damaged one
        is a RegistryError saying which versions there are."""
        name = version_name(version)
        folder = self.versions_dir / name
        if not folder.is_dir():
            known = ", ".join(v.version for v in self.versions()) or "none yet"
            raise RegistryError(f"no model version '{version}' in {self.root} (registered: {known})")
        return ModelVersion(name, folder, _read_metadata(folder))

    def history(self) -> list[dict[str, Any]]:
        """Every registry event, oldest first (a registry from before the history file: the alias
        changes recorded in aliases.json)."""
        path = self.root / HISTORY_FILE
        if not path.exists():
            legacy: list[dict[str, Any]] = self.aliases().get("history", [])
            return legacy
        events = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError as exc:  # a line cut by a crash mid-append: the others still count
                events.append({"event": "damaged", "line": number, "reason": f"unreadable history line: {exc}"})
        return events

    def aliases(self) -> dict[str, Any]:
        path = self.root / "aliases.json"
        if not path.exists():
            return {}
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
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = (self.root / ".lock").open("w")
        except OSError as exc:
            raise RegistryError(
                f"cannot write the registry {self.root}: {exc.strerror or exc}; give this user write access to it "
                "(or set `root` in env.yaml to a folder you can write)"
            ) from None
        with fh:
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
            # damaged versions keep their numbers: a new version never takes a damaged one's name
            taken = [v.number for v in self.versions()] + [int(name[1:]) for name in self.damaged()]
            number = max(taken, default=0) + 1
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
                self._append(
                    {
                        "event": "register",
                        "version": version,
                        "reason": str(metadata.get("registered_by", "registered")),
                    }
                )
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self.get(version), True

    def _set(self, alias: str, version: str, reason: str, event: str) -> dict[str, Any]:
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias '{alias}' (known: {', '.join(ALIASES)})")
        version = self.get(version).version  # "2" and "v0002" name the same version: store one spelling
        data = self.aliases()
        previous = data.get(alias)
        if "history" in data and not (self.root / HISTORY_FILE).exists():
            for old in data["history"]:  # the old in-file history moves to the history file, once
                self._append({"event": _legacy_event(old), **old})
        data.pop("history", None)
        data[alias] = version
        self._append({"event": event, "alias": alias, "version": version, "previous": previous, "reason": reason})
        write_json(data, self.root / "aliases.json", sort_keys=False)
        return data

    # -- the training data, kept for reproduction ---------------------------------------------

    def keep_data(self, snapshot: Path, sha256: str) -> str:
        """Keep the raw training snapshot under ``data/<sha256>.parquet`` (once per content) and
        return that path relative to the registry."""
        name = f"data/{sha256}{snapshot.suffix or '.parquet'}"
        with self._locked():
            dest = self.root / name
            if not dest.exists():
                from nbops.files import write_bytes

                data = snapshot.read_bytes()
                if sha256_bytes(data) != sha256:
                    raise IntegrityError(f"{snapshot} changed while it was registered (sha256 differs)")
                write_bytes(data, dest)
                os.chmod(dest, 0o444)
        return name

    def prune_data(self, keep_versions: int) -> list[str]:
        """Remove data snapshots no longer needed: those of the newest ``keep_versions`` versions and
        of production and candidate stay (0 keeps every snapshot). Returns the removed names."""
        if keep_versions <= 0 or not (self.root / "data").is_dir():
            return []
        versions = self.versions()
        aliases = self.aliases()
        keep = {v.version for v in versions[-keep_versions:]} | {aliases.get(a) for a in ALIASES} - {None}
        needed = {v.metadata.get("data", {}).get("snapshot") for v in versions if v.version in keep}
        removed = []
        with self._locked():
            for blob in sorted((self.root / "data").iterdir()):
                name = f"data/{blob.name}"
                if blob.is_file() and name not in needed:
                    blob.unlink()
                    removed.append(name)
                    self._append(
                        {
                            "event": "data-pruned",
                            "version": "",
                            "reason": f"{name}: keep_data_snapshots={keep_versions}",
                        }
                    )
        return removed

    def record(self, event: str, version: str, reason: str, **details: Any) -> None:
        """Append an event that moves no alias (a registration, a gate not applied)."""
        with self._locked():
            self._append({"event": event, "version": version, "reason": reason, **details})

    def _append(self, event: dict[str, Any]) -> None:
        """One line at the end of the history, flushed to disk (the caller holds the lock)."""
        event = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "by": f"{getpass.getuser()}@{socket.gethostname()}",
            **event,
        }
        with (self.root / HISTORY_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def set_candidate(self, version: str, reason: str = "registered") -> None:
        with self._locked():
            self._set("candidate", version, reason, "candidate")

    def promote(self, version: str, reason: str = "promoted by hand") -> str | None:
        """Make ``version`` production; return the previous production version."""
        with self._locked():
            previous = self.aliases().get("production")
            self._set("production", version, reason, "promote")
            return previous

    def rollback(self, reason: str | None = None) -> tuple[str, str]:
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
            for event in self.history():
                if event.get("alias") != "production":
                    continue
                if event.get("event") == "rollback" and stack:
                    stack.pop()
                elif not stack or stack[-1] != event["version"]:
                    stack.append(event["version"])
            if len(stack) < 2:
                raise RegistryError(
                    f"nothing to roll back to: {current} is the only version left in the production history"
                )
            target = stack[-2]
            self._set("production", target, reason or f"rollback from {current}", "rollback")
            return current, target


def version_name(version: str) -> str:
    """``v0003`` for "v0003" or "3"; anything else (a path, a glob) is refused."""
    text = str(version).strip()
    if text.isdigit():
        return f"v{int(text):04d}"
    if re.fullmatch(r"v\d+", text):
        return f"v{int(text[1:]):04d}"
    raise RegistryError(f"'{version}' is not a model version: expected a name such as v0003 (or 3)")


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{folder.name} is damaged: {METADATA_FILE} is missing") from None
    except ValueError as exc:
        raise RegistryError(f"{folder.name} is damaged: {METADATA_FILE} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{folder.name} is damaged: {METADATA_FILE} holds no mapping")
    return data


def _legacy_event(old: Mapping[str, Any]) -> str:
    if old.get("alias") == "candidate":
        return "candidate"
    return "rollback" if str(old.get("reason", "")).startswith("rollback") else "promote"
