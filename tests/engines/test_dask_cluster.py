"""Connecting the dask engine to a scheduler: a real one started as `dask scheduler` / `dask worker`
processes on 127.0.0.1, and the failure modes that must answer fast (a closed port, a port that does
not speak Dask, a scheduler without workers, a malformed address); the pandas engine never pays for
Dask."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nbops.config.params import ComputeParams
from nbops.engines.dask.cluster import close_all, describe, get_client, normalise_address
from nbops.errors import ConfigError
from tests.support import free_port, stop_process

SECONDS = 10.0  # the promise: a clear error within seconds, never a hang
DASK = Path(sys.executable).parent / "dask"


def test_closed_port_is_a_clear_error_within_seconds() -> None:
    port = free_port()  # nothing listens there
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        get_client(ComputeParams(engine="dask", dask_scheduler=address))
    elapsed = time.perf_counter() - t0
    message = str(info.value)
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    assert address in message
    assert "connection refused" in message
    assert (
        "what to do:" in message
        and "dask scheduler" in message
        and "dask_scheduler: local" in message
        and "engine: pandas" in message
    )


@pytest.mark.slow  # waits out the connect timeout (seconds)
def test_a_port_that_does_not_speak_dask_times_out_within_seconds() -> None:
    """Something accepts the connection but never answers (the worst case: no refusal to act on)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError) as info:
            get_client(ComputeParams(engine="dask", dask_scheduler=address))
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    assert address in str(info.value) and "did not answer as a Dask scheduler" in str(info.value)


@pytest.mark.parametrize(
    ("address", "found"),
    [
        ("udp://10.0.0.5:8786", "scheme 'udp'"),
        ("tcp://10.0.0.5", "needs a host and a port"),
        ("tcp://10.0.0.5:port", "found 'tcp://10.0.0.5:port'"),
        ("just-a-name", "needs a host and a port"),
    ],
)
def test_malformed_addresses_say_what_is_expected(address: str, found: str) -> None:
    with pytest.raises(ConfigError, match="expected 'local', or a scheduler address such as tcp://") as info:
        normalise_address(address)
    assert found in str(info.value)


def test_host_port_means_tcp() -> None:
    assert normalise_address("10.0.0.5:8786") == ("tcp://10.0.0.5:8786", "10.0.0.5", 8786)


def test_pandas_engine_imports_no_dask(project: Path) -> None:
    """`import nbops.stages` and `nbops check` (engine: pandas) load neither Dask nor distributed."""
    code = (
        "import sys; from pathlib import Path; import nbops.pipeline.runners.monitor; from nbops.pipeline.check "
        "import check_project; "
        f"check_project(Path({str(project)!r}), 'env.yaml'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(DASK), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_listening(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} after {seconds:g} s")


@pytest.mark.slow  # starts `dask scheduler` and `dask worker` processes
def test_a_real_scheduler_without_then_with_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dask scheduler` alone is refused (no workers, named); once a `dask worker` joins, the engine
    connects to it as a remote cluster and runs work there."""
    port = free_port()  # nothing listens there
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    worker = None
    try:
        wait_listening(port)
        monkeypatch.setenv("NBOPS_DASK_CONNECT_TIMEOUT", "2")
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="has no workers") as info:
            get_client(ComputeParams(engine="dask", dask_scheduler=address))
        assert time.perf_counter() - t0 < SECONDS and address in str(info.value)
        monkeypatch.delenv("NBOPS_DASK_CONNECT_TIMEOUT")
        worker = start(
            "worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--name",
            "w0",
        )
        deadline = time.monotonic() + 60
        while True:  # the worker takes a few seconds to join
            try:
                client = get_client(ComputeParams(engine="dask", dask_scheduler=address))
                break
            except ConfigError:
                if time.monotonic() > deadline:
                    raise
        info_ = describe(client)
        assert info_["cluster"] == "remote" and info_["workers"] == 1 and info_["scheduler"] == address
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        assert get_client(ComputeParams(engine="dask", dask_scheduler=address)) is client  # cached
    finally:
        close_all()
        if worker is not None:
            stop_process(worker)
        stop_process(scheduler)


def test_preflight_checks_the_address_without_importing_dask() -> None:
    """What `nbops check` can call before a build: form and reachability, in milliseconds, no Dask."""
    port = free_port()  # nothing listens there
    code = (
        "import sys, time\n"
        "from nbops.errors import ConfigError\n"
        "from nbops.engines.dask.cluster import preflight\n"
        "preflight('local')\n"
        "t0 = time.perf_counter()\n"
        f"try:\n    preflight('127.0.0.1:{port}')\nexcept ConfigError as exc:\n    print(repr(str(exc)))\n"
        "print(time.perf_counter() - t0)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, seconds, imported = proc.stdout.strip().splitlines()
    assert f"tcp://127.0.0.1:{port}" in message and "connection refused" in message
    assert float(seconds) < 1.0 and imported == "[]"
