"""The UDP modes in one process on loopback: client pool, server sessions, and the bad-input cases."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from ptdispatch import api
from ptdispatch.config import LogLevel
from ptdispatch.errors import OptionsError
from ptdispatch.frontends.dialer import ClientMethod
from ptdispatch.logs import EventLog
from ptdispatch.net.addr import Address
from ptdispatch.net.tracker import ConnectionTracker, Tracked
from ptdispatch.transports import registry
from ptdispatch.transports.base import ServerContext
from ptdispatch.udp.client import SourceAddr, UdpListener, start_udp_client
from ptdispatch.udp.framing import encode_frame
from ptdispatch.udp.pool import Received, State
from ptdispatch.udp.server import TargetSession, UdpServerMethod
from ptdispatch.udp.writer import WRITE_BUFFER_LIMIT

BINDING = bytes.fromhex("000100002112a4420102030405060708090a0b0c")
CHANNEL_DATA = bytes.fromhex("4000000568656c6c6f")  # TURN ChannelData: channel 0x4000, "hello", unpadded


class Logs:
    """A stand-in for the Reporter that keeps LOG messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def log(self, level: LogLevel, message: str) -> None:
        self.messages.append(message)

    def enabled(self, level: LogLevel) -> bool:
        return True

    def has(self, text: str) -> bool:
        return any(text in m for m in self.messages)


class Peer(asyncio.DatagramProtocol):
    """A UDP socket whose received datagrams land in a queue."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.errors: list[Exception] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    async def recv(self, timeout: float = 2.0) -> bytes:
        data, _ = await asyncio.wait_for(self.inbox.get(), timeout)
        return data


def sendto(transport: asyncio.DatagramTransport, data: bytes, addr: tuple[object, ...]) -> None:
    if data:
        transport.sendto(data, addr)
        return
    # asyncio's sendto() skips empty datagrams: send one through a duplicate of the socket.
    with socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno())) as raw:
        raw.sendto(b"", addr)


class Echo(Peer):
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        sendto(self.transport, data, addr)


async def udp_peer(cls: type[Peer] = Peer, port: int = 0) -> tuple[Peer, int]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", port))
    return peer, transport.get_extra_info("sockname")[1]


@dataclass
class Rig:
    client: UdpListener
    server: UdpServerMethod
    server_port: int
    logs: Logs
    peers: list[Peer] = field(default_factory=list)

    async def source(self) -> Peer:
        peer, _ = await udp_peer()
        self.peers.append(peer)
        return peer

    def send(self, peer: Peer, data: bytes) -> None:
        assert peer.transport is not None
        sendto(peer.transport, data, tuple(self.client.address))

    async def exchange(self, peer: Peer, data: bytes, *, attempts: int = 50) -> bytes:
        """Send until a reply comes (the first datagrams are dropped while Waiting)."""
        for _ in range(attempts):
            self.send(peer, data)
            with contextlib.suppress(TimeoutError):
                return await peer.recv(0.1)
        raise AssertionError("no reply")


@contextlib.asynccontextmanager
async def rig(
    *,
    stun: bool = False,
    target: int | None = None,
    client_options: Mapping[str, object] | None = None,
    server_options: Mapping[str, object] | None = None,
    transport: str = "plain",
) -> AsyncIterator[Rig]:
    logs = Logs()
    log = EventLog(logs)  # type: ignore[arg-type]
    echo: Peer | None = None
    if target is None:
        echo, target = await udp_peer(Echo)
    spec = registry.lookup(transport)
    assert spec is not None
    server_transport = spec.server(dict(server_options or {}), ServerContext(state_dir=Path()))
    method = UdpServerMethod(transport, Address("127.0.0.1", target), stun, dict(server_options or {}), log)
    listener = await api.listen(server_transport, "127.0.0.1", 0, method.accepted, on_error=method.handshake_failed)
    port = listener.sockets[0].getsockname()[1]
    options = {"serverAddress": f"127.0.0.1:{port}", **(client_options or {})}
    client_method = ClientMethod(transport, spec, options, None, log, ConnectionTracker())
    client_method.check_options(per_connection_allowed=False)
    client = await start_udp_client(client_method, Address("127.0.0.1", 0), stun=stun)
    the_rig = Rig(client, method, port, logs)
    try:
        yield the_rig
    finally:
        client.abort()
        listener.close()
        method.close()
        for peer in [*the_rig.peers, *([echo] if echo else [])]:
            if peer.transport is not None:
                peer.transport.close()
        await asyncio.sleep(0.05)  # let the closed transports finish
        # Collect now what a cancelled dial may leave behind (see the report on open_socket), so that its
        # finalizer does not run inside a later import, where CPython 3.11.7 can fail with "AST constructor
        # recursion depth mismatch".
        gc.collect()


async def wait_for(predicate: object, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_replies_go_back_to_the_right_source() -> None:
    async with rig() as r:
        a, b = await r.source(), await r.source()
        assert await r.exchange(a, b"from a") == b"from a"
        assert await r.exchange(b, b"from b") == b"from b"
        for i in range(20):
            r.send(a, b"a%d" % i)
            r.send(b, b"b%d" % i)
        got_a = [await a.recv() for _ in range(20)]
        got_b = [await b.recv() for _ in range(20)]
        assert got_a == [b"a%d" % i for i in range(20)]
        assert got_b == [b"b%d" % i for i in range(20)]
        assert len(r.client.pool) == 2 and len(r.server.pool) == 2


async def test_largest_and_empty_datagrams_arrive_intact() -> None:
    async with rig() as r:
        peer = await r.source()
        await r.exchange(peer, b"hello")
        for size in (0, 1, 1024, 1025, 65_507):
            payload = bytes(i % 251 for i in range(size))
            r.send(peer, payload)
            assert await peer.recv() == payload, size


async def test_first_packets_dropped_while_waiting_by_default() -> None:
    async with rig() as r:
        peer = await r.source()
        r.send(peer, b"lost")
        with pytest.raises(TimeoutError):
            await peer.recv(0.3)
        assert r.client.pool.dropped_waiting == 1


async def test_queue_while_waiting_option_delivers_the_first_packets() -> None:
    async with rig(client_options={"udpQueueWhileWaiting": 4}) as r:
        peer = await r.source()
        for i in range(6):
            r.send(peer, b"%d" % i)
        assert [await peer.recv() for _ in range(4)] == [b"0", b"1", b"2", b"3"]
        # 4 and 5 are dropped if they came while still Waiting (queue full), sent if after Connected.
        extra: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            while True:
                extra.append(await peer.recv(0.2))
        assert extra == [b"%d" % i for i in range(4, 4 + len(extra))]
        assert r.client.pool.dropped_waiting == 2 - len(extra)


async def test_idle_timeout_removes_sessions_both_sides() -> None:
    async with rig(client_options={"udpIdleTimeout": 0.3}, server_options={"udpIdleTimeout": 5}) as r:
        peer = await r.source()
        await r.exchange(peer, b"x")
        assert len(r.client.pool) == 1
        await wait_for(lambda: len(r.client.pool) == 0)
        # The client closed the transport connection; the server's session follows.
        await wait_for(lambda: len(r.server.pool) == 0)
        assert await r.exchange(peer, b"again") == b"again"


async def test_server_closing_mid_stream_removes_only_that_session() -> None:
    async with rig() as r:
        a, b = await r.source(), await r.source()
        await r.exchange(a, b"a")
        await r.exchange(b, b"b")
        victim = next(s for s in r.server.pool.sessions() if True)
        victim.key.shutdown(abort=True)
        await wait_for(lambda: len(r.client.pool) == 1)
        survivor = r.client.pool.sessions()[0]
        peer = a if survivor.key[1] == a.transport.get_extra_info("sockname")[1] else b  # type: ignore[union-attr]
        r.send(peer, b"still here")
        assert await peer.recv() == b"still here"
        other = b if peer is a else a
        assert await r.exchange(other, b"reconnected") == b"reconnected"


async def raw_stream(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize(
    ("stun", "stream", "log"),
    [
        (False, encode_frame(b"ok") + b"\x00\x10short", "inside a frame"),  # truncated frame at EOF
        (False, encode_frame(b"ok") + b"\xff\xff" + bytes(100), "inside a frame"),  # length > rest
        (False, b"\x00", "inside a frame"),
        (True, BINDING + b"\x80GET / HTTP/1.1\r\n\r\n", "not a STUN stream"),  # neither STUN nor ChannelData
        # "GE" reads as channel 0x4745 and "T " as its length, 21,536 bytes: cut when the stream ends short.
        (True, BINDING + b"GET / HTTP/1.1\r\n\r\n", "inside a ChannelData message"),
        (True, BINDING + BINDING[:10], "inside a STUN message"),
        (True, BINDING + b"\x80\x00\x00\x00", "not a STUN stream"),  # channel 0x8000: out of range
        (True, BINDING + CHANNEL_DATA, "inside a ChannelData message"),  # unpadded on a stream: truncated
    ],
)
async def test_bad_stream_closes_that_session_only(stun: bool, stream: bytes, log: str) -> None:
    async with rig(stun=stun) as r:
        good = await r.source()
        hello = BINDING if stun else b"hello"
        assert await r.exchange(good, hello) == hello
        reader, writer = await raw_stream(r.server_port, stream)
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 3)  # the server closes the bad session
        writer.close()
        assert received in (b"", encode_frame(b"ok"), BINDING)  # replies to what was good, then the end
        await wait_for(lambda: r.logs.has(log))
        await wait_for(lambda: len(r.server.pool) == 1)
        r.send(good, hello)
        assert await good.recv() == hello


async def test_garbage_without_eof_in_stun_mode_closes_at_once() -> None:
    async with rig(stun=True) as r:
        reader, writer = await raw_stream(r.server_port, b"\xff" * 40)
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        assert r.logs.has("not a STUN stream")


async def test_stun_mode_client_drops_non_stun_datagrams() -> None:
    async with rig(stun=True) as r:
        peer = await r.source()
        assert await r.exchange(peer, BINDING) == BINDING
        r.send(peer, b"not stun at all, just text....")
        r.send(peer, BINDING)
        assert await peer.recv() == BINDING
        assert r.client.not_stun == 1
        assert r.logs.has("neither STUN nor ChannelData")


async def test_stun_classic_option() -> None:
    classic = bytes.fromhex("00010008019b4d7d64e3a116f459985e3e0716580003000400000000")
    async with rig(stun=True, client_options={"udpStunClassic": True}, server_options={"udpStunClassic": 1}) as r:
        peer = await r.source()
        assert await r.exchange(peer, classic) == classic


async def test_stun_mode_server_drops_non_stun_replies() -> None:
    class Chatty(Peer):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            assert self.transport is not None
            self.transport.sendto(b"junk reply", addr)
            self.transport.sendto(data, addr)

    chatty, port = await udp_peer(Chatty)
    async with rig(stun=True, target=port) as r:
        r.peers.append(chatty)
        peer = await r.source()
        assert await r.exchange(peer, BINDING) == BINDING
        r.send(peer, BINDING)
        assert await peer.recv() == BINDING
        assert r.logs.has("from the target (neither STUN nor ChannelData)")


async def past_binding(peer: Peer) -> bytes:
    """The next datagram that is not a (late, retransmitted) BINDING."""
    while (data := await peer.recv()) == BINDING:
        pass
    return data


class PaddingTurn(Peer):
    """A target that answers each datagram with itself, ChannelData padded to 4 as some TURN servers send it."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        super().datagram_received(data, addr)
        assert self.transport is not None
        self.transport.sendto(data + bytes(-len(data) % 4), addr)


async def test_stun_mode_carries_channel_data_both_ways() -> None:
    """TURN clients switch to ChannelData once ChannelBind succeeds: it must flow as STUN does.

    The application and the target each get ChannelData without its padding, as they would from a
    TURN server over UDP; on the stream it is padded to 4, as RFC 5766 section 11.5 requires."""
    turn, port = await udp_peer(PaddingTurn)
    async with rig(stun=True, target=port) as r:
        r.peers.append(turn)
        peer = await r.source()
        assert await r.exchange(peer, BINDING) == BINDING
        channel_data = [
            CHANNEL_DATA,
            CHANNEL_DATA + bytes(3),  # padded by the application: the TURN server gets it unpadded
            bytes.fromhex("7fff0008") + b"8 bytes!",
            bytes.fromhex("40000000"),
            b"\x40\x01\x04\xb0" + os.urandom(1200),  # a typical media packet
        ]
        for message in channel_data:
            r.send(peer, message)
            unpadded = message[: 4 + int.from_bytes(message[2:4], "big")]
            assert await past_binding(turn) == unpadded
            assert await past_binding(peer) == unpadded
        r.send(peer, BINDING)  # STUN still passes between them
        assert await peer.recv() == BINDING
        assert r.client.not_stun == 0 and all(s.key.dropped == 0 for s in r.server.pool.sessions())


async def test_stun_mode_drops_malformed_channel_data() -> None:
    class Bad(Peer):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            assert self.transport is not None
            self.transport.sendto(CHANNEL_DATA[:-1], addr)  # truncated: length 5, 4 bytes of data
            self.transport.sendto(b"\x80\x00\x00\x01x", addr)  # channel 0x8000
            self.transport.sendto(data, addr)

    bad, port = await udp_peer(Bad)
    async with rig(stun=True, target=port) as r:
        r.peers.append(bad)
        peer = await r.source()
        assert await r.exchange(peer, BINDING) == BINDING
        for wrong in (CHANNEL_DATA[:-1], CHANNEL_DATA + bytes(4), b"\x40\x00\x00", b"\xbf\xff\x00\x00"):
            r.send(peer, wrong)
        r.send(peer, CHANNEL_DATA)
        assert await past_binding(peer) == CHANNEL_DATA
        assert r.client.not_stun == 4
        await wait_for(lambda: sum(s.key.dropped for s in r.server.pool.sessions()) >= 4)
        assert r.logs.has("ChannelData length 5 does not match a datagram of 8 bytes")
        assert len(r.server.pool) == 1 and len(r.client.pool) == 1  # nothing was cut


async def test_unreachable_target_keeps_the_session() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: the kernel answers with ICMP port unreachable
    async with rig(target=port, client_options={"udpQueueWhileWaiting": 1}) as r:
        peer = await r.source()
        for _ in range(20):
            r.send(peer, b"anyone?")
            await asyncio.sleep(0.02)
        await wait_for(lambda: any(s.key.unreachable for s in r.server.pool.sessions()))
        assert len(r.server.pool) == 1 and len(r.client.pool) == 1
        echo, _ = await udp_peer(Echo, port)  # the target comes back on the same port
        try:
            assert await r.exchange(peer, b"back") == b"back"
        finally:
            assert echo.transport is not None
            echo.transport.close()


async def test_write_failure_removes_the_session() -> None:
    async with rig() as r:
        peer = await r.source()
        await r.exchange(peer, b"x")
        session = r.client.pool.sessions()[0]
        assert session.state is State.CONNECTED and session.conn is not None
        session.conn.close()  # the connection is going away; the next write fails
        r.client.send(session, b"dropped")
        assert session.removed == "write failure"


async def test_connection_failure_removes_the_waiting_entry() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    async with rig() as r:
        r.client.route = type(r.client.route)(r.client.route.client, Address("127.0.0.1", port), None)
        peer = await r.source()
        r.send(peer, b"x")
        await wait_for(lambda: r.logs.has("connection failed"))
        assert len(r.client.pool) == 0


async def test_flood_of_source_ports_keeps_the_pool_bounded() -> None:
    limit = 64
    async with rig(client_options={"udpMaxSessions": limit}, server_options={"udpMaxSessions": limit}) as r:
        biggest = [0, 0]
        original = r.client.pool.packet_received

        def watched(key: SourceAddr, datagram: bytes) -> Received[SourceAddr, asyncio.Transport]:
            result = original(key, datagram)
            biggest[0] = max(biggest[0], len(r.client.pool))
            biggest[1] = max(biggest[1], len(r.server.pool))
            return result

        r.client.pool.packet_received = watched  # type: ignore[method-assign]
        target = tuple(r.client.address)
        sockets = []
        for _ in range(10_000):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.sendto(b"flood", target)
            sockets.append(s)
            if len(sockets) == 200:
                for old in sockets:
                    old.close()
                sockets = []
                await asyncio.sleep(0.005)
        for old in sockets:
            old.close()
        await wait_for(lambda: r.client.pool.evictions >= 10_000 - limit - 200, timeout=20)
        await asyncio.sleep(0.3)
        assert biggest[0] <= limit and len(r.client.pool) <= limit
        assert biggest[1] <= limit and len(r.server.pool) <= limit
        # Still serving afterwards.
        peer = await r.source()
        assert await r.exchange(peer, b"after the flood") == b"after the flood"


@pytest.mark.parametrize(
    "options",
    [{"udpIdleTimeout": "soon"}, {"udpIdleTimeout": 0}, {"udpMaxSessions": 0}, {"udpQueueWhileWaiting": 1000},
     {"udpStunClassic": "maybe"}],
)  # fmt: skip
async def test_bad_options_name_the_key(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match=next(iter(options))):
        UdpServerMethod("plain", Address("127.0.0.1", 9), False, options, EventLog(Logs()))  # type: ignore[arg-type]


class Backlogged:
    """A UDP socket's transport whose socket refuses datagrams (EAGAIN: a link slower than the stream
    feeding it) while ``full``: its queue reports more than ``WRITE_BUFFER_LIMIT``.  Counts what is
    sent through it; the rest goes to the real transport."""

    def __init__(self, inner: asyncio.DatagramTransport) -> None:
        self.inner: Any = inner  # its get_write_buffer_size() is not in DatagramTransport's stubs
        self.full = True
        self.sent = 0

    def get_write_buffer_size(self) -> int:
        return WRITE_BUFFER_LIMIT + 1 if self.full else self.inner.get_write_buffer_size()

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1
        self.inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_server_drops_datagrams_while_its_socket_to_the_target_is_backlogged() -> None:
    """The event loop's transport queues what the socket refuses without bound: past the limit the
    datagrams are dropped, counted, and logged once for the session, not queued."""
    async with rig() as r:
        peer = await r.source()
        assert await r.exchange(peer, b"before") == b"before"
        [session] = r.server.pool.sessions()
        owner = session.key
        assert owner.udp is not None
        backlogged = Backlogged(owner.udp)
        owner.udp = cast(asyncio.DatagramTransport, backlogged)
        for i in range(40):
            r.send(peer, b"%d" % i if i % 10 else b"")  # empty ones too
        await wait_for(lambda: owner.dropped >= 40 or backlogged.sent >= 36)  # 36: the empty ones bypass it
        assert (owner.dropped, backlogged.sent) == (40, 0)
        assert sum("not keeping up" in m for m in r.logs.messages) == 1
        backlogged.full = False  # the link drains: datagrams go again
        assert await r.exchange(peer, b"after") == b"after"
        assert backlogged.sent > 0 and sum("not keeping up" in m for m in r.logs.messages) == 1


async def test_client_drops_replies_while_its_socket_to_the_applications_is_backlogged() -> None:
    async with rig() as r:
        peer = await r.source()
        assert await r.exchange(peer, b"before") == b"before"
        assert r.client.transport is not None
        backlogged = Backlogged(r.client.transport)
        r.client.transport = cast(asyncio.DatagramTransport, backlogged)
        for i in range(40):
            r.send(peer, b"%d" % i if i % 10 else b"")
        await wait_for(lambda: backlogged.sent >= 36 or r.client.dropped >= 40)
        assert (r.client.dropped, backlogged.sent) == (40, 0)
        assert peer.inbox.empty()
        assert sum("not keeping up" in m for m in r.logs.messages) == 1  # a line a minute at most
        backlogged.full = False
        assert await r.exchange(peer, b"after") == b"after"


async def test_server_sessions_are_counted_for_graceful_shutdown() -> None:
    async with rig() as r:
        tracker = r.server.tracker
        a, b = await r.source(), await r.source()
        await r.exchange(a, b"one")
        await r.exchange(b, b"two")
        assert len(tracker) == 2  # what shutdown waits for (with the TCP relays)
        assert not await tracker.wait_idle(0.1)
        tracker.abort_all()  # the grace period is over
        assert len(tracker) == 0 and await tracker.wait_idle(0.1)
        await wait_for(lambda: len(r.server.pool) == 0)  # as each connection reports its loss


async def test_client_sessions_run_on_through_graceful_shutdown() -> None:
    async with rig() as r:
        tracker = r.client.tracker
        a = await r.source()
        assert await r.exchange(a, b"before") == b"before"
        assert len(tracker) == 1
        r.client.close()  # shutdown begins: no new sources, the session runs on
        r.send(a, b"during")
        assert await a.recv() == b"during"
        late = await r.source()
        r.send(late, b"too late")
        with pytest.raises(TimeoutError):
            await late.recv(0.3)
        assert len(r.client.pool) == 1  # no session for the late source
        tracker.abort_all()  # the grace period is over
        await wait_for(lambda: r.client.transport is None)  # the last session gone, the socket closes
        assert len(tracker) == 0


class Flooder(Peer):
    """A target that answers each datagram with about 25 MB of replies."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for _ in range(400):
            self.transport.sendto(b"x" * 64_000, addr)


def deaf_client(port: int) -> socket.socket:
    """A transport connection to the server whose application never reads (a small window)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def test_server_session_removed_while_its_client_does_not_read_is_cut(evicted: bool = True) -> None:
    """udpMaxSessions and udpIdleTimeout free the connection even with unsent replies queued for a
    client that stays connected and never reads: a graceful close would wait for them for good."""
    flooder, target = await udp_peer(Flooder)
    options = {"udpMaxSessions": 1} if evicted else {"udpIdleTimeout": 0.3}
    log = EventLog(Logs())  # type: ignore[arg-type]
    spec = registry.lookup("plain")
    assert spec is not None
    method = UdpServerMethod("plain", Address("127.0.0.1", target), False, options, log)

    class Watched(TargetSession):
        lost = False

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost = True
            super().connection_lost(exc)

    sessions: list[Watched] = []

    def accepted() -> asyncio.Protocol:
        sessions.append(Watched(method))
        return sessions[-1]

    server = spec.server({}, ServerContext(state_dir=Path()))
    listener = await api.listen(server, "127.0.0.1", 0, accepted, on_error=method.handshake_failed)
    port = listener.sockets[0].getsockname()[1]
    clients = [deaf_client(port)]
    try:
        async with asyncio.timeout(5):
            while not sessions or sessions[0].conn is None or not sessions[0].conn.get_write_buffer_size():
                with contextlib.suppress(BlockingIOError):
                    clients[0].send(encode_frame(b"go"))
                await asyncio.sleep(0.05)
        first = sessions[0]
        if evicted:
            clients.append(deaf_client(port))
            await wait_for(lambda: len(sessions) == 2)
        await wait_for(lambda: first.lost)
        assert first.session is not None and first.session.removed == ("evicted" if evicted else "idle timeout")
        assert len(method.tracker) == (1 if evicted else 0)
    finally:
        for s in clients:
            s.close()
        listener.close()
        method.close()
        assert flooder.transport is not None
        flooder.transport.close()
        await asyncio.sleep(0.05)


async def test_server_session_idle_while_its_client_does_not_read_is_cut() -> None:
    await test_server_session_removed_while_its_client_does_not_read_is_cut(evicted=False)


async def test_client_session_removed_while_its_server_does_not_read_is_cut(evicted: bool = True) -> None:
    """The client side of the same: an evicted or idle session whose server never reads does not stay
    tracked (shutdown would wait the whole grace period for it) with its connection open."""
    deaf = socket.socket()  # accepts (the backlog does) and never reads
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(8)
    spec = registry.lookup("plain")
    assert spec is not None
    options: dict[str, object] = {"serverAddress": f"127.0.0.1:{deaf.getsockname()[1]}"}
    options.update({"udpMaxSessions": 1} if evicted else {"udpIdleTimeout": 0.3})

    class Tracker(ConnectionTracker):
        def __init__(self) -> None:
            super().__init__()
            self.gone: list[object] = []

        def discard(self, item: Tracked) -> None:
            self.gone.append(item)
            super().discard(item)

    tracker = Tracker()
    client = await start_udp_client(
        ClientMethod("plain", spec, options, None, EventLog(Logs()), tracker),  # type: ignore[arg-type]
        Address("127.0.0.1", 0),
        stun=False,
    )
    peer, _ = await udp_peer()
    assert peer.transport is not None
    destination = tuple(client.address)
    try:
        peer.transport.sendto(b"first", destination)
        await wait_for(lambda: len(tracker) == 1)
        session = client.pool.sessions()[0]
        assert session.conn is not None
        upstream = session.conn.get_protocol()
        async with asyncio.timeout(5):
            while not session.conn.get_write_buffer_size():
                peer.transport.sendto(b"y" * 60_000, destination)
                await asyncio.sleep(0.001)
        if evicted:
            other, _ = await udp_peer()
            assert other.transport is not None
            other.transport.sendto(b"second", destination)
            await wait_for(lambda: session.removed is not None)
            other.transport.close()
        await wait_for(lambda: upstream in tracker.gone)  # its connection_lost came
        assert session.removed == ("evicted" if evicted else "idle timeout")
    finally:
        client.abort()
        peer.transport.close()
        deaf.close()
        await asyncio.sleep(0.05)


async def test_client_session_idle_while_its_server_does_not_read_is_cut() -> None:
    await test_client_session_removed_while_its_server_does_not_read_is_cut(evicted=False)


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b"])
async def test_target_name_the_idna_codec_refuses_ends_the_session(host: str) -> None:
    """getaddrinfo() raises UnicodeError, not OSError, for a name with a label over 63 characters or
    an empty one: each session ends with the WARN of a failed resolution, not a dead task (and no
    socket, dropping everything until the idle timeout)."""
    logs = Logs()
    spec = registry.lookup("plain")
    assert spec is not None
    method = UdpServerMethod("plain", Address(host, 5353), False, {}, EventLog(logs))  # type: ignore[arg-type]
    server = spec.server({}, ServerContext(state_dir=Path()))
    listener = await api.listen(server, "127.0.0.1", 0, method.accepted, on_error=method.handshake_failed)
    reader, writer = await raw_stream(listener.sockets[0].getsockname()[1], encode_frame(b"q" * 100))
    try:
        with contextlib.suppress(ConnectionResetError):  # a reset if it closes before reading the frame
            assert await asyncio.wait_for(reader.read(), 3) == b""  # the server ends the session
        assert logs.has("UDP session closed: cannot open a socket to the target")
        assert len(method.pool) == 0 and len(method.tracker) == 0
    finally:
        writer.close()
        listener.close()
        method.close()
        await asyncio.sleep(0.05)
        gc.collect()  # the dead task's "never retrieved" report here, not inside a later import
