"""The meek server: HTTP/1.1 (:mod:`.h1`) in front of a :class:`~.session.SessionTable`.

Answers exactly as meek-server v0.38.0 does (section 2.2 of the wire notes): the root page, 404,
400, 500, 200 with Content-Length up to 2048 bytes and chunked above, ``Date`` and no ``Server``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ... import metrics
from ...net.accept import LISTEN_BACKLOG
from ...net.addr import Address
from ..adapter import AppFactory, ErrorCallback
from ..base import ServerTransport
from . import h1, wire
from .options import NAME, ServerOptions
from .session import PRESSURE_IDLE, SessionTable

log = logging.getLogger("ptdispatch.meek")

MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT = 20.0
"""meek-server's ``ReadTimeout``/``WriteTimeout``, also its idle keep-alive timeout."""
STALENESS = 120.0
DIAL_WAIT = 30.0
"""How long a new session's first answer waits for the upstream dial (failure: 500)."""
RST_AVOIDANCE = 0.5
"""Go's ``rstAvoidanceDelay``: after a 431 or a body over the limit, the server half-closes and
waits this long before it closes, so the client reads the answer before the reset that closing
over unread request bytes makes (``closeWriteAndWait``)."""

RequestLog = Callable[[str, str, int, int], None]
"""``log(method, session_id, body_length, status)`` for each request (tests, debugging)."""


@dataclass(frozen=True)
class Tuning:
    """Server timings (meek-server's, and how long a session must be idle to make room; tests shrink them)."""

    staleness: float = STALENESS
    read_timeout: float = READ_TIMEOUT
    turnaround: float = wire.TURNAROUND
    dial_wait: float = DIAL_WAIT
    pressure_idle: float = PRESSURE_IDLE
    rst_avoidance: float = RST_AVOIDANCE


class HttpConnection:
    """One accepted HTTP connection: read a request, answer it, repeat (keep-alive)."""

    def __init__(self, server: MeekServer, table: SessionTable, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.server = server
        self.table = table
        self.reader = reader
        self.writer = writer
        self.requests = h1.RequestReader(max_header_bytes=MAX_HEADER_BYTES, max_body=wire.MAX_REQUEST_BODY)
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else None
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0  # when reading the request (or writing the answer) must be done; 0: none
        self._timer: asyncio.TimerHandle | None = None
        self._wait_before_close = False  # answered a 431 or a body over the limit: as Go, see RST_AVOIDANCE

    async def run(self) -> None:
        try:
            while await self._one_exchange():
                pass
            if self._wait_before_close:
                await self._close_write_and_wait()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.writer.close()

    async def _close_write_and_wait(self) -> None:
        """Half-close and wait ``Tuning.rst_avoidance`` (:data:`RST_AVOIDANCE`) without reading, as
        Go's server does after a 431 or a body over the limit: closing at once over the request
        bytes still coming would reset the connection, and the reset can destroy the answer before
        the client reads it."""
        self._deadline = 0.0
        transport = cast(asyncio.Transport, self.writer.transport)
        if transport.is_closing():
            return
        transport.pause_reading()
        if transport.can_write_eof():
            transport.write_eof()
        await asyncio.sleep(self.server.tuning.rst_avoidance)

    def _arm(self, seconds: float) -> None:
        """Go's ReadTimeout/WriteTimeout: past the deadline the connection is cut, unanswered.  One
        timer per connection, moved lazily (a deadline is set for every POST, the timer rarely)."""
        self._deadline = self._loop.time() + seconds
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._deadline:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        self.writer.transport.abort()  # the pending read sees the end; a drain, ConnectionResetError

    async def _one_exchange(self) -> bool:
        """Read one request and answer it; whether the connection stays open for another."""
        timeout = self.server.tuning.read_timeout
        self._arm(timeout)
        try:
            request = await self._read_request()
        except h1.HttpError as exc:
            if exc.handler:  # a method llhttp does not know: the handler's 400, as Go answers
                date = wire.http_date(time.time())
                self._write(h1.response(400, wire.text_reply(wire.BAD_REQUEST_BODY, date), wire.BAD_REQUEST_BODY,
                                        close=True))  # fmt: skip
            else:
                self._write(wire.canned_error(exc.status))
                self._wait_before_close = exc.status == 431
            metrics.meek_request(self.server.name, b"", 400 if exc.handler else exc.status)
            return False
        if request is None:
            return False
        self._deadline = 0.0  # the answer may wait for the session (its dial, the turnaround)
        status, headers, body = await self._answer(request)
        metrics.meek_request(self.server.name, request.method, status)
        keep = request.keep_alive and not request.too_large and not (self.requests.stopped and not self.requests.ready)
        answer = h1.response(status, headers, body, head_only=request.method == b"HEAD", close=not keep,
                             http10=request.http10)  # fmt: skip
        if not self._write(answer):
            return False
        self._wait_before_close = request.too_large
        if self.writer.transport.get_write_buffer_size():
            self._arm(timeout)
            await self.writer.drain()
        return keep

    def _write(self, data: bytes) -> bool:
        if self.writer.transport.is_closing():  # closed meanwhile (the listener, the peer)
            return False
        self.writer.write(data)
        return True

    async def _read_request(self) -> h1.Request | None:
        requests = self.requests
        while not requests.ready:
            if requests.stopped:
                return None
            data = await self.reader.read(1 << 17)
            if not data:
                return None  # the client left (mid-request or between requests): nothing to answer
            requests.feed(data)
            if requests.continue_due:  # as Go does when the handler reads the body
                self._write(h1.CONTINUE)
        return requests.ready.popleft()

    async def _answer(self, request: h1.Request) -> tuple[int, h1.Headers, bytes]:
        date = wire.http_date(time.time())
        method = request.method
        sid = (h1.header(request.headers, b"x-session-id") or b"").decode("latin-1")
        if method == b"GET":
            if wire.clean_path(request.target) == "/":
                return 200, wire.text_reply(wire.ROOT_BODY, date, nosniff=False), wire.ROOT_BODY
            return 404, wire.text_reply(wire.NOT_FOUND_BODY, date), wire.NOT_FOUND_BODY
        if method != b"POST" or len(sid) < wire.MIN_SESSION_ID:
            self._log(method, sid, len(request.body), 400)
            return 400, wire.text_reply(wire.BAD_REQUEST_BODY, date), wire.BAD_REQUEST_BODY
        return await self._transact(request, sid, date)

    async def _transact(self, request: h1.Request, sid: str, date: bytes) -> tuple[int, h1.Headers, bytes]:
        body = request.body

        def peer() -> tuple[str, int] | None:
            ip = wire.user_ip(request.headers, self.peer_ip)
            return (ip, 1) if ip is not None else None

        session = self.table.get(sid, peer)
        if session is None:
            if not self.table.closed:
                self.table.warn_full()
            return self._error(500, sid, len(body), date)
        async with session.turn:  # a session's requests (over any connections) one at a time
            tuning = self.server.tuning
            if request.too_large:
                session.deliver(body)
                self.table.delete(session)
                self._log(b"POST", sid, len(body), 200)
                return 200, wire.too_large_reply(date), b""
            if not await session.wait_room(len(body), tuning.dial_wait):
                self.table.delete(session)  # its application reads nothing: ended rather than fed more
                return self._error(500, sid, len(body), date)
            session.deliver(body)
            opening = session.new and not body
            await session.wait_ready(tuning.dial_wait)
            # A new session's empty opening poll is answered as soon as its upstream is connected,
            # without the 10 ms turnaround (the client holds its SOCKS reply until this answer).
            payload = await session.take(0.0 if opening else tuning.turnaround)
            if payload is None:
                self.table.delete(session)
                return self._error(500, sid, len(body), date)
            self._log(b"POST", sid, len(body), 200)
            return 200, wire.data_reply(payload, date), payload

    def _error(self, status: int, sid: str, size: int, date: bytes) -> tuple[int, h1.Headers, bytes]:
        self._log(b"POST", sid, size, status)
        return status, wire.text_reply(wire.INTERNAL_ERROR_BODY, date), wire.INTERNAL_ERROR_BODY

    def _log(self, method: bytes, sid: str, size: int, status: int) -> None:
        hook = self.server.request_log
        if hook is not None:
            hook(method.decode("latin-1"), sid, size, status)


class MeekServer(ServerTransport):
    """meek's server side: plain HTTP, or TLS with ``cert``/``key`` (ALPN http/1.1 only)."""

    def __init__(self, options: ServerOptions, tuning: Tuning | None = None, *, name: str = NAME) -> None:
        self.options = options
        self.tuning = tuning or Tuning()
        self.name = name  # the name it is served under: its metrics' transport label
        self.request_log: RequestLog | None = None
        self.tables: list[SessionTable] = []

    def smethod_args(self) -> dict[str, str]:
        return self.options.publish()

    async def listen(
        self,
        app_factory: AppFactory,
        where: Address | socket.socket,
        *,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Server:
        tuning = self.tuning
        table = SessionTable(app_factory, cap=self.options.max_sessions, staleness=tuning.staleness,
                             pressure_idle=tuning.pressure_idle, name=self.name)  # fmt: skip
        self.tables.append(table)
        tls = self.options.ssl_context()
        connections: set[asyncio.StreamWriter] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.add(writer)
            try:
                await HttpConnection(self, table, reader, writer).run()
            except asyncio.CancelledError:
                pass  # the loop is closing; the writer is closed below
            finally:
                connections.discard(writer)

        kwargs: dict[str, object] = {"ssl": tls, "limit": 1 << 18, "backlog": LISTEN_BACKLOG}
        if tls is not None:
            kwargs["ssl_handshake_timeout"] = self.tuning.read_timeout
        if isinstance(where, socket.socket):
            server = await asyncio.start_server(handle, sock=where, **kwargs)  # type: ignore[arg-type]
        else:
            server = await asyncio.start_server(handle, where.host, where.port, **kwargs)  # type: ignore[arg-type]
        return cast(asyncio.Server, MeekListener(server, table, connections))


class MeekListener(asyncio.AbstractServer):
    """The listening server; closing it also ends the sessions and open HTTP connections."""

    def __init__(self, inner: asyncio.Server, table: SessionTable, connections: set[asyncio.StreamWriter]) -> None:
        self._inner = inner
        self._table = table
        self._connections = connections

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._inner.sockets)

    def close(self) -> None:
        self._inner.close()
        self._table.close()
        for writer in list(self._connections):
            writer.transport.abort()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._inner.get_loop()

    def is_serving(self) -> bool:
        return self._inner.is_serving()

    async def start_serving(self) -> None:
        await self._inner.start_serving()

    async def serve_forever(self) -> None:
        await self._inner.serve_forever()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()
