"""The client's HTTP/1.1 exchanges: one keep-alive connection, one request at a time."""

from __future__ import annotations

import asyncio
import time
import weakref
import zlib
from dataclasses import dataclass

from ...errors import RemoteProtocolError
from ...net.upstream import Dialer
from . import h1, wire
from .options import ClientOptions, client_context

MAX_RESPONSE_BODY = 16 * wire.MAX_PAYLOAD
"""We keep every byte of a longer-than-64-KiB body (obfs4proxy drops the rest), up to this."""


class ExchangeFailed(ConnectionError):
    """The connection broke during an exchange; ``answered`` tells whether any response byte came."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class HttpClientConnection:
    """One TCP (or TLS) connection to the server or front, reused while both sides allow it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # completed one exchange: a failure before any answer may be the keep-alive trap
        self.reusable = True
        self._answered = False  # a response byte arrived in the current exchange

    @classmethod
    async def open(cls, options: ClientOptions, dialer: Dialer) -> HttpClientConnection:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        front = options.dial_address
        if options.url.tls:
            transport, _ = await dialer.create_connection(
                lambda: protocol, front, ssl=client_context(), server_hostname=front.host
            )
        else:
            transport, _ = await dialer.create_connection(lambda: protocol, front)
        return cls(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def round_trip(self, request: bytes) -> Reply:
        """Send one whole request (``wire.Requests.post``), read its whole response."""
        if not self.reusable:
            raise ExchangeFailed("the connection cannot carry another request", answered=False)
        self.reusable = False  # until this exchange completes
        self._answered = False
        try:
            self.writer.write(request)
            reply, reusable = await self._read_response()
        except (OSError, zlib.error) as exc:
            raise ExchangeFailed(f"{type(exc).__name__}: {exc}", answered=self._answered) from None
        self.used = True
        self.reusable = reusable
        return reply

    async def _read_response(self) -> tuple[Reply, bool]:
        parser = h1.ResponseReader(2 * MAX_RESPONSE_BODY)  # a gzip body may be a little longer
        while parser.response is None:
            data = await self.reader.read(1 << 18)
            if not data:
                if parser.eof():
                    break
                raise ExchangeFailed("connection closed before the response", answered=self._answered)
            self._answered = True
            try:
                parser.feed(data)
            except ValueError as exc:
                raise ExchangeFailed(str(exc), answered=True) from None
            except h1.ResponseTooLarge:
                raise RemoteProtocolError(f"response body over {MAX_RESPONSE_BODY} bytes") from None
        response = parser.response
        assert response is not None
        body = response.body
        if h1.header(response.headers, b"content-encoding") == b"gzip":
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_RESPONSE_BODY + 1)
        if len(body) > MAX_RESPONSE_BODY:
            raise RemoteProtocolError(f"response body over {MAX_RESPONSE_BODY} bytes")
        return Reply(response.status, body), parser.reusable

    @property
    def alive(self) -> bool:
        """Still open, and the server sent nothing since the last response (not even EOF)."""
        unread = getattr(self.reader, "_buffer", b"")  # asyncio keeps what arrived unasked here
        return not self.writer.transport.is_closing() and not self.reader.at_eof() and not unread

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


PoolKey = tuple[ClientOptions, Dialer]
MAX_IDLE = 8
"""Idle keep-alive connections kept per server (url and front) and dialer."""
IDLE_TIMEOUT = 15.0
"""Seconds an idle connection is kept (below meek-server's 20 s idle timeout)."""


class ConnectionPool:
    """Idle keep-alive connections shared by the sessions of one event loop, as the original
    meek-client shares Go's transport: a new session need not pay a TCP (and TLS) handshake.

    Each idle connection carries its expiry time.  While any is idle, one task per pool sleeps until
    the next expiry and closes the expired ones (none is armed or cancelled per exchange), and
    :meth:`get` never hands out an expired one.  When the loop shuts down (``asyncio.run`` cancels
    every task before it closes the loop), that task closes every idle connection, so none is left
    to the garbage collector.  The pool keeps no reference to the task (the task holds its loop, and
    the pools are kept in a table weakly keyed by loop)."""

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[tuple[HttpClientConnection, float]]] = {}
        self._keeping = False  # the task that sweeps and closes is running

    async def get(self, options: ClientOptions, dialer: Dialer) -> HttpClientConnection:
        """An idle live connection to the server (the most recently used), else a new one."""
        idle = self._idle.get((options, dialer))
        if idle:
            now = time.monotonic()
            while idle:
                conn, expires = idle.pop()
                if expires > now and conn.alive:
                    return conn
                conn.close()
        return await HttpClientConnection.open(options, dialer)

    def put(self, options: ClientOptions, dialer: Dialer, conn: HttpClientConnection) -> None:
        """Keep ``conn`` for another exchange (closed when not reusable, or too many are idle)."""
        idle = self._idle.setdefault((options, dialer), [])
        if not conn.reusable or not conn.alive or len(idle) >= MAX_IDLE:
            conn.close()
            return
        idle.append((conn, time.monotonic() + IDLE_TIMEOUT))
        if not self._keeping:
            self._keeping = True
            asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        """Close the connections idle for IDLE_TIMEOUT as they expire, until none is idle; all of
        them if the loop shuts down first."""
        try:
            while (due := self._sweep()) is not None:
                await asyncio.sleep(due - time.monotonic())
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self._keeping = False

    def _sweep(self) -> float | None:
        """Close the expired idle connections; when the next one expires (None: none is idle)."""
        now = time.monotonic()
        due: float | None = None
        for key, idle in list(self._idle.items()):
            kept = []
            for conn, expires in idle:
                if expires > now:
                    kept.append((conn, expires))
                else:
                    conn.close()
            if kept:  # in the order they were put: the first expires first
                self._idle[key] = kept
                due = kept[0][1] if due is None else min(due, kept[0][1])
            else:
                del self._idle[key]
        return due

    def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn, _expires in connections:
                conn.close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionPool] = weakref.WeakKeyDictionary()


def pool() -> ConnectionPool:
    """The running loop's connection pool."""
    loop = asyncio.get_running_loop()
    found = _POOLS.get(loop)
    if found is None:
        found = _POOLS[loop] = ConnectionPool()  # holds no reference to the loop (a weak key)
    return found
