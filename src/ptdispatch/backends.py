"""Server side: accept transport connections and forward the decoded stream onward."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import metrics
from .config import LogLevel
from .extorport import open_extorport, read_cookie_file
from .logs import EventLog
from .net.accept import DialOnAccept
from .net.addr import Address
from .net.relay import RelayProtocol, Splice
from .net.tracker import ConnectionTracker, closed_logger, track_opened
from .net.upstream import create_connection
from .transports.base import ServerTransport


class Backend(Protocol):
    """Where a server listener's connections go once their transport handshake is complete:
    :class:`ServerMethod` (TCP to -target or tor's ExtORPort) or the UDP modes'
    ``udp.server.UdpServerMethod``.  The dispatcher needs nothing else of one."""

    name: str

    def accepted(self) -> asyncio.BaseProtocol:
        """The application protocol for one established transport connection (``app_factory``)."""
        ...

    def handshake_failed(self, exc: Exception) -> None:
        """``on_error`` of the listener: a connection failed (a bug is an ``InternalError``)."""
        ...

    def close(self) -> None:
        """Shutdown is over: end whatever is still open (called after the grace period)."""
        ...


@dataclass
class ServerMethod:
    """One started server transport and where its connections go: -target, or tor's ExtORPort."""

    name: str
    server: ServerTransport
    target: Address | None
    log: EventLog
    tracker: ConnectionTracker
    extorport: Address | None = None
    authcookie: Path | None = None
    connect_timeout: float = 30.0

    def accepted(self) -> RelayProtocol:
        """Protocol factory for connections whose transport handshake completed."""
        splice = Splice(on_done=self._on_done, a_factory=self._accepting)
        track_opened(self.tracker, splice, self.name)
        return splice.a

    @functools.cached_property
    def _on_done(self) -> Callable[[Splice, Exception | None], None]:
        return closed_logger(self.log, self.tracker, self.name)  # built once per listener, not per connection

    def _accepting(self, splice: Splice) -> RelayProtocol:
        return DialOnAccept(splice, self._dial_target, self.log, self.name)

    def handshake_failed(self, exc: Exception) -> None:
        """``on_error`` of the listener: a bug in the transport at ERROR, the peer's fault at INFO."""
        metrics.handshake_failed(self.name, exc)
        self.log.failure(self.name, "handshake failed", exc)

    def close(self) -> None:
        """Nothing of its own to close: its relays are in the tracker."""

    def _dial_target(self, splice: Splice, accepted: asyncio.Transport) -> Coroutine[Any, Any, object]:
        """The coroutine that connects ``splice.b`` to the target or to tor's ExtORPort."""
        if metrics.ACTIVE is not None:
            metrics.handshake_done(self.name, accepted.get_extra_info("handshake_seconds"))
        if self.log.enabled(LogLevel.INFO):
            self.log.info(f"{self.name}: connection from {self.log.peer(accepted)}")
        if self.log.enabled(LogLevel.DEBUG):
            asked = accepted.get_extra_info("requested_destination")
            if asked is not None:  # shadow carries one; we forward to our own target regardless
                shown = asked if self.log.show_addresses else "[scrubbed]"
                self.log.debug(f"{self.name}: client asked for {shown}; forwarding to the configured target")
        if self.extorport is not None and self.authcookie is not None:
            return self._dial_extorport(splice, accepted, self.extorport, self.authcookie)
        assert self.target is not None
        return create_connection(lambda: splice.b, self.target, timeout=self.connect_timeout)

    async def _dial_extorport(
        self, splice: Splice, accepted: asyncio.Transport, extorport: Address, authcookie: Path
    ) -> None:
        # Read per connection: tor rewrites the cookie when it restarts.  A file missing or
        # half-written just now raises ConfigError, which fails this connection (at WARN).
        cookie = read_cookie_file(authcookie)
        sock, leftover = await open_extorport(
            extorport, cookie, self.name, _peer_address(accepted), timeout=self.connect_timeout
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: splice.b, sock=sock)
        except BaseException:
            sock.close()
            raise
        if leftover:
            splice.b.data_received(leftover)


def _peer_address(transport: asyncio.BaseTransport) -> Address | None:
    name = transport.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return Address(str(name[0]), int(name[1]))
    return None
