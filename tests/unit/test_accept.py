"""``net.accept.DialOnAccept``, the accepted side of every server connection (and of transparent-TCP
clients): how a failed dial onward is reported, and what the accepted side does while it dials: it
reads on (up to ``DIAL_HOLD_LIMIT``), so that a reset ends the dial at once, and the relay gets what
it read, and an EOF, in order once joined."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from ptdispatch.backends import ServerMethod
from ptdispatch.config import LogLevel
from ptdispatch.extorport.cookie import COOKIE_HEADER
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net import upstream
from ptdispatch.net.accept import DIAL_HOLD_LIMIT, Dial, DialOnAccept
from ptdispatch.net.addr import Address
from ptdispatch.net.relay import Splice
from ptdispatch.net.tracker import ConnectionTracker, closed_logger
from tests.peers.fake_tor import COOKIE

LOOPS = ["asyncio", "uvloop"]


def _run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    (uvloop.run if loop == "uvloop" else asyncio.run)(main())  # type: ignore[arg-type]


async def _connect_and_read(dial: Dial, log: EventLog) -> bytes:
    """Connect to a listener whose connections dial with ``dial``; what the client reads until the end."""

    def accepted() -> asyncio.Protocol:
        on_done = closed_logger(log, ConnectionTracker(), "obfs4")
        return Splice(on_done, a_factory=lambda splice: DialOnAccept(splice, dial, log, "obfs4")).a

    server = await asyncio.get_running_loop().create_server(accepted, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"hello")
        try:
            got = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            got = b""
        writer.close()
        return got
    finally:
        server.close()


def _log() -> tuple[EventLog, io.StringIO]:
    out = io.StringIO()
    return EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG)), out


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b"], ids=["long-label", "empty-label"])
def test_a_target_name_the_idna_codec_refuses_is_a_failed_dial(loop: str, host: str) -> None:
    """getaddrinfo() raises a bare UnicodeError, not gaierror, for a label over 63 characters or an
    empty one: a failed dial (WARN), like a name that does not resolve, not a bug (ERROR)."""
    log, out = _log()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        return await upstream.create_connection(lambda: splice.b, Address(host, 80), timeout=5)

    async def main() -> None:
        assert await _connect_and_read(dial, log) == b""

    _run(loop, main)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("LOG WARN obfs4: cannot connect onward: ") for line in lines), lines
    assert not any(line.startswith("LOG ERROR") for line in lines), lines


@pytest.mark.parametrize(
    "bug",
    [ValueError("not a dial failure"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")],
    ids=["ValueError", "UnicodeDecodeError"],
)
async def test_a_bug_in_the_dial_is_still_an_internal_error(bug: Exception) -> None:
    """A UnicodeError subclass is a bug (a codec misused), not the IDNA codec's refusal of a name."""
    log, out = _log()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        raise bug

    assert await _connect_and_read(dial, log) == b""
    lines = out.getvalue().splitlines()
    [error] = [line for line in lines if line.startswith("LOG ERROR")]
    assert error.startswith(f"LOG ERROR obfs4: internal error: {type(bug).__name__}: "), error
    assert not any("cannot connect onward" in line for line in lines), lines


# --- while the dial is under way ------------------------------------------------------------------

LINGER_ZERO = struct.pack("ii", 1, 0)
READ_SIZE = 256 * 1024
"""The most one read of a socket takes (asyncio's and uvloop's): how far past the limit a side may read."""


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("first", [b"", b"x"], ids=["silent", "sent-a-byte"])
def test_a_client_reset_during_a_stalled_extorport_dial_ends_it(loop: str, first: bytes, tmp_path: Path) -> None:
    """tor's ExtORPort stalls after its auth types: the client's reset reaches it within a second,
    not when the connect timeout (30 s) runs out."""
    cookie = tmp_path / "cookie"
    cookie.write_bytes(COOKIE_HEADER + COOKIE)
    log, _ = _log()

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        tor_saw_close: asyncio.Future[float] = loop_.create_future()
        tor_got = bytearray()

        async def stalling_tor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"\x01\x00")  # SAFE_COOKIE, end of the list; then never another byte
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(1024):
                    tor_got.extend(chunk)
            tor_saw_close.set_result(time.monotonic())
            writer.close()

        tor = await asyncio.start_server(stalling_tor, "127.0.0.1", 0)
        tracker = ConnectionTracker()
        no_server: Any = None  # the connections come straight from the listener: no transport
        extorport = Address("127.0.0.1", tor.sockets[0].getsockname()[1])
        method = ServerMethod("plain", no_server, None, log, tracker, extorport=extorport, authcookie=cookie)
        listener = await loop_.create_server(method.accepted, "127.0.0.1", 0)
        client = socket.create_connection(listener.sockets[0].getsockname()[:2])
        try:
            if first:
                client.sendall(first)
            async with asyncio.timeout(5):
                while len(tor_got) < 33:  # our auth type and nonce: the dial is waiting for tor now
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            reset_at = time.monotonic()
            _reset(client)
            closed_at = await asyncio.wait_for(tor_saw_close, 5)
            assert closed_at - reset_at < 1.0
            assert await tracker.wait_idle(1)
        finally:
            client.close()
            listener.close()
            tor.close()
            tracker.abort_all()
            await asyncio.sleep(0.05)

    _run(loop, main)


@dataclass
class Rig:
    """A listener whose connections dial onward to ``target`` only once ``release`` is set (or
    connect first and then wait, with ``connect_first``); the target's accepted sockets."""

    port: int
    release: asyncio.Event
    targets: asyncio.Queue[socket.socket]
    splices: list[Splice] = field(default_factory=list)
    done: list[Exception | None] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)  # closed at the end

    def side(self) -> DialOnAccept:
        return cast(DialOnAccept, self.splices[0].a)

    async def client(self) -> socket.socket:
        sock = socket.socket()
        self.sockets.append(sock)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        return sock

    async def target(self) -> socket.socket:
        sock = await asyncio.wait_for(self.targets.get(), 5)
        self.sockets.append(sock)
        return sock


@contextlib.asynccontextmanager
async def gated(*, connect_first: bool = False) -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    target = socket.create_server(("127.0.0.1", 0))
    target.setblocking(False)
    targets: asyncio.Queue[socket.socket] = asyncio.Queue()
    release = asyncio.Event()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> None:
        async def connect() -> None:
            accepting = loop.create_task(loop.sock_accept(target))
            await loop.create_connection(lambda: splice.b, *target.getsockname())
            sock, _ = await accepting
            targets.put_nowait(sock)

        if connect_first:
            await connect()
        await release.wait()
        if not connect_first:
            await connect()

    log, _ = _log()
    rig: Rig

    def accepted() -> asyncio.Protocol:
        splice = Splice(lambda _, error: rig.done.append(error), a_factory=lambda s: DialOnAccept(s, dial, log, "t"))
        splice.switch_at = float("inf")  # stay in Python: what the relay writes is what the test sees
        rig.splices.append(splice)
        return splice.a

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    rig = Rig(server.sockets[0].getsockname()[1], release, targets)
    try:
        yield rig
    finally:
        server.close()
        target.close()
        for splice in rig.splices:
            splice.abort()
        while not targets.empty():
            targets.get_nowait().close()
        for sock in rig.sockets:
            sock.close()
        await asyncio.sleep(0.05)


async def _read_to_end(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    async with asyncio.timeout(10):
        while chunk := await loop.sock_recv(sock, 1 << 16):
            got += chunk
    return bytes(got)


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("connect_first", [False, True], ids=["dial-stalled", "connected-not-joined"])
def test_bytes_sent_during_the_dial_reach_the_target_intact_and_in_order(loop: str, connect_first: bool) -> None:
    """Read during the dial (past the hold limit too: the rest waits in the socket), then relayed
    before anything read later; also when the target side is connected before the join, when
    nothing may go to it directly."""

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        async with gated(connect_first=connect_first) as rig:
            client = await rig.client()
            sent = bytearray()
            first = os.urandom(1000)
            await loop_.sock_sendall(client, first)
            sent += first
            await _until(lambda: bool(rig.splices) and rig.side().bytes_in == len(first))  # read, not paused
            for _ in range(3):
                more = os.urandom(100_000)  # 300 kB in all: past the hold limit
                await loop_.sock_sendall(client, more)
                sent += more
            await _until(lambda: rig.side().bytes_in > DIAL_HOLD_LIMIT)
            assert rig.side().bytes_in <= DIAL_HOLD_LIMIT + READ_SIZE
            rig.release.set()
            target = await rig.target()
            later = os.urandom(50_000)
            await loop_.sock_sendall(client, later)
            sent += later
            client.shutdown(socket.SHUT_WR)
            assert await _read_to_end(target) == sent
            await loop_.sock_sendall(target, b"reply")
            target.close()
            assert await _read_to_end(client) == b"reply"
            await _until(lambda: len(rig.done) == 1)
            assert rig.done == [None]

    _run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("target_ends_first", [False, True], ids=["client-ends", "both-end"])
def test_an_eof_during_the_dial_is_passed_on_as_a_half_close(loop: str, target_ends_first: bool) -> None:
    """The client ends its side during the dial: the target gets its bytes, then EOF, once joined,
    and can still answer (not a cancel).  With ``target_ends_first`` the target's EOF came before the
    join too: both directions are done, and both connections end once their bytes are delivered."""

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        async with gated(connect_first=target_ends_first) as rig:
            client = await rig.client()
            target: socket.socket | None = None
            if target_ends_first:
                target = await rig.target()
                await loop_.sock_sendall(target, b"banner")
                target.shutdown(socket.SHUT_WR)
                await _until(lambda: rig.splices[0].b.eof)
            await loop_.sock_sendall(client, b"request")
            client.shutdown(socket.SHUT_WR)
            await _until(lambda: bool(rig.splices) and rig.side()._eof_held)
            assert rig.splices[0].error is None and not rig.done  # still dialling
            rig.release.set()
            if target is None:
                target = await rig.target()
            assert await _read_to_end(target) == b"request"  # then EOF
            if target_ends_first:
                assert await _read_to_end(client) == b"banner"
            else:
                await loop_.sock_sendall(target, b"response")  # the other way is still open
                target.shutdown(socket.SHUT_WR)
                assert await _read_to_end(client) == b"response"
            await _until(lambda: len(rig.done) == 1)
            assert rig.done == [None]

    _run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_flooding_during_a_stalled_dial_is_paused_at_the_limit(loop: str) -> None:
    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        async with gated() as rig:
            client = await rig.client()
            blob = os.urandom(8 << 20)
            sending = asyncio.create_task(loop_.sock_sendall(client, blob))
            await _until(lambda: bool(rig.splices) and rig.side().bytes_in > DIAL_HOLD_LIMIT)
            side = rig.side()
            assert side.transport is not None
            await _until(lambda: not side.transport.is_reading())  # type: ignore[union-attr]
            await asyncio.sleep(0.3)  # the client goes on sending into the socket buffers
            held = side.bytes_in
            assert held <= DIAL_HOLD_LIMIT + READ_SIZE and sum(map(len, side.pending)) == held
            assert not sending.done()  # the client is held back: the kernel's buffers are full
            rig.release.set()
            target = await rig.target()
            await asyncio.wait_for(sending, 10)
            client.shutdown(socket.SHUT_WR)
            assert await _read_to_end(target) == blob

    _run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_both_sides_lost_while_the_dial_still_runs_end_the_splice_once(loop: str) -> None:
    """The dial connects ``splice.b`` and goes on (a handshake onward); its peer resets, then the
    client leaves: both sides are lost, which ends the splice, and the dial task, cancelled, fails
    it again.  The close line and the metrics must come once, not twice."""
    ends: list[Exception | None] = []
    log, _ = _log()

    async def main() -> None:
        loop_ = asyncio.get_running_loop()
        upstream_peer: list[asyncio.StreamWriter] = []

        async def on_target(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            upstream_peer.append(w)

        target = await asyncio.start_server(on_target, "127.0.0.1", 0)
        still: asyncio.Future[None] = loop_.create_future()

        async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
            port = target.sockets[0].getsockname()[1]
            await loop_.create_connection(lambda: splice.b, "127.0.0.1", port)
            await still  # the handshake onward never ends
            return None

        def accepted() -> asyncio.Protocol:
            return Splice(lambda _s, exc: ends.append(exc), a_factory=lambda s: DialOnAccept(s, dial, log, "t")).a

        server = await loop_.create_server(accepted, "127.0.0.1", 0)
        try:
            _r, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            while not upstream_peer:
                await asyncio.sleep(0.01)
            sock = upstream_peer[0].get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            upstream_peer[0].transport.abort()  # splice.b's peer resets
            await asyncio.sleep(0.2)
            client.close()  # then the client leaves: the accepted side is lost, the dial cancelled
            await asyncio.sleep(0.3)
        finally:
            server.close()
            target.close()

    _run(loop, main)
    assert len(ends) == 1, ends


@pytest.mark.parametrize("loop", LOOPS)
def test_a_failed_dial_onward_resets_the_accepted_side(loop: str) -> None:
    """A dial onward that fails (the target refuses) ends the accepted connection with a reset, as
    every error ends a relayed connection: its peer (a transparent-TCP application, a transport's
    client) must not take it for a clean, empty answer."""
    log, _ = _log()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = Address("127.0.0.1", s.getsockname()[1])

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        return await upstream.create_connection(lambda: splice.b, refused, timeout=5)

    async def main() -> None:
        loop_ = asyncio.get_running_loop()

        def accepted() -> asyncio.Protocol:
            return Splice(None, a_factory=lambda splice: DialOnAccept(splice, dial, log, "t")).a

        server = await loop_.create_server(accepted, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 5)
            writer.close()
        finally:
            server.close()

    _run(loop, main)
