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

A connection the relay is closing (both directions done, or a side gone) while it still holds bytes
for a peer that reads none of them is reset after :data:`DRAIN_TIMEOUT` (:meth:`Splice.watch_drain`):
a transport's close waits for its write buffer, which a peer with a closed window never drains.  A
half-closed connection is not closing: its open direction may pause for as long as its reader likes,
as on any open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import socket
import struct
import termios
from collections.abc import Callable

from ..errors import DrainTimeout
from . import kernel

RETRY_AFTER = 64 * 1024
"""When a switch to the kernel finds a write buffer not empty, the bytes to relay before trying again."""
DRAIN_TIMEOUT = 60.0
"""Seconds a closing connection may go without progress while the relay holds bytes for a peer,
before it is reset (:meth:`Splice.watch_drain`).  A closing connection is one whose sides the relay
has closed (both directions done, a side gone, or an EOF toward a side that cannot half-close), not
one with a direction still open after a half-close: that direction may pause for as long as its
reader likes, as on a connection that never half-closed (bounding it would protect nothing: a peer
holds the same resources by not half-closing).  Progress is any byte the peers take from it (its
write buffers or its sockets' send queues shrink) or any byte relayed, either way.  Without a bound a
peer that stops reading (a zero window) and keeps its socket holds the descriptors, the buffered
bytes and the connection's tracking entry for ever: one descriptor of the attacker's ties up two of
ours and up to a write buffer's and two socket buffers' worth of memory.  A minute is nginx's
``send_timeout`` and Linux's ``tcp_fin_timeout``, and an order above any pause a live peer makes
(a meek client polls within 5 s); a stall is cut between one and two deadlines after the last
progress."""
_SWITCH_AT: float = kernel.SWITCH_AFTER if kernel.available() else math.inf
_LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger: on, 0 s
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ: a TCP socket's bytes not yet acknowledged


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


def _send_queue(transport: asyncio.Transport) -> int:
    """The bytes ``transport``'s socket still has to send (0 when that cannot be known): the bytes
    a peer reads come off here before they come off the write buffer."""
    sock = transport.get_extra_info("socket")
    if sock is None or _OUTQ is None:
        return 0
    try:
        value: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):  # not a TCP socket, or closed
        return 0
    return value


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

    drain_timeout = DRAIN_TIMEOUT
    """:data:`DRAIN_TIMEOUT`, for this splice (tests set a shorter one)."""

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
        self._drain: asyncio.TimerHandle | None = None  # the drain deadline, while bytes are held
        self._drain_mark = (0, 0)  # (bytes relayed, bytes still to send) when it was armed

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
                self.watch_drain()
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
        reads again when the peer's ``resume_writing`` comes.  A held EOF is passed on after the
        bytes, as :meth:`RelayProtocol.eof_received` would: a half-close, or the end of both
        directions (the other's EOF came too, or its transport cannot half-close) that closes both
        sides once their bytes are written."""
        ended = False
        for one in (self.a, self.b):
            other = one.peer.transport
            if one.transport is None or other is None:
                return
            if one.pending:
                other.write(b"".join(one.pending))
                one.pending.clear()
            if one.eof:
                if one.peer.eof or not other.can_write_eof():
                    ended = True
                else:
                    other.write_eof()
            elif not one.peer.write_paused:
                one.transport.resume_reading()
        if ended:
            self.close()

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
        self.watch_drain()

    # --- the drain deadline -------------------------------------------------------------------
    def watch_drain(self) -> None:
        """The relay is closing the connection (both directions done, a side gone): if it holds
        bytes for a peer (a transport's write buffer), reset the connection once
        :attr:`drain_timeout` seconds go by without progress (see :data:`DRAIN_TIMEOUT`).  Arms
        nothing when nothing is held, the usual case (a close costs two ``get_write_buffer_size``
        calls); armed, one timer for the connection, checked once per deadline, and stopped when
        the buffers are empty or both sides are gone."""
        if self._drain is None and self._lost < 2 and self._held():
            self._drain_mark = self._progress()
            self._drain = asyncio.get_running_loop().call_later(self.drain_timeout, self._drain_check)

    def _held(self) -> int:
        """Bytes the relay holds for the peers: the write buffers."""
        held = 0
        for side in (self.a, self.b):
            if side.transport is not None:
                held += side.transport.get_write_buffer_size()
        return held

    def _progress(self) -> tuple[int, int]:
        """(bytes relayed, bytes still to send to the peers, counting the sockets' send queues):
        progress is a change of the first or a fall of the second."""
        pending = self._held()
        for side in (self.a, self.b):
            if side.transport is not None:
                pending += _send_queue(side.transport)
        return self.a.bytes_in + self.b.bytes_in, pending

    def _drain_check(self) -> None:
        self._drain = None
        if self._lost == 2 or not self._held():  # drained (a later stall arms it again)
            return
        moved, pending = self._progress()
        before_moved, before_pending = self._drain_mark
        if moved != before_moved or pending < before_pending:
            self._drain_mark = (moved, pending)
            self._drain = asyncio.get_running_loop().call_later(self.drain_timeout, self._drain_check)
            return
        if self.error is None:
            self.error = DrainTimeout(f"{pending} bytes to send went unread for {self.drain_timeout:g} s while closing")
        self.reset()

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
        """A side could not be connected (dial failed, or the other side left during the dial):
        reset the other, as any error resets (its peer must not take the end for a clean one:
        a transparent-TCP application learns that its connection failed), and finish."""
        if self.error is None and isinstance(exc, Exception):
            self.error = exc
        done_before = self._lost == 2  # both sides lost already (a dial task cancelled late)
        for side in (self.a, self.b):
            if side.transport is None and not side.lost:
                side.lost = True
                self._lost += 1
        self.reset()
        if self._lost == 2 and not done_before:
            self._finish()

    def _finish(self) -> None:
        """Both sides are lost: the splice's end, reported once (its close line, its metrics)."""
        self._stop_drain()
        if self._on_done is not None:
            self._on_done(self, self.error)

    def _stop_drain(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None

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
                self.watch_drain()
        if self._lost == 2:
            self._finish()
