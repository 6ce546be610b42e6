"""Relay bytes both ways between two asyncio transports, with back-pressure and half-close.

A :class:`Splice` owns two :class:`RelayProtocol` halves.  Each half forwards what its transport
reads to the other half's transport, pauses reading while the other side's write buffer is full,
passes EOF through as a half-close, and when both directions are done closes both.  A side lost
with an error (a reset, a frame cut in two, a failed tag) resets the other side's connection
(:func:`reset_transport`), so that its peer never takes the truncated stream for a complete one.
Either side can be a plain socket or a transport connection's
:class:`~ptdispatch.transports.adapter.EngineTransport`.  Between two plain TCP sockets, a
direction that has carried :data:`~ptdispatch.net.kernel.SWITCH_AFTER` bytes moves the whole
connection into the kernel (:mod:`ptdispatch.net.kernel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections.abc import Callable

from . import kernel

RETRY_AFTER = 64 * 1024
"""When a switch to the kernel finds a write buffer not empty, the bytes to relay before trying again."""
_SWITCH_AT: float = kernel.SWITCH_AFTER if kernel.available() else math.inf
_LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger: on, 0 s


def reset_transport(transport: asyncio.Transport) -> None:
    """Abort ``transport`` so that its peer sees a reset (RST: ``ECONNRESET``), not the FIN of a
    clean end: ``SO_LINGER`` 0 on its socket, then ``abort()``.  A transport connection's
    ``EngineTransport`` hands over its wire socket; one without a socket (meek's sessions) is
    just aborted."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()


class RelayProtocol(asyncio.Protocol):
    """One side of a splice."""

    def __init__(self, splice: Splice) -> None:
        self.splice = splice
        self.peer: RelayProtocol = self
        self.transport: asyncio.Transport | None = None
        self.bytes_in = 0
        self.eof = False
        self.pending: list[bytes] = []  # read before the peer was attached
        self.lost = False
        self.write_paused = False  # this side's transport asked us to stop writing into it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (no typing.cast: a call per connection)
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        peer_transport = self.peer.transport
        if peer_transport is not None:
            peer_transport.write(data)
            if self.bytes_in > self.splice.switch_at:
                self.splice.to_kernel()
        else:
            self.pending.append(data)
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer.transport is None:
            return True
        if peer.eof or not peer.transport.can_write_eof():
            self.splice.close()
        else:
            peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.splice.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Splice:
    """Two relay halves, ``a`` and ``b``, joined once both have transports.

    Typical use: the accepted side is attached first (its reads are held back), the dialed side
    second; :meth:`attach` then flushes what was held back.  ``on_done`` runs once both sides
    are closed, with the first error seen.
    """

    def __init__(
        self,
        on_done: Callable[[Splice, Exception | None], None] | None = None,
        *,
        a_factory: Callable[[Splice], RelayProtocol] = RelayProtocol,
    ) -> None:
        self.a = a_factory(self)
        self.b = RelayProtocol(self)
        self.a.peer, self.b.peer = self.b, self.a
        self._on_done = on_done
        self.error: Exception | None = None
        self._lost = 0
        #: Bytes a direction relays in Python before :meth:`to_kernel` is tried (inf: never).
        self.switch_at = _SWITCH_AT
        self.kernel: kernel.KernelRelay | None = None

    def attach(self, side: RelayProtocol, transport: asyncio.Transport, early: bytes = b"") -> None:
        """Give ``side`` its transport (switching that transport's protocol to it).

        ``early`` is data already read from ``transport`` by a previous protocol (SOCKS leftovers).
        When the peer is already lost (it ended before this side came), ``transport`` is closed
        (reset, if the peer ended with an error): there is nothing left to relay to, and nothing
        else would ever close it.
        """
        side.transport = transport
        transport.set_protocol(side)
        if side.peer.lost:
            if self.error is not None:
                reset_transport(transport)
            else:
                transport.close()
            return
        if early:
            side.bytes_in += len(early)
            side.pending.append(early)
        if side.peer.transport is None:
            if side.pending:
                transport.pause_reading()
            return
        self.join()

    def join(self) -> None:
        """Both sides have transports: deliver what each held back and let both read, except a
        side whose peer cannot take more (the held-back bytes may be what filled it): that side
        reads again when the peer's ``resume_writing`` comes."""
        for one in (self.a, self.b):
            other = one.peer.transport
            if one.transport is None or other is None:
                return
            if one.pending:
                other.write(b"".join(one.pending))
                one.pending.clear()
            if one.eof:
                if other.can_write_eof():
                    other.write_eof()
            elif not one.peer.write_paused:
                one.transport.resume_reading()

    def to_kernel(self) -> None:
        """Relay in the kernel from now on, if both sides are plain TCP sockets and nothing is
        in flight in user space (else try again later, or never)."""
        a, b = self.a, self.b
        ta, tb = a.transport, b.transport
        self.switch_at = math.inf
        if ta is None or tb is None or a.eof or b.eof or a.pending or b.pending:
            return
        if ta.is_closing() or tb.is_closing() or not (kernel.eligible(ta) and kernel.eligible(tb)):
            return
        if ta.get_write_buffer_size() or tb.get_write_buffer_size():
            self.switch_at = max(a.bytes_in, b.bytes_in) + RETRY_AFTER
            return
        try:
            self.kernel = kernel.KernelRelay(ta, tb, self._count_a, self._count_b, self._kernel_ended)
        except OSError:  # no descriptor left to duplicate: stay in Python
            return

    def _count_a(self, n: int) -> None:
        self.a.bytes_in += n

    def _count_b(self, n: int) -> None:
        self.b.bytes_in += n

    def _kernel_ended(self, error: Exception | None) -> None:
        if error is None:
            self.close()
        else:  # a reset, or a local failure, on either socket: bytes were lost, both ways perhaps
            if self.error is None:
                self.error = error
            self.reset()

    def _stop_kernel(self) -> None:
        if self.kernel is not None:
            self.kernel.stop()

    @property
    def bytes_a_to_b(self) -> int:
        return self.a.bytes_in

    @property
    def bytes_b_to_a(self) -> int:
        return self.b.bytes_in

    def close(self) -> None:
        self._stop_kernel()
        for side in (self.a, self.b):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()

    def abort(self) -> None:
        self._stop_kernel()
        for side in (self.a, self.b):
            if side.transport is not None:
                side.transport.abort()

    def reset(self) -> None:
        """Abort both sides so that each peer sees a reset, not a FIN (:func:`reset_transport`)."""
        self._stop_kernel()
        for side in (self.a, self.b):
            if side.transport is not None:
                reset_transport(side.transport)

    def fail(self, exc: BaseException) -> None:
        """A side could not be connected (dial failed): close the other and finish."""
        if self.error is None and isinstance(exc, Exception):
            self.error = exc
        for side in (self.a, self.b):
            if side.transport is None and not side.lost:
                side.lost = True
                self._lost += 1
        self.abort()
        if self._lost == 2 and self._on_done is not None:
            self._on_done(self, self.error)

    def side_lost(self, side: RelayProtocol, exc: Exception | None) -> None:
        if side.lost:
            return
        side.lost = True
        self._lost += 1
        self._stop_kernel()
        if exc is not None and self.error is None:
            self.error = exc
        other = side.peer.transport
        if other is not None and not other.is_closing():
            if exc is not None:  # what the other side's peer got so far is not the whole stream
                reset_transport(other)
            else:
                other.close()
        if self._lost == 2 and self._on_done is not None:
            self._on_done(self, self.error)
