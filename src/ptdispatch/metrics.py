"""``-metrics IP:PORT``: Prometheus text at ``/metrics`` (the official ``prometheus_client``).

Names follow outline-ss-server's (``shadowsocks_*``) under the prefix ``ptdispatch_``.  Labels are
the transport name, the role, a close status, a direction or a failure reason: never a client
address nor anything else that differs per connection.

The hooks below (:func:`opened`, :func:`closed`, ...) cost one global lookup when ``-metrics`` is not
given.  Under ``-workers N`` every worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) and the parent serves their sum; :func:`prepare_multiprocess`
must run before anything imports prometheus_client.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
from typing import Any

from .errors import ClosedEmpty, ConfigError, HandshakeTimeout, RemoteProtocolError, ReplayDetected
from .net.addr import Address

HANDSHAKE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class Metrics:
    """The metric objects; one per process."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        from . import __version__  # here: the replay filters import this module while the package loads

        r = {"registry": registry}
        self.opened = Counter(
            "ptdispatch_connections_opened",
            "Connections opened (server: after the handshake)",
            ["transport", "role"],
            **r,
        )
        self.closed = Counter(
            "ptdispatch_connections_closed",
            "Connections closed, by how they ended",
            ["transport", "role", "status"],
            **r,
        )
        self.open = Gauge(
            "ptdispatch_open_connections",
            "Connections open now",
            ["transport", "role"],
            multiprocess_mode="livesum",
            **r,
        )
        self.bytes = Counter(
            "ptdispatch_data_bytes",
            "Application bytes relayed (upstream: from the client side toward the target)",
            ["transport", "dir"],
            **r,
        )
        self.failures = Counter(
            "ptdispatch_handshake_failures",
            "Server handshakes that failed: probe (or bad handshake), replay, timeout, empty (closed before a byte)",
            ["transport", "reason"],
            **r,
        )
        self.handshake = Histogram(
            "ptdispatch_handshake_duration_seconds",
            "Server handshake time, from accept to established",
            ["transport"],
            buckets=HANDSHAKE_BUCKETS,
            **r,
        )
        self.udp = Gauge(
            "ptdispatch_udp_sessions", "UDP sessions open now", ["transport"], multiprocess_mode="livesum", **r
        )
        self.replay_up = Gauge(
            "ptdispatch_replay_store_up",
            "1 while the shared replay store (Redis) answers, 0 while the local store stands in",
            ["store"],
            multiprocess_mode="livemin",
            **r,
        )
        self.replay_evictions = Counter(
            "ptdispatch_replay_evictions",
            "Replay filter entries dropped before they expired to make room: a handshake or salt replayed after its"
            " entry was dropped is not refused. Steady growth means more new connections than the filter holds",
            ["filter"],
            **r,
        )
        self.meek_requests = Counter(
            "ptdispatch_meek_requests",
            "meek server: HTTP requests answered, by method (GET, POST, other) and status",
            ["transport", "method", "status"],
            **r,
        )
        self.meek_refused = Counter(
            "ptdispatch_meek_sessions_refused",
            "meek server: new sessions answered 500 because the session table was full of sessions in use",
            ["transport"],
            **r,
        )
        self.meek_ended_early = Counter(
            "ptdispatch_meek_sessions_ended_early",
            "meek server: idle sessions ended before their staleness to make room in a full session table",
            ["transport"],
            **r,
        )
        self.worker_restarts = Counter("ptdispatch_worker_restarts", "Worker processes restarted", **r)
        self.worker_opened = Counter(
            "ptdispatch_worker_connections_opened",
            "Connections opened, by worker (how evenly they share)",
            ["worker"],
            **r,
        )
        self.workers = Gauge("ptdispatch_workers", "Worker processes running", multiprocess_mode="livemax", **r)
        self.workers.set(1)  # one process serves; under -workers the supervisor sets N (the live maximum)
        info = Gauge("ptdispatch_build_info", "Build information", ["version"], multiprocess_mode="max", **r)
        info.labels(__version__).set(1)
        self._listeners: dict[tuple[str, str], _Children] = {}
        self._requests: dict[tuple[str, bytes, int], Any] = {}

    def meek_request(self, transport: str, method: bytes, status: int) -> Any:
        """The counter of one (transport, method, status), looked up once.  A method other than GET
        or POST counts as ``other``, so neither a label nor this cache takes a value a client chose."""
        if method not in (b"GET", b"POST"):
            method = b""
        key = (transport, method, status)
        found = self._requests.get(key)
        if found is None:
            shown = method.decode("ascii") or "other"
            found = self._requests[key] = self.meek_requests.labels(transport, shown, str(status))
        return found

    def children(self, transport: str, role: str) -> _Children:
        """The labelled values of one transport and role, looked up once (``labels()`` validates
        and locks on every call: 2-3 µs each, ten of them per connection)."""
        found = self._listeners.get((transport, role))
        if found is None:
            found = self._listeners[(transport, role)] = _Children(self, transport, role)
        return found


class _Children:
    """What one connection of a transport and role updates, resolved once."""

    __slots__ = ("_closed", "_key", "_metrics", "down", "handshake", "open", "opened", "up", "worker_opened")

    def __init__(self, m: Metrics, transport: str, role: str) -> None:
        self._metrics = m
        self._key = (transport, role)
        self.opened = m.opened.labels(transport, role)
        self.open = m.open.labels(transport, role)
        self.up = m.bytes.labels(transport, "upstream")
        self.down = m.bytes.labels(transport, "downstream")
        self.handshake = m.handshake.labels(transport)
        self.worker_opened = m.worker_opened.labels(WORKER) if WORKER is not None else None
        self._closed: dict[str, Any] = {}

    def closed(self, status: str) -> Any:
        found = self._closed.get(status)
        if found is None:
            found = self._closed[status] = self._metrics.closed.labels(*self._key, status)
        return found


ACTIVE: Metrics | None = None
"""Set by :func:`install`; None when -metrics is not given."""
WORKER: str | None = None
"""This worker's index under -workers (a label with at most N values), else None."""


def install(registry: Any = None, *, redis: bool = False) -> Metrics:
    """Create this process's metrics (``registry=None`` in multiprocess workers); ``redis``: the
    replay store is Redis (its gauge starts at 1)."""
    global ACTIVE
    ACTIVE = Metrics(registry)
    if redis:
        ACTIVE.replay_up.labels("redis").set(1)
    return ACTIVE


def close_status(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, TimeoutError | HandshakeTimeout):
        return "timeout"
    if isinstance(error, RemoteProtocolError):
        return "protocol_error"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "reset"
    return "error"


def failure_reason(error: BaseException) -> str:
    if isinstance(error, ReplayDetected):
        return "replay"
    if isinstance(error, ClosedEmpty):
        return "empty"
    if isinstance(error, HandshakeTimeout | TimeoutError):
        return "timeout"
    return "probe"


# --- hooks (cheap when ACTIVE is None) -------------------------------------------------------------
def opened(transport: str, role: str) -> None:
    m = ACTIVE
    if m is not None:
        c = m.children(transport, role)
        c.opened.inc()
        c.open.inc()
        if c.worker_opened is not None:
            c.worker_opened.inc()


def closed(transport: str, role: str, error: BaseException | None, upstream: int, downstream: int) -> None:
    m = ACTIVE
    if m is not None:
        c = m.children(transport, role)
        c.closed(close_status(error)).inc()
        c.open.dec()
        if upstream:
            c.up.inc(upstream)
        if downstream:
            c.down.inc(downstream)


def handshake_failed(transport: str, error: BaseException) -> None:
    m = ACTIVE
    if m is not None:
        m.failures.labels(transport, failure_reason(error)).inc()


def handshake_done(transport: str, seconds: float | None) -> None:
    m = ACTIVE
    if m is not None and seconds is not None:
        m.children(transport, "server").handshake.observe(seconds)


def udp_session(transport: str, delta: int) -> None:
    m = ACTIVE
    if m is not None:
        m.udp.labels(transport).inc(delta)


def meek_request(transport: str, method: bytes, status: int) -> None:
    """A meek server answered a request (``method`` as sent, or empty when it could not be read)."""
    m = ACTIVE
    if m is not None:
        m.meek_request(transport, method, status).inc()


def meek_sessions(transport: str, *, refused: int = 0, ended_early: int = 0) -> None:
    """A meek server's full session table refused new sessions or ended idle ones early."""
    m = ACTIVE
    if m is not None:
        if refused:
            m.meek_refused.labels(transport).inc(refused)
        if ended_early:
            m.meek_ended_early.labels(transport).inc(ended_early)


def replay_evicted(filter_name: str, count: int = 1) -> None:
    """A replay filter (``obfs4``, ``shadow``, ``darkstar``: ours, never a client's) dropped
    ``count`` entries before they expired; called only when it happens, never per connection."""
    m = ACTIVE
    if m is not None and count:
        m.replay_evictions.labels(filter_name).inc(count)


def replay_store_up(up: bool) -> None:
    m = ACTIVE
    if m is not None:
        m.replay_up.labels("redis").set(1 if up else 0)


# --- serving ---------------------------------------------------------------------------------------
MULTIPROCESS_PREFIX = "ptdispatch-metrics-"
_MULTIPROCESS_DIR = re.compile(re.escape(MULTIPROCESS_PREFIX) + r"([1-9][0-9]*)-([0-9]+)-[^/]*\Z")
"""A value directory's name: the prefix, the pid and start time of the run that made it, mkdtemp's letters."""


def prepare_multiprocess() -> str:
    """Point prometheus_client at a fresh directory for the workers' value files (before import),
    named for this run (:data:`_MULTIPROCESS_DIR`), after removing those that dead runs left."""
    parent = tempfile.gettempdir()
    remove_abandoned(parent)
    pid = os.getpid()
    path = tempfile.mkdtemp(prefix=f"{MULTIPROCESS_PREFIX}{pid}-{_started(pid)}-", dir=parent)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def remove_abandoned(parent: str) -> None:
    """Remove the value directories in ``parent`` whose run is gone.  A run removes its own at exit,
    but one killed by SIGKILL (or the OOM killer) cannot, and a supervisor that restarts it after
    every crash would fill /tmp.  Only ours: our prefix and name, our user's, a directory (not a
    link), and the process named in it gone; another run's, alive beside this one, stays."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        found = _MULTIPROCESS_DIR.match(name)
        if found is None:
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and _gone(int(found[1]), int(found[2])):
            shutil.rmtree(path, ignore_errors=True)


def _started(pid: int) -> int:
    """When process ``pid`` started, in clock ticks after boot (/proc/PID/stat's 22nd field); 0 when
    that cannot be read (no /proc, or no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat_line = file.read()
        return int(stat_line.rpartition(b")")[2].split()[19])  # after the name, which may hold anything
    except (OSError, ValueError, IndexError):
        return 0


def _gone(pid: int, started: int) -> bool:
    """Whether the process that was ``pid``, started at ``started`` (0: unknown), has ended: no such
    pid, or a process that took the pid since (a pid is reused, its start time tells them apart)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return True
    except PermissionError:  # another user's process
        pass
    now = _started(pid)
    return bool(now and started) and now != started


def serve(address: Address, *, multiprocess: bool, redis: bool = False, source: str = "-metrics") -> Any:
    """Listen on ``address`` and serve ``/metrics`` from a thread; returns the HTTP server.

    Raises ``ConfigError`` naming -metrics when the address cannot be bound (port taken)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    if multiprocess:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        ProcessCollector(registry=registry)
        install(registry, redis=redis)
    try:
        server, _thread = start_http_server(address.port, address.host, registry)
    except OSError as exc:
        raise ConfigError(f"{source} {address}: cannot listen: {exc.strerror or exc}") from None
    return server


def bound_port(server: Any) -> int:
    sock: socket.socket = server.socket
    return int(sock.getsockname()[1])


def parse_address(text: str, source: str) -> Address:
    from .net.addr import parse_hostport

    try:
        return parse_hostport(text, require_ip=True)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def mark_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (its counters stay, as they should)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
