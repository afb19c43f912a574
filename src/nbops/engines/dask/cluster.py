"""One Dask client per process: a LocalCluster on 127.0.0.1, or a connection to a real scheduler.

Why one per process: with the ploomber-engine executor every stage notebook runs inside Ploomber's
own process, so train, register, batch_score and monitor share the cluster the first of them
started (starting one takes a few seconds). Under Papermill each notebook's kernel starts its own.
The cluster is closed when the process exits.

The local cluster uses worker *processes* with one thread each (LightGBM and pandas hold the GIL in
places, and one thread per worker makes ``lightgbm.dask`` use exactly one core per worker), listens
on 127.0.0.1 only (every port, random) and has no dashboard, so nothing is exposed beyond this
machine; a test checks every listening socket of the cluster.

A remote scheduler is checked before anything is sent to it: a plain TCP connection first (a closed
port is refused at once, an unreachable host times out after a few seconds), then the Dask handshake
with a short timeout, then at least one worker with nbops and LightGBM importable. Every failure is a
:class:`~nbops.errors.ConfigError` naming the address, the cause and what to do, within seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nbops.errors import ConfigError

if TYPE_CHECKING:  # Dask is imported only when the dask engine is used
    from distributed import Client

log = logging.getLogger(__name__)

# Seconds to wait for a remote scheduler (TCP connect, handshake, first worker). NBOPS_DASK_CONNECT_TIMEOUT overrides.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_PORT = 8786
_WHAT_TO_DO = (
    "start the scheduler there and its workers (`dask scheduler --host 0.0.0.0 --port {port}`, then "
    "`dask worker {address}` on each machine, with nbops and the project's locked dependencies installed), "
    "or set dask_scheduler: local (a cluster on this machine) or engine: pandas in env.yaml "
    "(or --set dask_scheduler=local / --set engine=pandas)"
)


@dataclass
class _Handle:
    client: Client
    cluster: Any | None  # the LocalCluster we started, None for a remote scheduler
    address: str


_HANDLES: dict[tuple[str, int], _Handle] = {}
_LOCK = threading.Lock()
_ATEXIT = False


def connect_timeout() -> float:
    """Seconds allowed for each step of connecting to a remote scheduler."""
    raw = os.environ.get("NBOPS_DASK_CONNECT_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_CONNECT_TIMEOUT
    except ValueError as exc:
        raise ConfigError(f"NBOPS_DASK_CONNECT_TIMEOUT: expected a number of seconds, found {raw!r}") from exc


def get_client(params: Any) -> Client:
    """The process's Dask client for ``params`` (a :class:`~nbops.config.params.ComputeParams`), started once.

    Args:
        params: anything with ``dask_scheduler`` ('local' or an address) and ``dask_workers``.

    Raises:
        ConfigError: the scheduler cannot be reached or used (the message says why and what to do).
    """
    scheduler = str(params.dask_scheduler).strip()
    workers = int(params.dask_workers) if scheduler == "local" else 0
    key = (scheduler, workers)
    global _ATEXIT
    with _LOCK:
        handle = _HANDLES.get(key)
        if handle is not None and handle.client.status == "running":
            return handle.client
        handle = _start_local(workers) if scheduler == "local" else _connect(scheduler)
        _HANDLES[key] = handle
        if not _ATEXIT:
            atexit.register(close_all)
            _ATEXIT = True
        return handle.client


def _start_local(n_workers: int) -> _Handle:
    t0 = time.perf_counter()
    import dask
    from distributed import Client, LocalCluster

    # Work stealing off: the engine places partitions on workers on purpose (training's shards,
    # round robin by worker name) and its tasks are uniform, so stealing would only move them.
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # no dashboard, and the scheduler's HTTP endpoints (health, metrics) on a free loopback
            # port rather than 8787, which another cluster on the machine may hold
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    client = Client(cluster, set_as_default=False)
    log.info(
        "started a local Dask cluster at %s: %d workers x 1 thread (%.1f s)",
        cluster.scheduler_address,
        n_workers,
        time.perf_counter() - t0,
    )
    return _Handle(client, cluster, cluster.scheduler_address)


def normalise_address(address: str) -> tuple[str, str, int]:
    """``(address with scheme, host, port)``; 'host:port' means tcp://host:port.

    Raises:
        ConfigError: not an address a Dask client can connect to.
    """
    text = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(text)
    expected = "'local', or a scheduler address such as tcp://10.0.0.5:8786"
    if parts.scheme not in ("tcp", "tls"):
        raise ConfigError(
            f"dask_scheduler: expected {expected}, found {address!r} (scheme '{parts.scheme}' is not supported; use "
            "tcp:// or tls://)"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(f"dask_scheduler: expected {expected}, found {address!r} ({exc})") from exc
    if not host or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"dask_scheduler: expected {expected}, found {address!r} (it needs a host and a port; Dask's default port "
            f"is {DEFAULT_PORT})"
        )
    return f"{parts.scheme}://{parts.netloc}", host, port


def _unusable(address: str, port: int, cause: str) -> ConfigError:
    return ConfigError(
        f"cannot use the Dask scheduler at {address} (the dask_scheduler setting, engine: dask)\n"
        f"  cause: {cause}\n"
        f"  what to do: {_WHAT_TO_DO.format(port=port, address=address)}"
    )


def preflight(scheduler: str) -> None:
    """What can be checked before a build starts, in milliseconds and without importing Dask: the
    address's form, and that something accepts connections there ('local' always passes).

    Raises:
        ConfigError: a malformed address, or nothing reachable at it (named, with what to do).
    """
    if scheduler.strip() == "local":
        return
    address, host, port = normalise_address(scheduler.strip())
    _tcp_reachable(address, host, port, min(connect_timeout(), 3.0))


def _tcp_reachable(address: str, host: str, port: int, timeout: float) -> None:
    # A plain TCP connection first: Dask's own client retries a refused connection until its timeout
    # and then reports only "timed out"; this says at once whether anything listens there.
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise _unusable(address, port, f"connection refused: nothing is listening on {host} port {port}") from None
    except TimeoutError:
        raise _unusable(
            address,
            port,
            f"no answer from {host} port {port} within {timeout:g} s (host down, or a firewall drops the connection)",
        ) from None
    except OSError as exc:
        raise _unusable(address, port, f"{host} port {port}: {exc.strerror or exc}") from None


def _connect(scheduler: str) -> _Handle:
    address, host, port = normalise_address(scheduler)
    timeout = connect_timeout()
    _tcp_reachable(address, host, port, min(timeout, 3.0))
    # Dask's own handshake read has no timeout (a port that accepts and stays silent hangs the client
    # forever), so the scheduler is asked who it is first, under a deadline, in a thread of its own.
    try:
        identity = _in_thread(lambda: asyncio.run(_identity(address, timeout)), timeout + 2.0)
    except (OSError, TimeoutError) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise _unusable(
            address,
            port,
            f"something listens on port {port} but did not answer as a Dask scheduler within {timeout:g} s{detail}",
        ) from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        kind = identity.get("type") if isinstance(identity, dict) else type(identity).__name__
        raise _unusable(
            address,
            port,
            f"the address answers as a Dask {kind}, not a scheduler (a worker's address instead of the scheduler's?)",
        )
    from distributed import Client

    try:
        client = _in_thread(lambda: Client(address, timeout=timeout, set_as_default=False), timeout + 5.0)
    except (OSError, TimeoutError) as exc:
        raise _unusable(
            address, port, f"the Dask client could not register with the scheduler within {timeout:g} s ({exc})"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise _unusable(
            address, port, f"the scheduler answered but has no workers (none joined within {timeout:g} s)"
        ) from None
    missing = _worker_problems(client)
    if missing:
        client.close()
        raise _unusable(address, port, "workers cannot run nbops code: " + "; ".join(missing))
    log.info("connected to the Dask scheduler at %s (%d workers)", address, len(client.scheduler_info()["workers"]))
    return _Handle(client, None, address)


async def _identity(address: str, timeout: float) -> Any:
    """The scheduler's answer to Dask's ``identity`` request, or an exception after ``timeout`` seconds."""
    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()


def _in_thread(fn: Any, timeout: float) -> Any:
    """``fn()`` in a daemon thread: its result, its exception, or TimeoutError after ``timeout`` seconds.

    A call that never returns is left behind in its thread rather than hanging the caller (and
    works whether or not the caller's thread already runs an event loop, as a Jupyter kernel does).
    """
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the caller
            err.append(exc)

    thread = threading.Thread(target=run, name="nbops-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if err:
        raise err[0]
    return out[0]


def _probe_worker() -> dict[str, str | None]:
    """Run on every worker: the versions of what the dask engine's tasks import there."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("nbops", "lightgbm", "pandas", "pyarrow", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _worker_problems(client: Client) -> list[str]:
    """Workers without nbops or LightGBM, or with other versions than this process (named)."""
    local = _probe_worker()
    problems = []
    for worker, versions in client.run(_probe_worker).items():
        absent = [n for n, v in versions.items() if v is None]
        if absent:
            problems.append(f"{worker} lacks {', '.join(absent)}")
            continue
        differ = [f"{n} {versions[n]} (here {local[n]})" for n in ("nbops", "lightgbm") if versions[n] != local[n]]
        if differ:
            problems.append(f"{worker} has {', '.join(differ)}")
    return problems


def workers_in_order(client: Client) -> list[str]:
    """Worker addresses sorted by worker name, so partitions are placed the same way every run."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(info, key=lambda a: (str(info[a].get("name")), a))


def describe(client: Client) -> dict[str, Any]:
    """Where the work ran, for summaries and reports."""
    info = client.scheduler_info(n_workers=-1)
    workers = info["workers"]
    local = any(h.client is client and h.cluster is not None for h in _HANDLES.values())
    return {
        "scheduler": info.get("address"),
        "cluster": "local" if local else "remote",
        "workers": len(workers),
        "threads": int(sum(w.get("nthreads", 0) for w in workers.values())),
        "memory_limit_bytes": int(sum(w.get("memory_limit", 0) or 0 for w in workers.values())),
    }


def worker_pids(client: Client) -> list[int]:
    """Process ids of the workers (for memory sampling by the benchmark)."""
    return sorted(int(pid) for pid in client.run(os.getpid).values())


def close_all() -> None:
    """Close every client and the local clusters this process started (also run at exit)."""
    with _LOCK:
        handles = list(_HANDLES.values())
        _HANDLES.clear()
    for handle in handles:
        try:
            handle.client.close(timeout=10)
        except Exception:  # closing at exit: a scheduler already gone is not an error
            pass
        if handle.cluster is not None:
            try:
                handle.cluster.close(timeout=10)
            except Exception:
                pass
