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
    """The connection broke during an exchange; ``answered`` tells whether any response byte came.
    (An answer that breaks HTTP is a ``RemoteProtocolError`` instead.)"""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class HttpClientConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to the server or front, reused while both sides allow it.

    A protocol that feeds each exchange's parser directly and completes the exchange's future:
    no stream reader in between, and one timer per exchange instead of an ``asyncio.timeout``
    (both paid on every POST, polls included)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since: float | None = None  # the loop time its last exchange ended (None: no exchange yet)
        self.reusable = True
        self._answered = False  # a response byte arrived in the current exchange
        self._parser: h1.ResponseReader | None = None  # the current exchange's
        self._waiter: asyncio.Future[h1.Response] | None = None
        self._quiet = True  # nothing arrived outside an exchange, not even EOF

    @classmethod
    async def open(cls, options: ClientOptions, dialer: Dialer) -> HttpClientConnection:
        front = options.dial_address
        conn = cls()
        if options.url.tls:
            await dialer.create_connection(lambda: conn, front, ssl=client_context(), server_hostname=front.host)
        else:
            await dialer.create_connection(lambda: conn, front)
        return conn

    async def round_trip(self, request: bytes, timeout: float) -> Reply:
        """Send one whole request (``wire.Requests.post``), read its whole response within
        ``timeout`` seconds (``TimeoutError``)."""
        transport = self.transport
        if not self.reusable or transport is None or transport.is_closing():
            raise ExchangeFailed("the connection cannot carry another request", answered=False)
        self.reusable = False  # until this exchange completes
        self._answered = False
        parser = self._parser = h1.ResponseReader(2 * MAX_RESPONSE_BODY)  # a gzip body may be a little longer
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _time_out, waiter)
        try:
            try:
                transport.write(request)
            except OSError as exc:
                raise ExchangeFailed(f"{type(exc).__name__}: {exc}", answered=False) from None
            response = await waiter
        finally:
            timer.cancel()
            self._waiter = self._parser = None
        body = response.body
        if h1.header(response.headers, b"content-encoding") == b"gzip":
            try:
                body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_RESPONSE_BODY + 1)
            except zlib.error as exc:
                raise RemoteProtocolError(f"the server's gzip body does not decode: {exc}") from None
        if len(body) > MAX_RESPONSE_BODY:
            raise RemoteProtocolError(f"response body over {MAX_RESPONSE_BODY} bytes")
        self.idle_since = loop.time()
        self.reusable = parser.reusable
        return Reply(response.status, body)

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            self._quiet = False  # the server spoke out of turn: the connection is not kept
            return
        self._answered = True
        try:
            parser.feed(data)
        except ValueError as exc:  # bytes that are no HTTP/1.1 answer: the peer's fault, as in every transport
            waiter.set_exception(RemoteProtocolError(f"the server's answer is not HTTP/1.1: {exc}"))
            return
        except h1.ResponseTooLarge:
            waiter.set_exception(RemoteProtocolError(f"response body over {MAX_RESPONSE_BODY} bytes"))
            return
        if parser.response is not None:
            waiter.set_result(parser.response)

    def eof_received(self) -> bool:
        self._quiet = False
        self._end("connection closed before the response")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._quiet = False
        self._end(f"{type(exc).__name__}: {exc}" if exc is not None else "connection closed before the response")

    def _end(self, reason: str) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            return
        if parser.eof():  # a body read until the close is complete now (and the connection is not reusable)
            assert parser.response is not None
            waiter.set_result(parser.response)
        else:
            waiter.set_exception(ExchangeFailed(reason, answered=self._answered))

    def idle_time(self) -> float | None:
        """Seconds since its last exchange ended (None: it has had none): whether a failure of the
        next one may be the keep-alive trap (:data:`.wire.TRAP_IDLE`)."""
        if self.idle_since is None:
            return None
        return asyncio.get_running_loop().time() - self.idle_since

    @property
    def alive(self) -> bool:
        """Still open, and the server sent nothing since the last response (not even EOF)."""
        return self._quiet and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


def _time_out(waiter: asyncio.Future[h1.Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer from the meek server in time"))


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
