"""The meek server: HTTP/1.1 (h11) in front of a :class:`~.session.SessionTable`.

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

import h11

from ...net.accept import LISTEN_BACKLOG
from ...net.addr import Address
from ..adapter import AppFactory, ErrorCallback
from ..base import ServerTransport
from . import wire
from .options import ServerOptions
from .session import SessionTable

log = logging.getLogger("ptdispatch.meek")

MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT = 20.0
"""meek-server's ``ReadTimeout``/``WriteTimeout``, also its idle keep-alive timeout."""
SESSION_CAP = 4096
STALENESS = 120.0
DIAL_WAIT = 30.0
"""How long a new session's first answer waits for the upstream dial (failure: 500)."""

RequestLog = Callable[[str, str, int, int], None]
"""``log(method, session_id, body_length, status)`` for each request (tests, debugging)."""


@dataclass(frozen=True)
class Tuning:
    """Server limits (the defaults are meek-server's; tests shrink them)."""

    session_cap: int = SESSION_CAP
    staleness: float = STALENESS
    read_timeout: float = READ_TIMEOUT
    turnaround: float = wire.TURNAROUND
    dial_wait: float = DIAL_WAIT


class _TooLarge(Exception):
    pass


class HttpConnection:
    """One accepted HTTP connection: read a request, answer it, repeat (keep-alive)."""

    def __init__(self, server: MeekServer, table: SessionTable, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.server = server
        self.table = table
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if isinstance(peer, tuple) else None

    async def run(self) -> None:
        try:
            while await self._one_exchange():
                pass
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.writer.close()

    async def _one_exchange(self) -> bool:
        """Read one request and answer it; whether the connection stays open for another."""
        timeout = self.server.tuning.read_timeout
        try:
            async with asyncio.timeout(timeout):
                got = await self._read_request()
        except h11.RemoteProtocolError as exc:
            self._write(wire.canned_error(exc.error_status_hint))
            return False
        if got is None:
            return False
        request, body, too_large = got
        events = await self._answer(request, body, too_large)
        if request.method == b"HEAD":  # Go counts the body into Content-Length but sends none
            events = [e for e in events if not isinstance(e, h11.Data)]
        if not self._write(b"".join(self.h11.send(e) or b"" for e in events)):
            return False
        async with asyncio.timeout(timeout):
            await self.writer.drain()
        if too_large or self.h11.our_state is not h11.DONE:
            return False
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            return False  # the client said Connection: close, or the body was not read
        return True

    def _write(self, data: bytes) -> bool:
        if self.writer.transport.is_closing():  # closed meanwhile (the listener, the peer)
            return False
        self.writer.write(data)
        return True

    async def _read_request(self) -> tuple[h11.Request, bytes, bool] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue:  # as Go does when the body is read
                    self._write(
                        self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")) or b""
                    )
                data = await self.reader.read(1 << 17)
                self.h11.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEADER_BYTES:
                    raise h11.RemoteProtocolError("headers too large", error_status_hint=431)
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > wire.MAX_REQUEST_BODY:
                    assert request is not None
                    return request, bytes(body[: wire.MAX_REQUEST_BODY]), True
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body), False

    async def _answer(self, request: h11.Request, body: bytes, too_large: bool) -> list[h11.Event]:
        date = wire.http_date(time.time())
        method = request.method
        sid = (wire.header(request.headers, b"x-session-id") or b"").decode("latin-1")
        if method == b"GET":
            if wire.clean_path(request.target) == "/":
                return self._text(200, wire.ROOT_BODY, date, nosniff=False)
            return self._text(404, wire.NOT_FOUND_BODY, date)
        if method != b"POST" or len(sid) < wire.MIN_SESSION_ID:
            self._log(method, sid, len(body), 400)
            return self._text(400, wire.BAD_REQUEST_BODY, date)
        return await self._transact(request, sid, body, too_large, date)

    async def _transact(self, request: h11.Request, sid: str, body: bytes, too_large: bool,
                        date: bytes) -> list[h11.Event]:  # fmt: skip
        def peer() -> tuple[str, int] | None:
            ip = wire.user_ip(request.headers, self.peer_ip)
            return (ip, 1) if ip is not None else None

        session = self.table.get(sid, peer)
        if session is None:
            self.table.warn_full()
            return self._text(500, wire.INTERNAL_ERROR_BODY, date, method=b"POST", sid=sid, size=len(body))
        session.deliver(body)
        if too_large:
            self.table.delete(session)
            self._log(b"POST", sid, len(body), 200)
            return [wire.too_large_reply(date), h11.EndOfMessage()]
        opening = session.new and not body
        await session.wait_ready(self.server.tuning.dial_wait)
        # A new session's empty opening poll is answered as soon as its upstream is connected,
        # without the 10 ms turnaround (the client holds its SOCKS reply until this answer).
        payload = await session.take(0.0 if opening else self.server.tuning.turnaround)
        if payload is None:
            self.table.delete(session)
            return self._text(500, wire.INTERNAL_ERROR_BODY, date, method=b"POST", sid=sid, size=len(body))
        self._log(b"POST", sid, len(body), 200)
        events: list[h11.Event] = [wire.data_reply(payload, date)]
        if payload:
            events.append(h11.Data(data=payload))
        events.append(h11.EndOfMessage())
        return events

    def _text(self, status: int, body: bytes, date: bytes, *, nosniff: bool = True, method: bytes = b"",
              sid: str = "", size: int = 0) -> list[h11.Event]:  # fmt: skip
        if method:
            self._log(method, sid, size, status)
        response, data = wire.text_reply(status, body, date, nosniff=nosniff)
        return [response, h11.Data(data=data), h11.EndOfMessage()]

    def _log(self, method: bytes, sid: str, size: int, status: int) -> None:
        hook = self.server.request_log
        if hook is not None:
            hook(method.decode("latin-1"), sid, size, status)


class MeekServer(ServerTransport):
    """meek's server side: plain HTTP, or TLS with ``cert``/``key`` (ALPN http/1.1 only)."""

    def __init__(self, options: ServerOptions, tuning: Tuning | None = None) -> None:
        self.options = options
        self.tuning = tuning or Tuning()
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
        table = SessionTable(app_factory, cap=self.tuning.session_cap, staleness=self.tuning.staleness)
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
