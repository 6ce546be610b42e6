"""Server side: accept transport connections and forward the decoded stream onward."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import metrics
from .config import LogLevel
from .extorport import open_extorport, read_cookie_file
from .logs import EventLog
from .net.accept import DialOnAccept
from .net.addr import Address
from .net.relay import RelayProtocol, Splice
from .net.tracker import ConnectionTracker, closed_logger
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
        splice = Splice(
            on_done=closed_logger(self.log, self.tracker, self.name),
            a_factory=lambda s: DialOnAccept(s, self._dial_target, self.log, self.name),
        )
        self.tracker.add(splice)
        return splice.a

    def handshake_failed(self, exc: Exception) -> None:
        """``on_error`` of the listener: a bug in the transport at ERROR, the peer's fault at INFO."""
        metrics.handshake_failed(self.name, exc)
        self.log.failure(self.name, "handshake failed", exc)

    def close(self) -> None:
        """Nothing of its own to close: its relays are in the tracker."""

    async def _dial_target(self, splice: Splice, accepted: asyncio.Transport) -> None:
        if metrics.ACTIVE is not None:
            metrics.handshake_done(self.name, accepted.get_extra_info("handshake_seconds"))
        if self.log.enabled(LogLevel.INFO):
            self.log.info(f"{self.name}: connection from {self.log.peer(accepted)}")
        if self.log.enabled(LogLevel.DEBUG):
            asked = accepted.get_extra_info("requested_destination")
            if asked is not None:  # shadow carries one; we forward to our own target regardless
                shown = asked if self.log.show_addresses else "[scrubbed]"
                self.log.debug(f"{self.name}: client asked for {shown}; forwarding to the configured target")
        leftover = b""
        if self.extorport is not None and self.authcookie is not None:
            # Read per connection: tor rewrites the cookie when it restarts.
            cookie = read_cookie_file(self.authcookie)
            sock, leftover = await open_extorport(
                self.extorport, cookie, self.name, _peer_address(accepted), timeout=self.connect_timeout
            )
            loop = asyncio.get_running_loop()
            try:
                await loop.create_connection(lambda: splice.b, sock=sock)
            except BaseException:
                sock.close()
                raise
        else:
            assert self.target is not None
            await create_connection(lambda: splice.b, self.target, timeout=self.connect_timeout)
        if leftover:
            splice.b.data_received(leftover)


def _peer_address(transport: asyncio.BaseTransport) -> Address | None:
    name = transport.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return Address(str(name[0]), int(name[1]))
    return None
