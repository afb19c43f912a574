"""Writing files so that nobody ever reads half of one: write beside the target under a unique name,
then rename over it (one atomic step on POSIX). Every product, state and record file of nbops is
written through here; the scoring runtime (the wheel) keeps its own copy, as it imports no nbops.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` in one rename.

    The temporary name is unique (two writers never share it) and starts with a dot; on failure it
    is removed, so a crash leaves the old file, never a half-written one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_with(writer: Callable[[Path], Any], dest: str | Path) -> Path:
    """Run ``writer(tmp_path)`` and move the result to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)


def write_text(text: str, dest: str | Path) -> Path:
    """Write text (UTF-8) atomically."""
    return write_with(lambda tmp: tmp.write_text(text, encoding="utf-8"), dest)


def write_bytes(data: bytes, dest: str | Path) -> Path:
    """Write bytes atomically."""
    return write_with(lambda tmp: tmp.write_bytes(data), dest)


def write_json(data: Any, dest: str | Path, *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Write JSON atomically (sorted and indented by default, so diffs stay readable)."""
    return write_text(json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n", dest)
