"""The server's sessions: one upstream application connection per ``X-Session-Id``.

Each session hands the application (the relay to ``-target`` or the ExtORPort) an ordinary
:class:`asyncio.Transport`, :class:`SessionTransport`.  POST bodies become ``data_received``; what
the application writes waits in a buffer for the next response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ... import metrics
from ...net.accept import DialOnAccept
from ..adapter import AppFactory
from .options import NAME
from .wakeup import Wakeup
from .wire import MAX_PAYLOAD

HIGH_WATER = 4 * MAX_PAYLOAD
"""Upstream bytes buffered before the application is told to pause writing."""
INBOUND_LIMIT = 4 * MAX_PAYLOAD
"""Request bytes held while the application does not read; a request that would pass it waits for
room (:meth:`Session.wait_room`)."""
PRESSURE_IDLE = 30.0
"""With the table full, sessions idle this long are ended early to make room for new ones.  A live
client polls at least every 5 s (section 1.5), so such a session is almost surely abandoned: meek has
no close signal, and a client's closed connection leaves its session for the 120 s staleness."""
WARN_EVERY = 60.0
log = logging.getLogger("ptdispatch.meek")


class SessionTransport(asyncio.Transport):
    """The plaintext side of one meek session, as the application sees it."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._session.upstream_write(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # meek has no half-close: the relay closes the whole session instead

    def write_eof(self) -> None:
        raise NotImplementedError("meek cannot half-close")

    def get_write_buffer_size(self) -> int:
        return len(self._session.outbuf)

    def pause_reading(self) -> None:
        self._session.reading = False

    def resume_reading(self) -> None:
        self._session.resume()

    def is_reading(self) -> bool:
        return self._session.reading

    def close(self) -> None:
        self._session.app_closed()

    def abort(self) -> None:
        self._session.outbuf.clear()
        self._session.app_closed()

    def is_closing(self) -> bool:
        return self._session.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._session.peername
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._session.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._session.app


class Session:
    """One meek session (section 2.3): its application, buffers and liveness."""

    def __init__(self, sid: str, peername: tuple[str, int] | None, app_factory: AppFactory) -> None:
        self.sid = sid
        self.peername = peername
        self.outbuf = bytearray()  # application -> client
        self.inbound: list[bytes] = []  # client -> application, held while it does not read
        self.inbound_size = 0
        self.reading = True
        self.closed = False  # the application closed its side: drain outbuf, then 500
        self.ended = False  # the session is gone (expired, deleted, server closing)
        self.last_seen = time.monotonic()
        self.new = True
        self._writing_paused = False
        self._wakeup = Wakeup()  # the HTTP side waits for the application
        self.turn = asyncio.Lock()  # one request at a time (a meek client has one in flight)
        self.transport = SessionTransport(self)
        self.app: asyncio.BaseProtocol = app_factory()
        self.app.connection_made(self.transport)

    # --- application side ----------------------------------------------------------------
    def upstream_write(self, data: bytes) -> None:
        if not data or self.closed:
            return
        self.outbuf += data
        self._wakeup.wake()
        if not self._writing_paused and len(self.outbuf) > HIGH_WATER:
            self._writing_paused = True
            self.app.pause_writing()

    def resume(self) -> None:
        self.reading = True
        pending, self.inbound, self.inbound_size = self.inbound, [], 0
        for data in pending:
            if self.ended:
                return
            self.app.data_received(data)  # type: ignore[attr-defined]
        self._wakeup.wake()

    def app_closed(self) -> None:
        self.closed = True
        self._wakeup.wake()

    # --- HTTP side (one request at a time: ``turn``) --------------------------------------------
    async def wait_room(self, size: int, timeout: float) -> bool:
        """Wait (bounded) until ``size`` more request bytes fit in :data:`INBOUND_LIMIT` with what the
        application has not read yet; False if they still do not.  meek-server's copy into its
        upstream blocks instead, holding one body per request; the caller ends the session then
        rather than have requests hold theirs while the application reads nothing."""
        if self.inbound_size + size <= INBOUND_LIMIT:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inbound_size + size > INBOUND_LIMIT and not self.closed:
            if loop.time() >= deadline:
                return False
            await self._wakeup.wait(loop, deadline)
        return True

    def deliver(self, body: bytes) -> None:
        """A request body for the application (held while it does not read)."""
        if not body or self.ended or self.closed:
            return
        if self.reading and not self.inbound:
            self.app.data_received(body)  # type: ignore[attr-defined]
        else:
            self.inbound.append(body)
            self.inbound_size += len(body)

    async def wait_ready(self, timeout: float) -> None:
        """Wait (bounded) while a new session's application dials its upstream (so a failed dial
        is answered 500, and the first answer can carry the upstream's first bytes): while it
        holds its reads, or while the dispatcher's :class:`DialOnAccept` says it is dialling (it
        reads on meanwhile, up to a bound, and resumes reading, which wakes this, when done)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed and not self.ended and self.new:
            app = self.app
            if self.reading and not self.inbound and not (isinstance(app, DialOnAccept) and app.dialing):
                break
            left = deadline - loop.time()
            if left <= 0:
                break
            await self._wakeup.wait(loop, deadline)
        self.new = False

    async def take(self, turnaround: float) -> bytes | None:
        """Up to 64 KiB of upstream bytes, waiting ``turnaround`` when none are ready; ``None``
        when the upstream ended (the caller answers 500 and deletes the session)."""
        if not self.outbuf and not self.closed and turnaround > 0:
            loop = asyncio.get_running_loop()
            await self._wakeup.wait(loop, loop.time() + turnaround)
        if self.outbuf:
            data = bytes(self.outbuf[:MAX_PAYLOAD])
            del self.outbuf[:MAX_PAYLOAD]
            if self._writing_paused and len(self.outbuf) <= HIGH_WATER // 2:
                self._writing_paused = False
                self.app.resume_writing()
            return data
        if self.closed or self.ended:
            return None
        return b""

    def end(self, exc: Exception | None = None) -> None:
        """Forget the session and tell the application (idempotent)."""
        if self.ended:
            return
        self.ended = True
        self.closed = True
        self.outbuf.clear()
        self.inbound.clear()
        self._wakeup.wake()
        self.app.connection_lost(exc)


class SessionTable:
    """Sessions by id, at most ``cap`` of them, each expiring ``staleness`` seconds after its last
    request (meek-server: 120 s, checked every 60 s).

    meek-server has no cap (every unknown id dials tor); ours refuses new sessions with 500 while the
    table is full of recently used ones (a flood of fresh ids makes at most ``cap`` upstream dials per
    ``pressure_idle``), and when it is full, first ends the sessions idle for ``pressure_idle`` to
    make room.  Without that, abandoned sessions (a client's closed connections, or a flood of ids)
    would lock every new client out until they went stale.  The table is kept in order of last use,
    so expiry looks only at the sessions it ends."""

    def __init__(
        self,
        app_factory: AppFactory,
        *,
        cap: int,
        staleness: float,
        pressure_idle: float = PRESSURE_IDLE,
        name: str = NAME,
    ) -> None:
        self._app_factory = app_factory
        self.name = name  # the transport label of its metrics
        self.cap = cap
        self.staleness = staleness
        self.pressure_idle = pressure_idle
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._reaper: asyncio.Task[None] | None = None
        self._warned: dict[str, float] = {}  # when each kind of WARN line was last written
        self.refused = 0
        self.made_room = 0
        self.closed = False  # the listener closed: no new session (a request read just before gets 500)

    def warn_full(self) -> None:
        """A new session was refused: log it, at most once a minute."""
        self.refused += 1
        metrics.meek_sessions(self.name, refused=1)
        self._warn("full", "meek: %d sessions (the cap), all used in the last %g s: refusing new ones with 500",
                   self.cap, self.pressure_idle)  # fmt: skip

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """``log.warning(message, *args)``, at most once a minute for each ``kind``."""
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)

    def get(self, sid: str, peer: Callable[[], tuple[str, int] | None]) -> Session | None:
        """The session for ``sid``, created if new; ``None`` when the table is full, or closed (a
        request read just before the listener closed must not dial a new upstream)."""
        sessions = self.sessions
        session = sessions.get(sid)
        if session is None or session.ended:
            if self.closed:
                return None
            if len(sessions) >= self.cap and not self._make_room():
                return None
            session = Session(sid, peer(), self._app_factory)
            sessions[sid] = session
            self._start_reaper()
        session.last_seen = time.monotonic()
        sessions.move_to_end(sid)
        return session

    def _make_room(self) -> bool:
        """End the stale sessions, then (the table still full) those idle for ``pressure_idle``."""
        self.reap()
        if len(self.sessions) < self.cap:
            return True
        ended = self.reap(self.pressure_idle)
        if ended:
            self.made_room += ended
            metrics.meek_sessions(self.name, ended_early=ended)
            self._warn("room", "meek: %d sessions (the cap): ended %d idle for over %g s early to make room",
                       self.cap, ended, self.pressure_idle)  # fmt: skip
        return len(self.sessions) < self.cap

    def delete(self, session: Session, exc: Exception | None = None) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
        session.end(exc)

    def reap(self, idle: float | None = None) -> int:
        """End every session idle longer than ``idle`` (default: the staleness); returns how many."""
        cutoff = time.monotonic() - (self.staleness if idle is None else idle)
        sessions = self.sessions
        ended = 0
        while sessions:
            oldest = next(iter(sessions.values()))
            if oldest.last_seen >= cutoff:
                break
            self.delete(oldest)
            ended += 1
        return ended

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap_loop())

    async def _reap_loop(self) -> None:
        while self.sessions:
            await asyncio.sleep(self.staleness / 2)
            self.reap()

    def close(self) -> None:
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            self.delete(session)
