"""One writer of a project at a time: the lock a build, a retrain or a promotion holds on its root.

An advisory ``flock`` on a file under ``<root>/.nbops/``: the kernel releases it when its process
ends, however it ends (``kill -9`` included), so a lock is never left stale. Beside it each holder
writes who it is (command, pid, user, host, since) so that a command that must wait can say whom
it waits for. A lock is exclusive (a build, a retrain, a promotion) or shared (the single-task runs
of an exported Airflow DAG, which write disjoint products and may run side by side, never beside a
whole build). Within one process a lock is re-entrant: a retrain holds it and the build it starts
takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nbops.errors import NbopsError
from nbops.files import write_json

# This process's held locks: path -> (shared?, depth, file handle, holder file).
_HELD: dict[Path, tuple[bool, int, TextIO, Path]] = {}


class ProjectLocked(NbopsError):
    """Another command holds the lock and the caller asked not to wait."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or waits for) a lock."""

    command: str
    pid: int
    user: str
    host: str
    since: float
    shared: bool = False

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        kind = " (shared)" if self.shared else ""
        return f"`{self.command}`{kind} (pid {self.pid}, {self.user}@{self.host}) since {when}"


def holders(lock: Path) -> list[Holder]:
    """The live holders recorded beside ``lock`` (records of ended processes are ignored)."""
    folder = _holders_dir(lock)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            holder = Holder(**data)
        except (OSError, ValueError, TypeError):
            continue
        if _alive(holder.pid):
            found.append(holder)
        else:  # a process killed while holding it: its record goes (the kernel freed the lock)
            path.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def project_lock(
    lock: Path,
    *,
    command: str,
    shared: bool = False,
    wait: bool = True,
    on_wait: Callable[[list[Holder]], None] | None = None,
) -> Iterator[None]:
    """Hold ``lock`` for the block: exclusive (the default) or shared.

    Args:
        lock: the lock file (created with its folder).
        command: what holds it, as a user would recognise it (``nbops build``).
        wait: when another command holds it, wait for it (calling ``on_wait`` once with the
            holders first) or, when False, raise :class:`ProjectLocked` naming them.
    """
    lock = lock.resolve()
    if lock in _HELD:
        held_shared, depth, handle, record = _HELD[lock]
        if held_shared and not shared:
            raise ProjectLocked(
                f"{lock}: this process holds the lock shared and asks for it exclusive; take it exclusive first"
            )
        _HELD[lock] = (held_shared, depth + 1, handle, record)
        try:
            yield
        finally:
            held_shared, depth, handle, record = _HELD[lock]
            _HELD[lock] = (held_shared, depth - 1, handle, record)
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
    except OSError as exc:
        raise NbopsError(
            f"cannot write {lock.parent.parent}: {exc.strerror or exc} ({lock}); nbops needs write access to the "
            "products root to build or change it: give this user write access, or set `root` in env.yaml"
        ) from None
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            others = holders(lock)
            if not wait:
                who = "; ".join(h.describe() for h in others) or "another nbops command"
                raise ProjectLocked(
                    f"{lock.parent.parent} is in use: {who} holds it; run again when it has finished, "
                    "or leave out --no-wait to wait for it"
                ) from None
            if on_wait is not None:
                on_wait(others)
            fcntl.flock(handle, mode)
        record = _holders_dir(lock) / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        me = Holder(command, os.getpid(), getpass.getuser(), socket.gethostname(), time.time(), shared)
        write_json(me.__dict__, record)
        _HELD[lock] = (shared, 1, handle, record)
        try:
            yield
        finally:
            _HELD.pop(lock, None)
            record.unlink(missing_ok=True)
    finally:
        handle.close()  # releases the flock


def holds(lock: Path, *, exclusive: bool = True) -> bool:
    """Whether this process holds ``lock`` (exclusively, unless ``exclusive`` is False)."""
    entry = _HELD.get(lock.resolve())
    return entry is not None and (not exclusive or not entry[0])


def _holders_dir(lock: Path) -> Path:
    return lock.with_name(lock.name + ".holders")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def command_line() -> str:
    """This process's command as a user typed it (``nbops build --set ...``), for a holder record."""
    args = sys.argv[1:]
    return " ".join(["nbops", *args]) if args else "nbops"
