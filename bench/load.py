"""Load generators: plain blocking sockets and threads, in the benchmark process (never counted as proxy CPU)."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from .procs import BenchError, cpu_seconds, descendants, memory_kib, settle

T = TypeVar("T")
CHUNK = 256 * 1024
TIMEOUT = 30.0


@dataclass(frozen=True)
class Socks:
    """Speak SOCKS5 to the entry and CONNECT to ``dest``; ``auth`` is sent as RFC 1929 username/password."""

    dest: tuple[str, int]
    auth: tuple[bytes, bytes] | None = None


@dataclass(frozen=True)
class Entry:
    """Where the load generator connects: a transparent listener, or a SOCKS5 one."""

    host: str
    port: int
    socks: Socks | None = None


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise BenchError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _socks5(sock: socket.socket, socks: Socks, marks: list[tuple[str, float]] | None = None) -> None:
    """The SOCKS5 exchange; ``marks`` gets the time each step's answer arrived."""
    method = 2 if socks.auth else 0
    sock.sendall(bytes([5, 1, method]))
    if recv_exact(sock, 2) != bytes([5, method]):
        raise BenchError("SOCKS5 method refused")
    if marks is not None:
        marks.append(("greeting", time.perf_counter()))
    if socks.auth:
        user, password = socks.auth
        sock.sendall(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        if recv_exact(sock, 2)[1] != 0:
            raise BenchError("SOCKS5 authentication refused")
        if marks is not None:
            marks.append(("auth", time.perf_counter()))
    host, port = socks.dest
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
    reply = recv_exact(sock, 4)
    if reply[1] != 0:
        raise BenchError(f"SOCKS5 CONNECT failed with reply {reply[1]}")
    tail = {1: 4, 4: 16}.get(reply[3])
    if tail is None:
        tail = recv_exact(sock, 1)[0]
    recv_exact(sock, tail + 2)
    if marks is not None:
        marks.append(("request", time.perf_counter()))


def open_through(entry: Entry, timeout: float = TIMEOUT) -> socket.socket:
    """Connect to the entry and finish the SOCKS5 exchange if there is one."""
    sock = socket.create_connection((entry.host, entry.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if entry.socks is not None:
            _socks5(sock, entry.socks)
    except BaseException:
        sock.close()
        raise
    return sock


def _echo_once(sock: socket.socket) -> None:
    sock.sendall(b"E")
    if recv_exact(sock, 1) != b"E":
        raise BenchError("echo returned the wrong byte")


# --- latency -------------------------------------------------------------------------------------


def latency_samples(entry: Entry, count: int) -> list[float]:
    """Fresh connection each time: connect, handshake, send one byte, read it back. Milliseconds."""
    samples: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        with open_through(entry) as sock:
            _echo_once(sock)
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def phase_medians(entry: Entry, count: int) -> dict[str, float]:
    """Where a fresh connection's latency goes, from the load generator: median µs of the TCP
    connect, each SOCKS5 step (greeting, auth, the CONNECT request until its reply) and the
    one-byte echo, over ``count`` connections made one after another."""
    samples: dict[str, list[float]] = {}
    for _ in range(count):
        start = time.perf_counter()
        sock = socket.create_connection((entry.host, entry.port), timeout=TIMEOUT)
        marks = [("connect", time.perf_counter())]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if entry.socks is not None:
                _socks5(sock, entry.socks, marks)
            _echo_once(sock)
            marks.append(("echo", time.perf_counter()))
        finally:
            sock.close()
        for name, at in marks:
            samples.setdefault(name, []).append((at - start) * 1e6)
            start = at
    return {name: statistics.median(values) for name, values in samples.items()}


def summarize_latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "lat_median_ms": statistics.median(ordered),
        "lat_p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "lat_count": len(ordered),
    }


def latency(entry: Entry, count: int) -> dict[str, float]:
    return summarize_latency(latency_samples(entry, count))


# --- throughput ----------------------------------------------------------------------------------


def throughput(entry: Entry, size: int, pids: Sequence[int], *, echo: bool = False) -> dict[str, float]:
    """Push ``size`` bytes one way (or through and back with ``echo``); wall time and proxy CPU time."""
    base = sum(1 + len(descendants(p)) for p in pids)
    sock = open_through(entry, timeout=max(TIMEOUT, size / (5 << 20)))
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.sendall((b"X" if echo else b"D") + struct.pack("!Q", size))
        if recv_exact(sock, 1) != b"R":
            raise BenchError("target did not answer R")
        cpu0 = cpu_seconds(pids)
        start = time.perf_counter()
        reader = _EchoReader(sock, size) if echo else None
        payload = memoryview(os.urandom(CHUNK))
        left = size
        while left:
            n = min(left, CHUNK)
            sock.sendall(payload[:n])
            left -= n
        if reader is not None:
            reader.join()
        elif recv_exact(sock, 1) != b"K":
            raise BenchError("target did not answer K")
        wall = time.perf_counter() - start
        # Read while the connection (and any child a proxy forked for it) is still up: a live
        # child's time is read in nanoseconds, a reaped one's only in 10 ms ticks.
        cpu = cpu_seconds(pids) - cpu0
    finally:
        sock.close()
    settle(pids, base)
    mib = size / (1 << 20) * (2 if echo else 1)
    return {"wall_s": wall, "cpu_s": cpu, "mib_s": mib / wall, "mib_cpu_s": mib / cpu if cpu > 0 else float("nan")}


class _EchoReader:
    def __init__(self, sock: socket.socket, size: int) -> None:
        self.sock, self.left, self.error = sock, size, ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = bytearray(CHUNK)
        try:
            while self.left > 0:
                n = self.sock.recv_into(buf)
                if not n:
                    self.error = "echo closed early"
                    return
                self.left -= n
        except OSError as exc:
            self.error = str(exc)

    def join(self) -> None:
        self.thread.join()
        if self.error:
            raise BenchError(self.error)


def _run_all(fn: Callable[[int], T], count: int, workers: int, out: list[T]) -> None:
    """``fn(0..count-1)`` on ``workers`` threads, results into ``out``; the first error cancels the rest."""
    pool = ThreadPoolExecutor(workers)
    futures = [pool.submit(fn, i) for i in range(count)]
    try:
        for fut in futures:
            out.append(fut.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in futures:  # keep what did open, so the caller can close it
            if fut.done() and not fut.cancelled() and fut.exception() is None and fut.result() not in out:
                out.append(fut.result())
        raise
    pool.shutdown()


# --- idle connections ----------------------------------------------------------------------------


def idle_connections(entry: Entry, count: int, pids: Sequence[int], workers: int = 8) -> dict[str, float]:
    """Memory before and with ``count`` idle established connections; check each still echoes."""
    rss0, pss0, _ = memory_kib(pids)

    def one(_: int) -> socket.socket:
        sock = open_through(entry)
        _echo_once(sock)
        return sock

    socks: list[socket.socket] = []
    try:
        _run_all(one, count, workers, socks)
        time.sleep(1.0)
        rss1, pss1, nproc = memory_kib(pids)
        alive = 0
        for sock in socks:
            with contextlib.suppress(OSError, BenchError):
                sock.settimeout(5)
                _echo_once(sock)
                alive += 1
    finally:
        for sock in socks:
            sock.close()
    return {
        "rss_idle_kib": rss0,
        "rss_conn_kib": rss1,
        "kib_per_conn": (rss1 - rss0) / count,
        "pss_kib_per_conn": (pss1 - pss0) / count,
        "conns": count,
        "dropped": count - alive,
        "procs_with_conns": nproc,
    }


# --- server handshakes ---------------------------------------------------------------------------


def handshakes(dial: Callable[[], None], count: int, pids: Sequence[int], workers: int = 4) -> dict[str, float]:
    """``count`` connections against the server alone (``dial`` does one), per second of server CPU."""
    base = sum(1 + len(descendants(p)) for p in pids)
    cpu0 = cpu_seconds(pids)
    start = time.perf_counter()
    _run_all(lambda _: dial(), count, workers, [])
    wall = time.perf_counter() - start
    settle(pids, base)
    raw = {"count": float(count), "cpu_s": cpu_seconds(pids) - cpu0, "wall_s": wall}
    return {**combine_handshakes([raw]), **raw}


def combine_handshakes(batches: Sequence[dict[str, float]]) -> dict[str, float]:
    """One figure from several :func:`handshakes` batches: all their connections over all their CPU."""
    count = sum(b["count"] for b in batches)
    cpu = sum(b["cpu_s"] for b in batches)
    wall = sum(b["wall_s"] for b in batches)
    return {"hs_per_cpu_s": count / cpu if cpu > 0 else float("nan"), "hs_per_s": count / wall if wall > 0 else 0.0}


def via_entry(entry: Entry) -> Callable[[], None]:
    """One fresh connection through the entry, proven end to end by a one-byte echo."""

    def dial() -> None:
        with open_through(entry) as sock:
            _echo_once(sock)

    return dial
