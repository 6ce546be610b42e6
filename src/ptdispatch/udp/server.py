"""Server side of the UDP modes: per transport connection, a UDP socket of its own to -target (Table 2).

Datagrams split out of the stream (2-byte length frames, or STUN and TURN ChannelData messages in
STUN mode) are sent to -target from a socket connected to it; what the target sends back is framed
and written onto the same transport connection; while the socket to the target has
``WRITE_BUFFER_LIMIT`` unsent (a link slower than the stream feeding it), datagrams for it are
dropped.  Bad framing closes that one session.  An ICMP "port unreachable" from the target
(``ConnectionRefusedError`` on the socket) is logged and the session kept: UDP promises nothing, the
target may come back, and the idle timeout ends a session that stays silent.  Sessions are also
closed after ``udpIdleTimeout`` seconds without a packet (default 120 s, twice the client's default,
so that normally the client, which can dial again, decides) and the oldest is evicted beyond
``udpMaxSessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Mapping
from typing import cast

from .. import metrics
from ..errors import RemoteProtocolError
from ..logs import EventLog
from ..net.addr import Address
from ..net.tracker import ConnectionTracker
from .framing import encode_frame, encode_stun, new_decoder, stun_mode_problem
from .options import UdpOptions
from .pool import ExpiryTimer, Session, SessionPool
from .writer import WRITE_BUFFER_LIMIT, BatchWriter

SERVER_IDLE_TIMEOUT = 120.0
RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for on each session's socket to the target (a limit, not an allocation)."""
PENDING_LIMIT = 64
"""Datagrams held while the session's UDP socket is being opened."""

ServerSession = Session["TargetSession", asyncio.Transport]


class UdpServerMethod:
    """Per transport connection: datagrams to -target from a socket of their own, replies back."""

    def __init__(
        self,
        name: str,
        target: Address | None,
        stun: bool,
        options: Mapping[str, object],
        log: EventLog,
        tracker: ConnectionTracker | None = None,
    ) -> None:
        if target is None:
            raise ValueError("the UDP modes need -target")
        self.name, self.target, self.stun, self.log = name, target, stun, log
        #: Counts open sessions for graceful shutdown (as the TCP relays are counted).
        self.tracker = tracker if tracker is not None else ConnectionTracker()
        self.options = UdpOptions.parse(options, name, default_idle=SERVER_IDLE_TIMEOUT)
        self.loop = asyncio.get_running_loop()
        self.pool: SessionPool[TargetSession, asyncio.Transport] = SessionPool(
            clock=self.loop.time, idle_timeout=self.options.idle_timeout, max_sessions=self.options.max_sessions
        )
        self._timer = ExpiryTimer(self.pool, self.loop.call_at, self._expired)
        self._resolved: tuple[int, tuple[object, ...]] | None = None

    async def resolve_target(self) -> tuple[int, tuple[object, ...]]:
        """The target's address family and socket address (resolved once; IP literals need no lookup)."""
        if self._resolved is None:
            host, port = self.target
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                family, _, _, _, sockaddr = infos[0]
                self._resolved = (int(family), tuple(sockaddr))
            else:
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                self._resolved = (int(family), (str(ip), port))
        return self._resolved

    def accepted(self) -> asyncio.Protocol:
        return TargetSession(self)

    def handshake_failed(self, exc: Exception) -> None:
        """``on_error`` of the listener: a bug in the transport at ERROR, the peer's fault at INFO."""
        metrics.handshake_failed(self.name, exc)
        self.log.failure(self.name, "handshake failed", exc)

    def add(self, owner: TargetSession, conn: asyncio.Transport) -> ServerSession:
        session, evicted = self.pool.add_connected(owner, conn)
        for old in evicted:
            self.log.debug(f"{self.name}: UDP session evicted (pool full)")
            old.key.shutdown(abort=True)
        self._timer.arm()
        return session

    def _expired(self, session: ServerSession) -> None:
        self.log.debug(f"{self.name}: UDP session closed: idle timeout")
        session.key.shutdown(abort=True)

    def close(self) -> None:
        self._timer.cancel()
        for session in self.pool.clear():
            session.key.shutdown()


class TargetSession(asyncio.Protocol):
    """One transport connection and its UDP socket to the target."""

    def __init__(self, method: UdpServerMethod) -> None:
        self.method = method
        self.decoder = new_decoder(stun=method.stun, classic=method.options.stun_classic)
        self.conn: asyncio.Transport | None = None
        self.writer: BatchWriter | None = None
        self.session: ServerSession | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.pending: list[bytes] = []
        self.opening: asyncio.Task[None] | None = None  # held: the loop keeps only weak references to tasks
        self.done = False
        #: Counters, for logs and tests.
        self.dropped = 0
        self.unreachable = 0
        self._slow_logged = False  # the socket to the target was too full once: said so (once a session)

    # --- the transport connection --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = cast(asyncio.Transport, transport)
        self.writer = BatchWriter(self.conn, self.method.loop)
        self.session = self.method.add(self, self.conn)
        metrics.udp_session(self.method.name, 1)
        self.method.tracker.add(self)
        self.opening = self.method.loop.create_task(self._open())

    def data_received(self, data: bytes) -> None:
        try:
            datagrams = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self._bad(exc)
            return
        if not datagrams or self.done:
            return
        assert self.session is not None  # set in connection_made, which comes first
        self.method.pool.touch(self.session)
        if self.udp is None:
            room = PENDING_LIMIT - len(self.pending)
            self.dropped += max(0, len(datagrams) - room)
            self.pending.extend(datagrams[: max(0, room)])
            return
        self._forward(datagrams)

    def eof_received(self) -> bool:
        try:
            self.decoder.close()
        except RemoteProtocolError as exc:
            self._bad(exc)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None and self.method.pool.closed(self.session):
            self.method.log.debug(
                f"{self.method.name}: UDP session closed ({self.method.log.reason(exc) if exc else 'by the client'})"
            )
        self.shutdown()

    def _bad(self, exc: RemoteProtocolError) -> None:
        self.method.log.info(f"{self.method.name}: UDP session closed: bad data from the client: {exc}")
        if self.session is not None:
            self.method.pool.closed(self.session)
        self.shutdown(abort=True)

    def abort(self) -> None:
        """Cut the session (graceful shutdown's time is up)."""
        self.shutdown(abort=True)

    def shutdown(self, *, abort: bool = False) -> None:
        """End the session: the UDP socket, and the transport connection.

        The pool's removals (eviction, idle timeout, write failure) abort: a graceful close waits,
        without bound, for the queued replies to drain, so a client that stays connected and never
        reads would keep the connection (untracked by then) and up to ``WRITE_BUFFER_LIMIT`` of
        stale datagrams for good.  An abort also cuts a connection that is already closing."""
        if not self.done and self.conn is not None:
            metrics.udp_session(self.method.name, -1)
        self.done = True
        self.method.tracker.discard(self)
        self.pending = []
        if self.udp is not None:
            self.udp.close()
            self.udp = None
        if self.conn is not None:
            if abort:
                self.conn.abort()
            elif not self.conn.is_closing():
                self.conn.close()

    # --- the UDP socket to the target ----------------------------------------------------------
    async def _open(self) -> None:
        sock: socket.socket | None = None
        try:
            family, sockaddr = await self.method.resolve_target()
            if self.done:
                return
            sock = _connected_socket(family, sockaddr)
            udp, _ = await self.method.loop.create_datagram_endpoint(lambda: TargetProtocol(self), sock=sock)
        # getaddrinfo() fails with UnicodeError, not OSError, for a name the IDNA codec refuses (a label
        # over 63 characters, an empty one): a failed resolution like any other.
        except (OSError, UnicodeError) as exc:
            if sock is not None:
                sock.close()
            why = self.method.log.reason(exc)
            self.method.log.warn(f"{self.method.name}: UDP session closed: cannot open a socket to the target: {why}")
            if self.session is not None:
                self.method.pool.closed(self.session)
            self.shutdown()
            return
        except asyncio.CancelledError:
            if sock is not None:
                sock.close()
            raise
        if self.done:
            udp.close()
            return
        self.udp, self.sock = udp, sock
        pending, self.pending = self.pending, []
        self._forward(pending)

    def _forward(self, datagrams: list[bytes]) -> None:
        """Send ``datagrams`` to the target; drop them while the socket has ``WRITE_BUFFER_LIMIT``
        unsent (the transport queues what the socket refuses, without bound)."""
        udp = self.udp
        if udp is None:
            return
        unsent = udp.get_write_buffer_size  # type: ignore[attr-defined]  # asyncio's and uvloop's have it
        for i, datagram in enumerate(datagrams):
            if unsent() > WRITE_BUFFER_LIMIT:  # nothing drains it before we return
                self._target_slow(len(datagrams) - i)
                return
            if datagram:
                udp.sendto(datagram)
            elif self.sock is not None:  # asyncio's sendto() skips empty datagrams
                try:
                    self.sock.send(b"")
                except BlockingIOError:
                    self._target_slow(1)
                except OSError as exc:
                    self.target_error(exc)

    def _target_slow(self, count: int) -> None:
        """``count`` datagrams to the target dropped: its socket is not keeping up (one line per session)."""
        self.dropped += count
        if not self._slow_logged:
            self._slow_logged = True
            self.method.log.info(
                f"{self.method.name}: UDP session: the socket to the target is not keeping up;"
                " dropping datagrams (logged once per session)"
            )

    def reply(self, datagram: bytes) -> None:
        """A datagram from the target: frame it onto the transport connection."""
        writer, session, method = self.writer, self.session, self.method
        if self.done or writer is None or session is None:
            self.dropped += 1  # Table 2: no matching connection, packet dropped
            return
        if method.stun:
            problem = stun_mode_problem(datagram, classic=method.options.stun_classic)
            if problem is not None:
                self.dropped += 1
                method.log.debug(
                    f"{method.name}: dropped a datagram from the target (neither STUN nor ChannelData): {problem}"
                )
                return
        # A TURN server sends ChannelData unpadded over UDP; on the stream it is padded to 4.
        if not writer.add(encode_stun(datagram) if method.stun else encode_frame(datagram)):
            if method.pool.write_failed(session):
                method.log.debug(f"{method.name}: UDP session closed: write failure")
            self.dropped += 1
            self.shutdown(abort=True)
            return
        method.pool.touch(session)

    def target_error(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.unreachable += 1
            if self.unreachable == 1 or self.unreachable % 1000 == 0:
                self.method.log.debug(
                    f"{self.method.name}: target port unreachable ({self.unreachable} times); session kept"
                )
            return
        self.method.log.debug(f"{self.method.name}: UDP send to the target failed: {self.method.log.reason(exc)}")


def _connected_socket(family: int, sockaddr: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # room for replies while the loop is busy elsewhere
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.connect(sockaddr)  # UDP: no packet is sent; replies from elsewhere are filtered out
    except BaseException:
        sock.close()
        raise
    return sock


class TargetProtocol(asyncio.DatagramProtocol):
    """The UDP socket connected to -target."""

    def __init__(self, owner: TargetSession) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.owner.reply(data)

    def error_received(self, exc: Exception) -> None:
        self.owner.target_error(exc)
