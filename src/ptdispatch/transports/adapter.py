"""The one bridge between any :class:`~ptdispatch.transports.base.Engine` and asyncio.

:class:`EngineProtocol` is the asyncio protocol of the *wire* socket.  Once the engine's handshake
is complete it presents the plaintext side as an ordinary :class:`asyncio.Transport`
(:class:`EngineTransport`) to an ordinary application :class:`asyncio.Protocol`, the way asyncio's
own TLS support does.  Everything above (relays, streams, SOCKS) is therefore plain asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import HandshakeTimeout, InternalError, RemoteProtocolError
from ..net.addr import Address

if TYPE_CHECKING:
    from ..net.upstream import Dialer
    from .base import Engine

AppFactory = Callable[[], asyncio.BaseProtocol]
"""Makes the application protocol that receives a connection's plaintext side."""
ErrorCallback = Callable[[Exception], None]
"""Hears of a connection that failed: a probe, a bad handshake, a stream cut inside a frame
(``RemoteProtocolError``), or a bug in the engine (``InternalError``)."""
Failure = RemoteProtocolError | InternalError


class EngineTransport(asyncio.Transport):
    """The plaintext view of a transport connection, handed to the application protocol."""

    def __init__(self, owner: EngineProtocol) -> None:
        super().__init__()
        self._owner = owner

    @property
    def engine(self) -> Engine:
        """The transport engine (for metadata such as a server's requested destination)."""
        return self._owner.engine

    # --- writing ---------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        owner = self._owner
        if owner.closing:
            return
        try:
            owner.engine.send_data(bytes(data))
        except Exception as exc:  # the error boundary: a bug costs this connection only
            owner.fail(exc)
            return
        owner.flush()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._owner.close_after_flush(eof_only=True)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        owner = self._owner
        return owner.wire.get_write_buffer_size() + owner.paced_backlog

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._owner.wire.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._owner.wire.set_write_buffer_limits(high, low)

    # --- reading ---------------------------------------------------------------------------
    def pause_reading(self) -> None:
        self._owner.wire.pause_reading()

    def resume_reading(self) -> None:
        self._owner.wire.resume_reading()

    def is_reading(self) -> bool:
        return self._owner.wire.is_reading()

    # --- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._owner.close_after_flush(eof_only=False)

    def abort(self) -> None:
        self._owner.wire.abort()

    def is_closing(self) -> bool:
        return self._owner.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._owner.wire.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._owner.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._owner.app is not None
        return self._owner.app


class EngineProtocol(asyncio.Protocol):
    """Drives one engine over one wire connection.

    ``app_factory`` is called once the handshake is complete; the protocol it returns gets
    ``connection_made(EngineTransport)`` and then plaintext.  ``established`` (a future) resolves
    at that moment, or fails with the handshake error.
    """

    def __init__(self, engine: Engine, app_factory: AppFactory, *, on_error: ErrorCallback | None = None) -> None:
        self.engine = engine
        self._app_factory = app_factory
        self._on_error = on_error
        self.app: asyncio.BaseProtocol | None = None
        self.app_transport: EngineTransport | None = None
        self.wire: asyncio.Transport = None  # type: ignore[assignment]
        self.established: asyncio.Future[EngineTransport] = asyncio.get_running_loop().create_future()
        self.closing = False
        self.paced_backlog = 0
        self._paced: collections.deque[tuple[bytes, float]] = collections.deque()
        self._pacing: asyncio.TimerHandle | None = None
        self._pending_close: str | None = None  # "eof" or "close" once the paced queue drains
        self._timer: asyncio.TimerHandle | None = None
        self._discarding = False
        self._failed = False
        self._loop = asyncio.get_running_loop()

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.wire = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._timer = self._loop.call_later(self.engine.handshake_timeout, self._handshake_timed_out)
        try:
            self.engine.initiate()
            established = self.engine.established
        except Exception as exc:
            self.fail(exc)
            return
        self.flush()
        if established:
            self._establish()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        try:
            plain = self.engine.receive_data(data)
            established = self.app is not None or self.engine.established
        except Exception as exc:  # the error boundary (h11's rule): see fail()
            self.fail(exc)
            return
        self.flush()
        if self.app is None:
            if not established or self._discarding:
                return
            self._establish()
        if plain and self.app is not None:
            self.app.data_received(plain)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        if self._discarding:
            return True  # keep draining until the linger timer closes us
        if self.app is None:
            self.fail(RemoteProtocolError("connection closed during the handshake"))
            return None
        return self.app.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cancel_timers()
        if self.app is not None:
            self.app.connection_lost(exc)
        elif not self.established.done():
            self.established.set_exception(exc or ConnectionResetError("connection closed during the handshake"))
            self.established.exception()  # mark retrieved: nobody may be waiting

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # --- engine output ----------------------------------------------------------------------
    def flush(self) -> None:
        if self._discarding:
            return
        engine = self.engine
        try:
            if not engine.paced:
                out = engine.data_to_send()
                if out:
                    self.wire.write(out)
                return
            writes = engine.paced_writes()
        except Exception as exc:
            self.fail(exc)
            return
        for chunk, delay in writes:
            self._paced.append((chunk, delay))
            self.paced_backlog += len(chunk)
        if self._pacing is None:
            self._drain_paced()

    def _drain_paced(self) -> None:
        self._pacing = None
        while self._paced:
            chunk, delay = self._paced.popleft()
            self.paced_backlog -= len(chunk)
            self.wire.write(chunk)
            if delay > 0 and self._paced:
                self._pacing = self._loop.call_later(delay, self._drain_paced)
                return
        if self._pending_close is not None:
            self._finish_close(self._pending_close)

    def close_after_flush(self, *, eof_only: bool) -> None:
        kind = "eof" if eof_only else "close"
        if self._pacing is not None:
            self._pending_close = kind
        else:
            self._finish_close(kind)
        if not eof_only:
            self.closing = True

    def _finish_close(self, kind: str) -> None:
        if kind == "eof":
            if self.wire.can_write_eof() and not self.wire.is_closing():
                self.wire.write_eof()
        else:
            self.wire.close()

    # --- handshake ---------------------------------------------------------------------------
    def _establish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.app_transport = EngineTransport(self)
        self.app = self._app_factory()
        self.app.connection_made(self.app_transport)
        if not self.established.done():
            self.established.set_result(self.app_transport)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        message = f"no handshake within {self.engine.handshake_timeout:g} s"
        try:
            linger = self.engine.timeout_linger
        except Exception as exc:
            self.fail(exc)
            return
        self.fail(HandshakeTimeout(message, linger=linger))

    def fail(self, exc: Exception) -> None:
        """End the connection the way a failed handshake ends: tell ``on_error``, send nothing,
        read and discard for the error's linger, then abort.  Anything but a
        ``RemoteProtocolError`` is a bug in the engine and becomes an ``InternalError``."""
        if self._failed:
            return  # one failure per connection: logged once
        self._failed = True
        if not isinstance(exc, RemoteProtocolError | InternalError):
            exc = InternalError.wrap(exc, linger=self._bug_linger())
        if self._on_error is not None:
            self._on_error(exc)
        if not self.established.done():
            self.established.set_exception(exc)
            self.established.exception()
        self._cancel_timers()
        if exc.linger > 0 and not self.wire.is_closing():
            # Read and drop whatever comes, then close: a prober learns nothing from timing.
            self._discarding = True
            self._timer = self._loop.call_later(exc.linger, self.wire.abort)
        else:
            self.wire.abort()

    def _bug_linger(self) -> float:
        """How long to linger after a bug: as long as after a handshake timeout (obfs4, shadow)."""
        try:
            return float(getattr(self.engine, "linger", None) or self.engine.timeout_linger)
        except Exception:
            return 0.0

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._pacing):
            if handle is not None:
                handle.cancel()
        self._timer = self._pacing = None


async def dial_engine(
    engine: Engine, address: Address, app_factory: AppFactory, dialer: Dialer
) -> tuple[EngineTransport, asyncio.BaseProtocol]:
    """Connect to ``address`` through ``dialer`` and run ``engine``'s handshake over the connection."""
    _, protocol = await dialer.create_connection(lambda: EngineProtocol(engine, app_factory), address)
    try:
        transport = await protocol.established
    except BaseException:
        protocol.wire.abort()  # a failed or cancelled handshake must not leave the socket open
        raise
    assert protocol.app is not None
    return transport, protocol.app


async def serve_engines(
    new_engine: Callable[[], Engine],
    app_factory: AppFactory,
    where: Address | socket.socket,
    *,
    on_error: ErrorCallback | None = None,
) -> asyncio.Server:
    """Accept TCP connections on ``where``, each driven by a fresh ``new_engine()``."""
    loop = asyncio.get_running_loop()

    def factory() -> EngineProtocol:
        return EngineProtocol(new_engine(), app_factory, on_error=on_error)

    if isinstance(where, socket.socket):
        return await loop.create_server(factory, sock=where)
    return await loop.create_server(factory, where.host, where.port)
