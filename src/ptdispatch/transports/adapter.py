"""The one bridge between any :class:`~ptdispatch.transports.base.Engine` and asyncio.

:class:`EngineProtocol` is the asyncio protocol of the *wire* socket.  Once the engine's handshake
is complete it presents the plaintext side as an ordinary :class:`asyncio.Transport`
(:class:`EngineTransport`) to an ordinary application :class:`asyncio.Protocol`, the way asyncio's
own TLS support does.  Everything above (relays, streams, SOCKS) is therefore plain asyncio.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import ClosedEmpty, InternalError, RemoteProtocolError
from ..net.accept import create_server
from ..net.addr import Address
from .timing import DEFAULT_TIMEOUTS, Timeouts

if TYPE_CHECKING:
    from ..net.upstream import Dialer
    from .base import Engine

AppFactory = Callable[[], asyncio.BaseProtocol]
"""Makes the application protocol that receives a connection's plaintext side."""
ErrorCallback = Callable[[Exception], None]
"""Hears of a connection that failed: a probe, a bad handshake, a stream cut inside a frame
(``RemoteProtocolError``), or a bug in the engine (``InternalError``)."""
_MISSING = object()


class CloseKind(enum.Enum):
    """What the application asked for while paced output was still queued."""

    EOF = "write_eof"
    CLOSE = "close"


class EngineTransport(asyncio.Transport):
    """The plaintext view of a transport connection, handed to the application protocol."""

    def __init__(self, owner: EngineProtocol) -> None:
        super().__init__()
        self._owner = owner

    # --- writing ---------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        owner = self._owner
        if owner.closing or owner.failed:
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
        return owner.wire.get_write_buffer_size() + owner.engine.buffered_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._owner.wire.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        owner = self._owner
        owner.wire.set_write_buffer_limits(high, low)
        owner._limits = owner.wire.get_write_buffer_limits()

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
        """The engine's metadata first (``requested_destination``...), then the socket's."""
        value = self._owner.engine.get_extra_info(name, _MISSING)
        if value is not _MISSING:
            return value
        if name == "handshake_seconds":  # accept to established (for the metrics)
            return self._owner.handshake_seconds
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
    at that moment, or fails with the handshake error.  Every call into the engine is inside the
    error boundary (:meth:`fail`); the engine's one timer (:meth:`Engine.get_timer`) is the one
    timer handle here, reused for the linger after a failure.
    """

    def __init__(
        self,
        engine: Engine,
        app_factory: AppFactory,
        *,
        on_error: ErrorCallback | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.engine = engine
        self._app_factory = app_factory
        self._on_error = on_error
        self._timeouts = timeouts
        self.app: asyncio.BaseProtocol | None = None
        self.app_transport: EngineTransport | None = None
        self.wire: asyncio.Transport = None  # type: ignore[assignment]
        self.established: asyncio.Future[EngineTransport] = asyncio.get_running_loop().create_future()
        self.closing = False
        self._pending_close: CloseKind | None = None  # done once the engine's backlog drains
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._discarding = False
        self._heard = False  # a byte came from the peer
        self._error: Exception | None = None
        self._wire_paused = False
        self._app_paused = False
        self._limits = (16384, 65536)  # (low, high), as get_write_buffer_limits(): the socket's
        self._loop = asyncio.get_running_loop()
        self.handshake_seconds = 0.0

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.wire = wire = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._limits = wire.get_write_buffer_limits()
        engine = self.engine
        self.handshake_seconds = -self._loop.time()
        try:
            engine.start(time.monotonic(), self._timeouts)
            engine.initiate()
            established = engine.established
        except Exception as exc:
            self.fail(exc)
            return
        self.flush()
        if established and self._error is None:
            self._establish()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self._heard = True
        try:
            plain = self.engine.receive_data(data)
            established = self.app is not None or self.engine.established
        except Exception as exc:  # the error boundary (h11's rule): see fail()
            self.fail(exc)
            return
        self.flush()
        if self.app is None:
            if not established or self._error is not None:
                return
            self._establish()
        if plain and self.app is not None:
            self.app.data_received(plain)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        if self._discarding:
            self._stop_discarding()
            return True
        if self.app is None and not self._heard:
            self.fail(ClosedEmpty("closed before sending anything"))  # no linger: nothing to hide
            return True
        try:
            self.engine.receive_eof()  # a stream cut inside a handshake or a frame is an error
        except Exception as exc:
            self.fail(exc)
            if self._discarding:
                self._stop_discarding()
            return True
        if self.app is None:  # pragma: no cover - receive_eof() refuses an unfinished handshake
            self.fail(RemoteProtocolError("connection closed during the handshake"))
            return True
        return self.app.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._cancel_timer()
        exc = exc or self._error
        if self.app is not None:
            self.app.connection_lost(exc)
        elif not self.established.done():
            self.established.set_exception(exc or ConnectionResetError("connection closed during the handshake"))
            self.established.exception()  # mark retrieved: nobody may be waiting

    def _stop_discarding(self) -> None:
        """The peer ended its stream while we linger: nothing is left to hide from it
        (obfs4proxy, too, stops discarding and closes at EOF)."""
        self._cancel_timer()
        self.wire.abort()

    @property
    def failed(self) -> bool:
        """The connection failed (it may still be lingering)."""
        return self._error is not None

    def pause_writing(self) -> None:
        self._wire_paused = True
        self._update_pressure()

    def resume_writing(self) -> None:
        self._wire_paused = False
        self._update_pressure()

    def _update_pressure(self) -> None:
        """Pause the application while the socket's buffer is full or the engine holds more
        than the high-water mark for later (paced writes); resume below the low-water mark."""
        app = self.app
        if app is None:
            return
        try:
            backlog = self.engine.buffered_size()
        except Exception as exc:
            self.fail(exc)
            return
        if not self._app_paused:
            if self._wire_paused or backlog > self._limits[1]:
                self._app_paused = True
                app.pause_writing()
        elif not self._wire_paused and backlog <= self._limits[0]:
            self._app_paused = False
            app.resume_writing()

    # --- engine output and time -------------------------------------------------------------
    def flush(self) -> None:
        """Write what the engine has for the network now, and re-arm its timer."""
        if self._error is not None:
            return
        engine = self.engine
        try:
            out = engine.data_to_send()
            when = engine.get_timer()
            backlog = engine.buffered_size() if self._pending_close is not None else 0
        except Exception as exc:
            self.fail(exc)
            return
        if out:
            self.wire.write(out)
        if when != self._timer_at:
            self._arm(when)
        if when is not None or self._app_paused:  # only engines that hold output back
            self._update_pressure()
        if self._pending_close is not None and not backlog:
            self._finish_close(self._pending_close)

    def _arm(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._loop.call_later(max(0.0, when - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.engine.handle_timer(time.monotonic())
        except Exception as exc:
            self.fail(exc)
            return
        self.flush()

    def close_after_flush(self, *, eof_only: bool) -> None:
        kind = CloseKind.EOF if eof_only else CloseKind.CLOSE
        try:
            backlog = self.engine.buffered_size()
        except Exception as exc:
            self.fail(exc)
            return
        if backlog:
            self._pending_close = kind  # written once the paced output has gone (see flush)
        else:
            self._finish_close(kind)
        if not eof_only:
            self.closing = True

    def _finish_close(self, kind: CloseKind) -> None:
        self._pending_close = None
        if kind is CloseKind.EOF:
            if self.wire.can_write_eof() and not self.wire.is_closing():
                self.wire.write_eof()
        else:
            self.wire.close()

    # --- handshake and failure -------------------------------------------------------------
    def _establish(self) -> None:
        self.handshake_seconds += self._loop.time()
        self.app_transport = EngineTransport(self)
        self.app = self._app_factory()
        self.app.connection_made(self.app_transport)
        if self._wire_paused:
            self._update_pressure()
        if not self.established.done():
            self.established.set_result(self.app_transport)

    def fail(self, exc: Exception) -> None:
        """End the connection the way a failed handshake ends: tell ``on_error``, send nothing,
        read and discard for the error's linger, then abort.  Anything but a
        ``RemoteProtocolError`` is a bug in the engine and becomes an ``InternalError``."""
        if self._error is not None:
            return  # one failure per connection: reported once
        if not isinstance(exc, RemoteProtocolError | InternalError):
            exc = InternalError.wrap(exc, linger=self._bug_linger())
        self._error = exc
        if self._on_error is not None:
            self._on_error(exc)
        if not self.established.done():
            self.established.set_exception(exc)
            self.established.exception()
        self._cancel_timer()
        if exc.linger > 0 and not self.wire.is_closing():
            # Read and drop whatever comes, then close: a prober learns nothing from timing.
            self._discarding = True
            self._timer = self._loop.call_later(exc.linger, self.wire.abort)
        else:
            self.wire.abort()

    def _bug_linger(self) -> float:
        """How long to linger after a bug: as long as after a handshake timeout."""
        try:
            return float(self.engine.failure_linger())
        except Exception:
            return self._timeouts.linger

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None


async def dial_engine(
    engine: Engine, address: Address, app_factory: AppFactory, dialer: Dialer, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> tuple[EngineTransport, asyncio.BaseProtocol]:
    """Connect to ``address`` through ``dialer`` and run ``engine``'s handshake over the connection."""
    _, protocol = await dialer.create_connection(
        lambda: EngineProtocol(engine, app_factory, timeouts=timeouts), address
    )
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
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> asyncio.Server:
    """Accept TCP connections on ``where``, each driven by a fresh ``new_engine()``."""

    def factory() -> EngineProtocol:
        return EngineProtocol(new_engine(), app_factory, on_error=on_error, timeouts=timeouts)

    return await create_server(factory, where)
