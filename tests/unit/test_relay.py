"""The Python relay (``net.relay``): a side that comes late (``Splice.attach``, ``Splice.join``), and how a
relayed connection ends: a clean end is a FIN on the other side, an end with an error a reset."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from ptdispatch import metrics
from ptdispatch.config import LogLevel
from ptdispatch.errors import DrainTimeout, RemoteProtocolError
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net.relay import Splice, reset_transport
from ptdispatch.net.tracker import ConnectionTracker, closed_logger, track_opened
from ptdispatch.transports.adapter import EngineProtocol, EngineTransport
from ptdispatch.transports.base import Engine


async def _connected(protocol: asyncio.BaseProtocol) -> tuple[asyncio.Transport, socket.socket]:
    """``protocol`` on one end of a socket pair, and the other end (blocking off)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    return transport, theirs


async def test_a_side_attached_after_its_peer_was_lost_is_closed() -> None:
    done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    splice = Splice(lambda splice, error: done.set_result(error))
    far, far_end = await _connected(splice.b)
    far.abort()  # the dialled side ends before the accepted side is attached
    async with asyncio.timeout(5):
        while not splice.b.lost:
            await asyncio.sleep(0.01)
    near, near_end = await _connected(asyncio.Protocol())  # as the SOCKS frontend holds it
    splice.attach(splice.a, near, b"held back")
    assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(near_end, 100), 5) == b""  # closed
    assert await asyncio.wait_for(done, 5) is None  # and the splice finished
    assert near.is_closing() and far.is_closing()
    near_end.close()
    far_end.close()


async def test_join_keeps_the_pause_its_own_write_caused() -> None:
    """The held-back bytes fill the far side's write buffer: the near side stays paused until that
    buffer drains, instead of being read without limit into it."""
    splice = Splice()
    far, far_end = await _connected(splice.b)  # its other end does not read yet
    near, near_end = await _connected(asyncio.Protocol())
    near.pause_reading()  # as the SOCKS frontend leaves it
    held = b"E" * (4 << 20)  # more than the socket buffers take
    splice.attach(splice.a, near, held)
    assert far.get_write_buffer_size() > 0
    assert not near.is_reading()
    loop = asyncio.get_running_loop()
    got = 0
    async with asyncio.timeout(5):
        while got < len(held):  # the far side reads: the near side reads again once the buffer drains
            got += len(await loop.sock_recv(far_end, 1 << 16))
    async with asyncio.timeout(5):
        while not near.is_reading():
            await asyncio.sleep(0.01)
    splice.close()
    near_end.close()
    far_end.close()


async def test_a_held_eof_toward_a_side_that_cannot_half_close_ends_both_at_the_join() -> None:
    """meek has no half-close: an EOF read before its side came is passed on at the join as
    ``eof_received`` passes one on later, by closing both sides once the held bytes are written
    (the join used to drop it, and the connection stayed open with neither side reading)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Exception | None] = loop.create_future()
    splice = Splice(lambda splice, error: done.set_result(error))
    _, near_end = await _connected(splice.a)
    near_end.shutdown(socket.SHUT_WR)
    async with asyncio.timeout(5):
        while not splice.a.eof:
            await asyncio.sleep(0.01)
    far, far_end = await _connected(asyncio.Protocol())
    far.can_write_eof = lambda: False  # type: ignore[method-assign]  # as meek's transports
    splice.attach(splice.b, far, b"held for near")
    assert await asyncio.wait_for(loop.sock_recv(near_end, 100), 5) == b"held for near"
    assert await asyncio.wait_for(loop.sock_recv(near_end, 100), 5) == b""
    assert await asyncio.wait_for(loop.sock_recv(far_end, 100), 5) == b""
    assert await asyncio.wait_for(done, 5) is None
    near_end.close()
    far_end.close()


# --- how a relayed connection ends: a clean end is a FIN, an end with an error a reset -------------

LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass
class Relayed:
    """An app's TCP connection relayed by one splice (in Python) to a target's TCP connection."""

    splice: Splice
    app: socket.socket
    target: socket.socket
    done: asyncio.Future[Exception | None]


class PassThrough(Engine):
    """A transport connection's engine that adds nothing: the relay's far side is then an
    ``EngineTransport`` over the wire to the target."""

    def __init__(self) -> None:
        self._out = bytearray()

    @property
    def established(self) -> bool:
        return True

    def receive_data(self, data: bytes) -> bytes:
        return data

    def send_data(self, data: bytes) -> None:
        self._out += data

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out


@contextlib.asynccontextmanager
async def relayed(
    *,
    app_rcvbuf: int = 0,
    target_rcvbuf: int = 0,
    engine: bool = False,
    on_done: Callable[[Splice, Exception | None], None] | None = None,
) -> AsyncIterator[Relayed]:
    """``app_rcvbuf``, ``target_rcvbuf``: the app's and the target's SO_RCVBUF, set before they
    connect (0: the system's); ``engine``: the relay reaches the target through an
    ``EngineTransport``; ``on_done``: called too when the splice ends."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Exception | None] = loop.create_future()

    def finished(splice: Splice, error: Exception | None) -> None:
        if on_done is not None:
            on_done(splice, error)
        done.set_result(error)

    splice = Splice(finished)
    splice.switch_at = math.inf  # stay in Python (tests/unit/test_kernel_relay.py: the kernel's)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        app = socket.socket()
        if app_rcvbuf:
            app.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, app_rcvbuf)
        app.connect(listener.getsockname())
        near, _ = await loop.sock_accept(listener)
        target_listener = socket.create_server(("127.0.0.1", 0))
    await loop.connect_accepted_socket(lambda: splice.a, near)
    with target_listener:
        if target_rcvbuf:  # accepted sockets inherit it
            target_listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, target_rcvbuf)
        target_listener.setblocking(False)
        accepting = loop.create_task(loop.sock_accept(target_listener))
        if engine:
            _, wire = await loop.create_connection(
                lambda: EngineProtocol(PassThrough(), lambda: splice.b), *target_listener.getsockname()
            )
            await wire.established
        else:
            await loop.create_connection(lambda: splice.b, *target_listener.getsockname())
        target, _ = await accepting
    splice.join()
    for sock in (app, target):
        sock.setblocking(False)
    try:
        yield Relayed(splice, app, target, done)
    finally:
        splice.abort()
        app.close()
        target.close()


async def _read_to_end(sock: socket.socket) -> tuple[bytes, BaseException | None]:
    """What ``sock`` reads until its peer ends, and how it ended (None: a clean EOF)."""
    loop = asyncio.get_running_loop()
    got = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await loop.sock_recv(sock, 1 << 16):
                got += chunk
    except OSError as exc:
        return got, exc
    return got, None


def _run(loop: str, test: Callable[[Relayed], Awaitable[None]], **fixture: Any) -> None:
    async def main() -> None:
        async with relayed(**fixture) as relayed_:
            await test(relayed_)

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())


LOOPS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("resetting", ["app", "target"])
def test_a_reset_on_one_side_is_a_reset_on_the_other(loop: str, resetting: str) -> None:
    """The other side's peer must not take what it got for the whole stream: it gets a reset too."""

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        one, other = (relayed.app, relayed.target) if resetting == "app" else (relayed.target, relayed.app)
        await ev.sock_sendall(one, b"the first half")
        async with asyncio.timeout(5):
            assert await ev.sock_recv(other, 100) == b"the first half"
        one.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        one.close()  # RST
        got, end = await _read_to_end(other)
        assert (got, type(end)) == (b"", ConnectionResetError)
        assert isinstance(await asyncio.wait_for(relayed.done, 5), ConnectionResetError)

    _run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_error_reported_by_a_side_resets_the_other(loop: str) -> None:
    """A transport connection that fails (a frame cut in two, a failed tag) reports the error in
    ``connection_lost``, as ``EngineProtocol`` does: the other side's peer gets a reset."""

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        await ev.sock_sendall(relayed.target, b"first frame")
        async with asyncio.timeout(5):
            assert await ev.sock_recv(relayed.app, 100) == b"first frame"
        cut = RemoteProtocolError("connection closed inside a frame")
        far = relayed.splice.b.transport
        assert far is not None
        relayed.splice.b.connection_lost(cut)
        far.abort()  # the engine's wire, which that connection_lost would have followed
        got, end = await _read_to_end(relayed.app)
        assert (got, type(end)) == (b"", ConnectionResetError)
        assert await asyncio.wait_for(relayed.done, 5) is cut

    _run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("ending", ["app", "target"])
def test_a_clean_end_is_still_a_fin_after_a_half_close(loop: str, ending: str) -> None:
    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        one, other = (relayed.app, relayed.target) if ending == "app" else (relayed.target, relayed.app)
        await ev.sock_sendall(one, b"all of it")
        one.shutdown(socket.SHUT_WR)
        assert await _read_to_end(other) == (b"all of it", None)  # EOF, no reset
        await ev.sock_sendall(other, b"the answer")  # the other way is still open
        other.shutdown(socket.SHUT_WR)
        assert await _read_to_end(one) == (b"the answer", None)
        assert await asyncio.wait_for(relayed.done, 5) is None

    _run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_reset_transport_sends_a_reset_and_aborts_a_transport_without_socket(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        transport = relayed.splice.a.transport
        assert transport is not None
        reset_transport(transport)
        got, end = await _read_to_end(relayed.app)
        assert (got, type(end)) == (b"", ConnectionResetError)

        class NoSocket(asyncio.Transport):  # as meek's session transports
            aborted = False

            def abort(self) -> None:
                self.aborted = True

        bare = NoSocket()
        reset_transport(bare)
        assert bare.aborted

    _run(loop, test)


# --- a close whose data the peer never reads: bounded by the drain deadline ---------------------

DRAIN = 0.5  # the drain deadline in these tests (the default is a minute)
SMALL_RCVBUF = 4096  # the app's receive buffer: it stops reading, and its window closes soon


async def _fill_until_held(relayed: Relayed, *, toward: str = "app", chunk: int = 16384) -> int:
    """The target (or, ``toward="target"``, the app) sends ``chunk`` bytes at a time, each relayed
    before the next, until the relay holds some of them for the other, which does not read, in
    its write buffer; less than the high-water mark, so the relay still reads what comes next (an
    EOF).  The bytes sent."""
    ev = asyncio.get_running_loop()
    splice = relayed.splice
    sender, reader, held = (relayed.target, splice.b, splice.a)
    if toward == "target":
        sender, reader, held = relayed.app, splice.a, splice.b
    transport = held.transport
    assert transport is not None
    sent = 0
    async with asyncio.timeout(10):
        while not transport.get_write_buffer_size():
            await ev.sock_sendall(sender, b"D" * chunk)
            sent += chunk
            while reader.bytes_in < sent:
                await asyncio.sleep(0.001)
    assert transport.get_write_buffer_size() <= chunk and not held.write_paused
    return sent


async def _ends_within(relayed: Relayed, seconds: float) -> Exception | None:
    try:
        return await asyncio.wait_for(asyncio.shield(relayed.done), seconds)
    except TimeoutError:
        pytest.fail(f"the relay still holds the connection {seconds} s after the drain deadline of {DRAIN} s")


async def _still_open_for(relayed: Relayed, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert not relayed.done.done(), relayed.done.result()
    assert relayed.splice.a.transport is not None and relayed.splice.b.transport is not None


@pytest.mark.parametrize("loop", LOOPS)
def test_a_close_the_app_never_reads_is_reset_after_the_drain_deadline(loop: str) -> None:
    """The app sends a request and its EOF, then reads nothing, with a small window; the target
    answers and closes.  Both ways done, the relay closes the app's side after the answer's last
    bytes, which never drain: the connection, its descriptors and its tracking entry were held for
    as long as the app kept its socket.  Now both sides are reset once nothing has drained for the
    deadline, and the splice ends with a ``DrainTimeout``."""

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        relayed.splice.drain_timeout = DRAIN
        await ev.sock_sendall(relayed.app, b"request")
        relayed.app.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(5):
            assert await ev.sock_recv(relayed.target, 100) == b"request"
        await _fill_until_held(relayed)
        relayed.target.close()  # the answer is complete: the app's side is closed after it
        error = await _ends_within(relayed, 4 * DRAIN + 2)
        assert isinstance(error, DrainTimeout) and isinstance(error, TimeoutError)
        assert metrics.close_status(error) == "timeout"
        _, end = await _read_to_end(relayed.app)  # what reached it, then a reset, never a FIN
        assert type(end) is ConnectionResetError

    _run(loop, test, app_rcvbuf=SMALL_RCVBUF)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_engine_side_that_never_reads_is_reset_after_the_drain_deadline(loop: str) -> None:
    """The same through a transport connection (``EngineTransport``): its write buffer is the
    wire's plus the engine's, and its reset goes out on the wire socket."""

    async def test(relayed: Relayed) -> None:
        relayed.splice.drain_timeout = DRAIN
        assert isinstance(relayed.splice.b.transport, EngineTransport)
        await _fill_until_held(relayed, toward="target")
        relayed.app.shutdown(socket.SHUT_WR)  # passed on as the engine's EOF, after those bytes
        relayed.target.shutdown(socket.SHUT_WR)  # both ways done: the relay closes, the bytes still held
        error = await _ends_within(relayed, 4 * DRAIN + 2)
        assert isinstance(error, DrainTimeout)
        _, end = await _read_to_end(relayed.target)
        assert type(end) is ConnectionResetError

    _run(loop, test, target_rcvbuf=SMALL_RCVBUF, engine=True)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_direction_paused_after_a_half_close_is_kept_whole(loop: str) -> None:
    """The app sends its request and its EOF, then reads nothing of the answer the target streams
    for several drain deadlines (a paused download, a busy application): the relay's buffer for it
    fills and stays full.  A half-closed connection is not closing: its open way may pause as long
    as on any open connection, and the answer arrives whole once the app reads."""
    size = 4 << 20

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        relayed.splice.drain_timeout = DRAIN
        await ev.sock_sendall(relayed.app, b"request")
        relayed.app.shutdown(socket.SHUT_WR)
        assert await _read_to_end(relayed.target) == (b"request", None)
        streaming = ev.create_task(ev.sock_sendall(relayed.target, b"D" * size))
        async with asyncio.timeout(10):
            while not relayed.splice.a.write_paused:
                await asyncio.sleep(0.01)
        await _still_open_for(relayed, 4 * DRAIN)
        reading = ev.create_task(_read_to_end(relayed.app))
        async with asyncio.timeout(20):
            await streaming
        relayed.target.close()
        async with asyncio.timeout(20):
            assert await reading == (b"D" * size, None)
        assert await _ends_within(relayed, 5) is None

    _run(loop, test, app_rcvbuf=SMALL_RCVBUF)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_half_closed_connection_whose_other_way_moves_is_not_reset(loop: str) -> None:
    """The target's answer is stuck in the relay's buffer behind a half-close (the app does not
    read it yet), but the app is still sending and the target reading: data is flowing, so the
    connection is kept however long that lasts, and the answer arrives whole, with its FIN."""

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        relayed.splice.drain_timeout = DRAIN
        answer = await _fill_until_held(relayed)
        relayed.target.shutdown(socket.SHUT_WR)  # the answer is complete; the target still reads
        assert relayed.splice.a.transport is not None
        sent = received = 0
        until = ev.time() + 4 * DRAIN
        async with asyncio.timeout(4 * DRAIN + 5):
            while ev.time() < until:
                await ev.sock_sendall(relayed.app, b"u" * 1024)
                sent += 1024
                while received < sent:
                    received += len(await ev.sock_recv(relayed.target, 1 << 16))
                await asyncio.sleep(DRAIN / 10)
        await _still_open_for(relayed, 0)
        assert relayed.splice.a.transport.get_write_buffer_size()  # still held all along
        assert await _read_to_end(relayed.app) == (b"D" * answer, None)
        relayed.app.shutdown(socket.SHUT_WR)
        assert await _read_to_end(relayed.target) == (b"", None)
        assert await _ends_within(relayed, 5) is None

    _run(loop, test, app_rcvbuf=SMALL_RCVBUF)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_peer_that_reads_slowly_is_not_reset(loop: str) -> None:
    """After the target's close, the app reads its answer a little at a time, each time within the
    deadline: the bytes it takes come off the relay socket's send queue (the write buffer may not
    move for a while), which counts as progress.  The connection ends with a FIN, every byte there."""

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        relayed.splice.drain_timeout = DRAIN
        answer = await _fill_until_held(relayed)
        relayed.app.shutdown(socket.SHUT_WR)
        relayed.target.close()  # both ways done: the relay closes the app's side after the answer
        got = b""
        until = ev.time() + 4 * DRAIN
        while ev.time() < until:
            await asyncio.sleep(DRAIN / 4)
            with contextlib.suppress(BlockingIOError):
                got += relayed.app.recv(2048)
        assert not relayed.done.done(), relayed.done.result()
        rest, end = await _read_to_end(relayed.app)
        assert (len(got + rest), end) == (answer, None)
        relayed.app.close()
        assert await _ends_within(relayed, 5) is None

    _run(loop, test, app_rcvbuf=SMALL_RCVBUF)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reset_for_the_drain_deadline_is_counted_and_logged(loop: str, registry: CollectorRegistry) -> None:
    """The connection's tracking entry goes, and it is counted (status ``timeout``) and logged
    like any other connection that ended with an error."""
    out = io.StringIO()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.INFO))
    tracker = ConnectionTracker()
    logged = closed_logger(log, tracker, "plain")

    async def test(relayed: Relayed) -> None:
        track_opened(tracker, relayed.splice, "plain")
        relayed.splice.drain_timeout = DRAIN
        await _fill_until_held(relayed)
        relayed.app.shutdown(socket.SHUT_WR)
        relayed.target.close()
        assert isinstance(await _ends_within(relayed, 4 * DRAIN + 2), DrainTimeout)

    _run(loop, test, app_rcvbuf=SMALL_RCVBUF, on_done=logged)
    assert len(tracker) == 0
    closed = {"transport": "plain", "role": "server"}
    assert registry.get_sample_value("ptdispatch_connections_closed_total", {**closed, "status": "timeout"}) == 1
    assert registry.get_sample_value("ptdispatch_open_connections", closed) == 0
    assert "plain: connection closed" in out.getvalue() and "(DrainTimeout: " in out.getvalue()


@pytest.mark.parametrize("loop", LOOPS)
def test_an_end_with_nothing_held_arms_no_deadline(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: a connection whose buffers are empty when it half-closes and closes (and a
    bulk answer after a half-close, read as fast as it comes, whose pauses are brief) never costs
    a timer or a look at its sockets' send queues."""
    looked: list[Splice] = []
    real = Splice._progress

    def progress(splice: Splice) -> tuple[int, int]:
        looked.append(splice)
        return real(splice)

    monkeypatch.setattr(Splice, "_progress", progress)

    async def test(relayed: Relayed) -> None:
        ev = asyncio.get_running_loop()
        await ev.sock_sendall(relayed.app, b"request")
        relayed.app.shutdown(socket.SHUT_WR)
        assert await _read_to_end(relayed.target) == (b"request", None)
        await ev.sock_sendall(relayed.target, b"answer")
        relayed.target.shutdown(socket.SHUT_WR)
        assert await _read_to_end(relayed.app) == (b"answer", None)
        assert await _ends_within(relayed, 5) is None

    _run(loop, test)
    assert looked == []
