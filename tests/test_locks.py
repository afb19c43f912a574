"""nbops.locks: one writer per products root, a clear line about who holds it, never a stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbops.locks import ProjectLocked, holders, holds, project_lock

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nbops.locks import project_lock
    with project_lock(Path(sys.argv[1]), command="nbops build --force", shared=sys.argv[2] == "shared"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def hold_in_another_process(lock: Path, shared: bool = False) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock), "shared" if shared else "exclusive"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_who_holds_it_and_since_when(tmp_path: Path) -> None:
    lock = tmp_path / "root/.nbops/build.lock"
    other = hold_in_another_process(lock)
    try:
        [holder] = holders(lock)
        assert holder.pid == other.pid and holder.command == "nbops build --force"
        with pytest.raises(ProjectLocked) as err, project_lock(lock, command="nbops models promote", wait=False):
            pass
        message = str(err.value)
        assert f"{tmp_path / 'root'} is in use: `nbops build --force` (pid {other.pid}, " in message
        assert " since " in message and "leave out --no-wait to wait" in message
    finally:
        other.kill()
        other.wait()


def test_a_waiting_writer_says_whom_it_waits_for_then_goes_on(tmp_path: Path) -> None:
    lock = tmp_path / "build.lock"
    other = hold_in_another_process(lock)
    told: list[str] = []

    def on_wait(found: list) -> None:
        told.extend(h.describe() for h in found)
        other.terminate()  # the holder finishes while we wait
        other.wait()

    with project_lock(lock, command="nbops build", on_wait=on_wait):
        assert holds(lock)
        assert [h.command for h in holders(lock)] == ["nbops build"]  # only us now
    other.wait()
    assert len(told) == 1 and told[0].startswith(f"`nbops build --force` (pid {other.pid}")
    assert not holders(lock)  # our record went with the lock


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    lock = tmp_path / "build.lock"
    other = hold_in_another_process(lock)
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    assert not holders(lock)  # its record is ignored: the process is gone
    with project_lock(lock, command="nbops build", wait=False):
        pass


def test_shared_holders_run_side_by_side_but_never_beside_an_exclusive_one(tmp_path: Path) -> None:
    lock = tmp_path / "build.lock"
    task_run = hold_in_another_process(lock, shared=True)
    try:
        with project_lock(lock, command="nbops build --task train", shared=True, wait=False):
            assert sorted(h.shared for h in holders(lock)) == [True, True]
        with pytest.raises(ProjectLocked), project_lock(lock, command="nbops build", wait=False):
            pass
    finally:
        task_run.kill()
        task_run.wait()
    whole = hold_in_another_process(lock)
    try:
        with pytest.raises(ProjectLocked), project_lock(lock, command="nbops build --task x", shared=True, wait=False):
            pass
    finally:
        whole.kill()
        whole.wait()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    lock = tmp_path / "build.lock"
    with project_lock(lock, command="nbops retrain"):
        with project_lock(lock, command="nbops build", wait=False):  # the build a retrain starts
            assert holds(lock)
        assert holds(lock)
    assert not holds(lock)
    with project_lock(lock, command="again", wait=False):  # released: taken again at once
        pass
