"""What a running stage tells the build that started it: started, progress, failed.

``nbops build`` names a JSON-lines file in ``NBOPS_EVENTS`` for the Ploomber process. Stages append
small events to it (one ``write`` per line on a file opened for appending, so concurrent writers
never interleave a line) and the build tails it: a live progress bar per task on the terminal of
``make run``, and, when a task fails, the stage's own error message printed last. Nothing of this
goes to the stage's stdout or stderr, so the executed reports carry no progress bars.

Outside a build (a notebook opened by hand, a script, a test) ``progress`` is tqdm as usual.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, TypeVar

EVENTS_ENV = "NBOPS_EVENTS"
TASK_ENV = "NBOPS_TASK"
# Progress events are throttled: the terminal redraws a few times a second at most.
PROGRESS_INTERVAL = 0.25
T = TypeVar("T")


def channel() -> Path | None:
    """The build's event file, or None outside ``nbops build``."""
    raw = os.environ.get(EVENTS_ENV)
    return Path(raw) if raw else None


_current_task: str | None = None


def set_task(name: str) -> None:
    """Name the task whose events follow (called by the stage context as the notebook starts)."""
    global _current_task
    _current_task = name
    emit("start", task=name)


def emit(kind: str, **fields: Any) -> None:
    """Append one event to the build's channel (a no-op outside a build; never raises)."""
    path = channel()
    if path is None:
        return
    record = {
        "event": kind,
        "at": time.time(),
        "task": fields.pop("task", None) or _current_task or os.environ.get(TASK_ENV),
        **fields,
    }
    line = (json.dumps(record, default=str) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:  # progress is best effort: a full disk must not fail a stage
        pass


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events appended since ``offset`` (whole lines only) and the new offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        try:
            events.append(json.loads(raw))
        except ValueError:
            continue
    return events, offset + end


class Progress:
    """A progress bar: tqdm outside a build, throttled events to the build's terminal inside one."""

    def __init__(self, total: int | None, desc: str, unit: str = "it") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self._last = 0.0
        self._bar: Any = None
        if channel() is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        else:
            self._send(force=True)

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_INTERVAL or (self.total is not None and self.n >= self.total):
            self._last = now
            emit("progress", desc=self.desc, n=self.n, total=self.total, unit=self.unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            self._send()

    def set(self, n: int) -> None:
        """Move to ``n`` done (for work whose progress is read, not counted)."""
        self.update(max(0, n - self.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._send(force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate with a progress bar (see :class:`Progress`)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    with Progress(total, desc, unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def report_failure(exc: BaseException) -> None:
    """Tell the build why the stage failed: nbops' own message for an NbopsError, else the exception."""
    from nbops.errors import NbopsError

    emit("failed", error=type(exc).__name__, message=str(exc), nbops=isinstance(exc, NbopsError))


def install_failure_hook() -> None:
    """In a notebook run by a build, report any exception a cell raises before it fails the task.

    IPython's custom exception handler sees the exception in every shell Ploomber runs notebooks in
    (ploomber-engine's in-process shell and Papermill's kernels); it still shows the traceback, which
    stays in the executed notebook and the build log.
    """
    if channel() is None:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_nbops_failure_hook", False):
        return

    def handler(
        self: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: int | None = None
    ) -> Any:
        report_failure(value)
        return self.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)

    shell.set_custom_exc((Exception,), handler)
    shell._nbops_failure_hook = True
