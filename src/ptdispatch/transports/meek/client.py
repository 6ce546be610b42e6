"""The meek client (meek_lite): a session of HTTP POSTs, handed to the application as a stream.

Requests and poll schedule as obfs4proxy 0.0.14 (sections 1.3-1.5 of the wire notes); better than it
where safe (section 1.6-1.7): a request that fails before any answer on a keep-alive connection idle
for a second or more (the keep-alive trap: the server's idle timeout struck as we reused it) is sent
again once on a fresh connection, and a non-200 other than 500 is retried after a short backoff, up
to 10 times.  Any other failure ends the stream, as obfs4proxy's does: the server may have read the
body already, and a resend would hand it over twice.  A 500 is meek-server's "this session is over"
(its upstream ended or could not be dialled; a retry would open a new upstream connection): the
stream ends.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ...errors import RemoteProtocolError
from ...net.addr import Address
from ...net.upstream import DIRECT, Dialer
from ..adapter import AppFactory
from ..base import ClientTransport, Rng
from . import wire
from .http import ExchangeFailed, HttpClientConnection, pool
from .options import ClientOptions
from .wakeup import Wakeup

EXCHANGE_TIMEOUT = 60.0
HIGH_WATER = 4 * wire.MAX_PAYLOAD


class SessionEnded(Exception):
    """The server answered 500: the session is gone."""


class ClientSession:
    """The HTTP side of one meek session: its id, its connection, the retry policy."""

    def __init__(self, options: ClientOptions, dialer: Dialer, rng: Rng) -> None:
        self.options = options
        self.dialer = dialer
        self.sid = wire.new_session_id(rng)
        self.requests = wire.Requests(options.url, self.sid)
        self._conn: HttpClientConnection | None = None
        self._pool = pool()  # this loop's, looked up once per session

    async def exchange(self, body: bytes) -> bytes:
        """POST ``body``; the response's bytes.  Raises ``SessionEnded`` on 500, ``OSError`` else."""
        request = self.requests.post(body)
        policy = wire.RetryPolicy()
        while True:
            conn = self._conn = await self._pool.get(self.options, self.dialer)
            idle = conn.idle_time()
            try:
                reply = await conn.round_trip(request, EXCHANGE_TIMEOUT)
            except ExchangeFailed as exc:
                self.drop()
                if policy.resend_after_failure(idle, exc.answered):
                    continue
                raise
            except BaseException:
                self.drop()
                raise
            self._conn = None
            self._pool.put(self.options, self.dialer, conn)
            action = policy.after_status(reply.status)
            if action == wire.SUCCESS:
                return reply.body
            if action == wire.ENDED:
                raise SessionEnded("the server ended the session (500)")
            if action == wire.GIVE_UP:
                raise RemoteProtocolError(f"the server answered {reply.status} {policy.answers} times")
            assert isinstance(action, float)
            await asyncio.sleep(action)

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class MeekClientTransport(asyncio.Transport):
    """The plaintext side of a meek session: writes are queued for the next POST, response bodies
    are delivered to the protocol.  No half-close (meek has none)."""

    def __init__(self, session: ClientSession, address: Address) -> None:
        super().__init__()
        self.session = session
        self._address = address
        self.app: asyncio.BaseProtocol | None = None
        self._out = bytearray()
        self._wakeup = Wakeup()  # the poll loop waits for data or its interval
        self._closing = False
        self._reading = True
        self._writing_paused = False
        self._task: asyncio.Task[None] | None = None

    def start(self, app: asyncio.BaseProtocol, first: bytes) -> None:
        self.app = app
        app.connection_made(self)
        if first:
            app.data_received(first)  # type: ignore[attr-defined]
        self._task = asyncio.ensure_future(self._run(0.0 if first else wire.INIT_POLL))

    # --- asyncio.Transport ---------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing:
            return
        self._out += data
        self._wakeup.wake()
        if not self._writing_paused and len(self._out) > HIGH_WATER and self.app is not None:
            self._writing_paused = True
            self.app.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("meek cannot half-close")

    def get_write_buffer_size(self) -> int:
        return len(self._out)

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        self._wakeup.wake()

    def is_reading(self) -> bool:
        return self._reading

    def close(self) -> None:
        """Send what is queued, then stop (meek sends no close signal)."""
        self._closing = True
        self._wakeup.wake()

    def abort(self) -> None:
        self._closing = True
        self._out.clear()
        if self._task is not None:
            self._task.cancel()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return tuple(self.session.options.dial_address)
        if name == "session_id":
            return self.session.sid
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.app is not None
        return self.app

    # --- the poll loop -----------------------------------------------------------------------
    async def _wait(self, interval: float) -> None:
        """Until data is queued (and the app reads), ``interval`` passed, or we are closing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval
        while not self._closing:
            if self._reading and (self._out or loop.time() >= deadline):
                return
            await self._wakeup.wait(loop, deadline if self._reading else None)

    async def _run(self, interval: float) -> None:
        exc: Exception | None = None
        try:
            while True:
                await self._wait(interval)
                if self._closing and not self._out:
                    break
                body = bytes(self._out[: wire.MAX_PAYLOAD])
                del self._out[: wire.MAX_PAYLOAD]
                if self._writing_paused and len(self._out) <= HIGH_WATER // 2 and self.app is not None:
                    self._writing_paused = False
                    self.app.resume_writing()
                data = await self.session.exchange(body)
                if data and not self._closing and self.app is not None:
                    self.app.data_received(data)  # type: ignore[attr-defined]
                interval = wire.next_poll_interval(interval, bool(body), bool(data))
        except SessionEnded:
            if not self._closing and self.app is not None:
                self.app.eof_received()  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            pass
        except Exception as exc_:  # OSError, RemoteProtocolError, TimeoutError
            exc = exc_
        finally:
            self._closing = True
            self.session.drop()
            if self.app is not None:
                self.app.connection_lost(exc)


class MeekClient(ClientTransport):
    """meek_lite's client side; the dialled ``address`` is ignored (the url decides)."""

    def __init__(self, options: ClientOptions, rng: Rng = os.urandom) -> None:
        self.options = options
        self._rng = rng

    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        session = ClientSession(self.options, dialer, self._rng)
        try:
            async with asyncio.timeout(dialer.timeout + EXCHANGE_TIMEOUT):
                first = await session.exchange(b"")  # a dead server fails the dial (a SOCKS error)
        except SessionEnded:
            session.drop()
            raise RemoteProtocolError("the meek server could not connect the session (500)") from None
        except BaseException:
            session.drop()
            raise
        transport = MeekClientTransport(session, address)
        app = app_factory()
        transport.start(app, first)
        return transport, app
