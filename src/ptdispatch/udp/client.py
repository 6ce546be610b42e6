"""Client side of the UDP modes: a UDP socket feeding a pool of transport connections (Table 1).

Each source address gets its own transport connection to ``serverAddress``.  The first datagram
from a new source creates a Waiting entry and starts the dial; datagrams that arrive while it is
Waiting are dropped, as Table 1 says (or held, up to ``udpQueueWhileWaiting`` of them).  Once
Connected, datagrams are framed (transparent-UDP) or passed as they are (STUN) onto the
connection, and what the server sends back is split into datagrams and sent to that source (or
dropped while the UDP socket has ``WRITE_BUFFER_LIMIT`` unsent).  STUN mode takes STUN messages and
TURN ChannelData (see :mod:`.framing`) and drops every other datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import cast

from ..errors import RemoteProtocolError
from ..frontends.dialer import ClientMethod, Route
from ..logs import EventLog
from ..net.addr import Address, format_hostport
from .framing import encode_frame, encode_stun, new_decoder, stun_mode_problem
from .options import UdpOptions
from .pool import ExpiryTimer, Outcome, Session, SessionPool
from .writer import WRITE_BUFFER_LIMIT, BatchWriter

SourceAddr = tuple[object, ...]
ClientSession = Session[SourceAddr, asyncio.Transport]

RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for on the UDP socket (the kernel may cap it)."""
DROP_LOG_INTERVAL = 60.0
"""Seconds between two lines saying that datagrams for the applications were dropped (with a count)."""


def describe(addr: SourceAddr, log: EventLog) -> str:
    if not log.show_addresses:
        return "[scrubbed]"
    return format_hostport(str(addr[0]), int(cast(int, addr[1])))


class UdpListener(asyncio.DatagramProtocol):
    """A bound UDP socket feeding a pool of transport connections."""

    def __init__(self, method: ClientMethod, route: Route, options: UdpOptions, *, stun: bool) -> None:
        self.method, self.route, self.options, self.stun = method, route, options, stun
        self.log = method.log
        self.loop = asyncio.get_running_loop()
        self.pool: SessionPool[SourceAddr, asyncio.Transport] = SessionPool(
            clock=self.loop.time,
            idle_timeout=options.idle_timeout,
            max_sessions=options.max_sessions,
            queue_limit=options.queue_while_waiting,
        )
        self.transport: asyncio.DatagramTransport | None = None
        #: The socket itself, for what the transport cannot send (empty datagrams).
        self.sock: socket.socket | None = None
        self.address = Address("", 0)
        self._timer = ExpiryTimer(self.pool, self.loop.call_at, self._expired)
        #: Connected sessions are counted here for graceful shutdown (as the TCP relays are).
        self.tracker = method.tracker
        self._draining = False
        #: Counters, for logs and tests: datagrams dropped in STUN mode (neither STUN nor ChannelData).
        self.not_stun = 0
        #: Datagrams for the applications dropped because the UDP socket was not keeping up.
        self.dropped = 0
        self._drop_logged_at = -DROP_LOG_INTERVAL

    # --- the UDP socket ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: SourceAddr) -> None:
        if self._draining and addr not in self.pool:
            return  # shutting down: no new sessions
        if self.stun:
            problem = stun_mode_problem(data, classic=self.options.stun_classic)
            if problem is not None:
                self.not_stun += 1
                self.log.debug(
                    f"{self.method.name}: dropped a datagram from {self._who(addr)} (neither STUN nor ChannelData): "
                    f"{problem}"
                )
                return
        received = self.pool.packet_received(addr, data)
        outcome = received.outcome
        if outcome is Outcome.SEND:
            self.send(received.session, data)
        elif outcome is Outcome.NEW:
            for old in received.evicted:
                self.log.debug(f"{self.method.name}: UDP session {self._who(old.key)} evicted (pool full)")
                self._discard(old)
            self._dial(received.session)
            self._timer.arm()

    def error_received(self, exc: Exception) -> None:
        self.log.debug(f"{self.method.name}: UDP socket error: {self.log.reason(exc)}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # --- sessions ------------------------------------------------------------------------------
    def send(self, session: ClientSession, datagram: bytes) -> None:
        """Put one datagram on a Connected session's transport connection."""
        writer = session.handle
        if not isinstance(writer, BatchWriter):
            return
        frame = encode_stun(datagram) if self.stun else encode_frame(datagram)
        if not writer.add(frame) and self.pool.write_failed(session):
            self.log.debug(f"{self.method.name}: UDP session {self._who(session.key)}: write failure")
            self._discard(session)

    def reply(self, session: ClientSession, datagrams: list[bytes]) -> None:
        """Datagrams from the server: back to the session's source address."""
        udp = self.transport
        if udp is None or session.removed is not None:
            return
        self.pool.touch(session)
        addr = session.key
        unsent = udp.get_write_buffer_size  # type: ignore[attr-defined]  # asyncio's and uvloop's have it
        for i, datagram in enumerate(datagrams):
            if unsent() > WRITE_BUFFER_LIMIT:  # the transport's queue has no bound
                self._dropped(len(datagrams) - i)
                return
            if datagram:
                udp.sendto(datagram, addr)
            elif self.sock is not None:  # asyncio's sendto() skips empty datagrams
                try:
                    self.sock.sendto(b"", addr)
                except BlockingIOError:
                    self._dropped(1)
                except OSError:
                    pass

    def _dropped(self, count: int) -> None:
        """``count`` datagrams for an application dropped: the socket is not keeping up (a line a minute at most)."""
        self.dropped += count
        now = self.loop.time()
        if now - self._drop_logged_at >= DROP_LOG_INTERVAL:
            self._drop_logged_at = now
            self.log.info(
                f"{self.method.name}: the UDP socket to the applications is not keeping up;"
                f" dropping datagrams ({self.dropped} so far)"
            )

    def _dial(self, session: ClientSession) -> None:
        self.log.debug(f"{self.method.name}: UDP session {self._who(session.key)}: connecting")
        session.handle = self.loop.create_task(self._connect(session))

    async def _connect(self, session: ClientSession) -> None:
        route, method = self.route, self.method
        try:
            await method.dial(route, lambda: Upstream(self, session))
        except Exception as exc:  # every dial failure (OSError, handshake errors, timeouts) ends the entry
            if self.pool.failed(session):
                self.log.failure(f"{method.name}: UDP session {self._who(session.key)}", "connection failed", exc)

    def _discard(self, session: ClientSession) -> None:
        """The pool removed ``session``: cut its connection or stop its dial.

        An abort, not a graceful close: that waits, without bound, for the queued frames to drain,
        so a server that stays connected and never reads would keep the connection (still tracked:
        graceful shutdown then waits out its whole grace period) and up to ``WRITE_BUFFER_LIMIT`` of
        stale datagrams for good."""
        if session.conn is not None:
            session.conn.abort()
        task = session.handle
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()

    def closed(self, session: ClientSession, why: str) -> None:
        if self.pool.closed(session):
            self.log.debug(f"{self.method.name}: UDP session {self._who(session.key)}: {why}")
        self._finish_if_idle()

    # --- idle timeout --------------------------------------------------------------------------
    def _expired(self, session: ClientSession) -> None:
        self.log.debug(f"{self.method.name}: UDP session {self._who(session.key)}: idle timeout")
        self._discard(session)
        self._finish_if_idle()

    def _who(self, addr: SourceAddr) -> str:
        return describe(addr, self.log)

    def close(self) -> None:
        """Shutdown begins: take no new sources and stop the dials under way; connected sessions
        run on until they end or the grace period cuts them (through the tracker), then the
        socket closes."""
        if self._draining:
            return
        self._draining = True
        for session in self.pool.sessions():
            if session.conn is None:  # still Waiting
                self.pool.remove(session.key, "shutdown")
                self._discard(session)
        self._finish_if_idle()

    def abort(self) -> None:
        """End every session and close the socket now."""
        self._draining = True
        self._timer.cancel()
        for session in self.pool.clear():
            self._discard(session)
        if self.transport is not None:
            self.transport.close()

    def _finish_if_idle(self) -> None:
        if self._draining and not len(self.pool):
            self.abort()


class Upstream(asyncio.Protocol):
    """The plaintext side of one session's transport connection."""

    def __init__(self, listener: UdpListener, session: ClientSession) -> None:
        self.listener = listener
        self.session = session
        self.decoder = new_decoder(stun=listener.stun, classic=listener.options.stun_classic)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = cast(asyncio.Transport, transport)
        self.transport = conn
        held = self.listener.pool.connected(self.session, conn)
        if held is None:  # expired or evicted while Waiting
            conn.close()
            return
        self.session.handle = BatchWriter(conn, self.listener.loop)
        self.listener.tracker.add(self)
        for datagram in held:
            self.listener.send(self.session, datagram)

    def data_received(self, data: bytes) -> None:
        try:
            datagrams = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self._bad(exc)
            return
        if datagrams:
            self.listener.reply(self.session, datagrams)

    def eof_received(self) -> bool:
        try:
            self.decoder.close()
        except RemoteProtocolError as exc:
            self._bad(exc)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.tracker.discard(self)
        self.listener.closed(
            self.session, f"connection closed ({self.listener.log.reason(exc)})" if exc else "connection closed"
        )

    def abort(self) -> None:
        """Cut the session (graceful shutdown's time is up)."""
        if self.transport is not None:
            self.transport.abort()

    def _bad(self, exc: RemoteProtocolError) -> None:
        self.listener.log.info(f"{self.listener.method.name}: UDP session closed: bad data from the server: {exc}")
        self.listener.closed(self.session, "bad data")
        if self.transport is not None:
            self.transport.abort()


def _bind_socket(listen: Address, reuse_port: bool = False) -> socket.socket:
    infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if reuse_port:  # -workers: the kernel spreads senders (by address) over the workers' sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_udp_client(
    method: ClientMethod, listen: Address, *, stun: bool, reuse_port: bool = False
) -> UdpListener:
    """Listen for datagrams on ``listen`` (raises ``OptionsError`` for bad options, ``OSError``)."""
    options = UdpOptions.parse(method.options, method.name)
    route = method.route({}, None)
    loop = asyncio.get_running_loop()
    sock = _bind_socket(listen, reuse_port)
    try:
        _, listener = await loop.create_datagram_endpoint(
            lambda: UdpListener(method, route, options, stun=stun), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    listener.sock = sock
    name = sock.getsockname()
    listener.address = Address(name[0], name[1])
    return listener
