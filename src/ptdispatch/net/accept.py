"""Accept a connection, dial the other side, then relay: transparent-TCP clients and every server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from ..errors import ConfigError, failed_dial
from ..logs import EventLog
from .addr import Address
from .relay import RelayProtocol, Splice

LISTEN_BACKLOG = 65535
"""The listen backlog of every listener: the kernel caps it at ``net.core.somaxconn`` (4096 by
default since Linux 5.4), as Go's listeners and ss-libev's ask.  asyncio's default of 100 drops the
SYNs of a burst past it, and those clients wait out TCP's retransmission backoff (1 s, 3 s, ...)."""

DIAL_HOLD_LIMIT = 64 * 1024
"""Bytes read from the accepted side while its dial onward is under way, held for the relay; past
this much it stops reading until the relay is joined.  It reads on meanwhile so that a client's
reset or close ends the dial at once: a side that does not read sees neither, and the dial (to
-target, tor's ExtORPort, a transparent-TCP server) went on for up to its timeout.  A bound, so
that a client sending without pause during a slow dial costs a buffer's worth, no more."""

Dial = Callable[[Splice, asyncio.Transport], Awaitable[object]]
"""Connect ``splice.b`` (what the accepted side sends meanwhile is held, up to :data:`DIAL_HOLD_LIMIT`)."""


class DialOnAccept(RelayProtocol):
    """The accepted side of a splice; starts ``dial`` as soon as it is connected.

    Until the dial is done it reads into ``pending`` (up to :data:`DIAL_HOLD_LIMIT`; ``splice.b``
    may be connected before that, so nothing goes to it directly) and holds an EOF: the relay gets
    both, in order, when :meth:`Splice.join` joins the two sides.  Losing the accepted side cancels
    the dial."""

    def __init__(self, splice: Splice, dial: Dial, log: EventLog, label: str) -> None:
        super().__init__(splice)
        self._dial = dial
        self._log = log
        self._label = label
        self._task: asyncio.Task[None] | None = None
        #: The dial onward is under way (meek's sessions wait on it: ``Session.wait_ready``).
        self.dialing = True
        self._eof_held = False  # an EOF came during the dial: a half-close, passed on at the join

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        accepted: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self.transport = accepted
        self._task = asyncio.get_running_loop().create_task(self._run(accepted))

    def data_received(self, data: bytes) -> None:
        if not self.dialing:
            RelayProtocol.data_received(self, data)
            return
        self.bytes_in += len(data)  # all of it held in pending: nothing has been relayed yet
        self.pending.append(data)
        if self.bytes_in > DIAL_HOLD_LIMIT and self.transport is not None:
            self.transport.pause_reading()  # until the join

    def eof_received(self) -> bool:
        if not self.dialing:
            return RelayProtocol.eof_received(self)
        self._eof_held = True  # not self.eof yet: splice.b, if connected, must not close on it
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self, transport: asyncio.Transport) -> None:
        splice = self.splice
        try:
            await self._dial(splice, transport)
        except asyncio.CancelledError:
            splice.fail(ConnectionAbortedError("accepted side went away"))
            raise
        except Exception as exc:
            # ConfigError: bad per-connection options, or tor's ExtORPort cookie file missing or
            # half-written when this connection read it (tor rewrites it when it restarts): a failed
            # dial like an unreachable target or a host name the IDNA codec refuses, not a bug.
            if isinstance(exc, ConfigError) or failed_dial(exc):  # failed_dial: OSError (RemoteProtocolError too)
                self._log.warn(f"{self._label}: cannot connect onward: {self._log.reason(exc)}")
            else:  # a bug must cost one connection, never the process
                self._log.internal_error(self._label, exc)
            splice.fail(exc)
            return
        if self.transport is None:
            splice.fail(ConnectionAbortedError("accepted side went away"))
            return
        self.dialing = False
        self.eof = self._eof_held
        splice.join()


async def create_server(
    factory: Callable[[], asyncio.BaseProtocol], where: Address | socket.socket, *, reuse_port: bool = False
) -> asyncio.Server:
    """Listen on ``where``: an address (shared with other processes under ``reuse_port``), or a
    bound listening socket (the one all workers share)."""
    loop = asyncio.get_running_loop()
    if isinstance(where, socket.socket):
        return await loop.create_server(factory, sock=where, backlog=LISTEN_BACKLOG)
    return await loop.create_server(
        factory, where.host, where.port, reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG
    )
