"""The Python relay (``net.relay``): a side that comes late (``Splice.attach``, ``Splice.join``), and how a
relayed connection ends: a clean end is a FIN on the other side, an end with an error a reset."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import uvloop

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.net.relay import Splice, reset_transport


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


# --- how a relayed connection ends: a clean end is a FIN, an end with an error a reset -------------

LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass
class Relayed:
    """An app's TCP connection relayed by one splice (in Python) to a target's TCP connection."""

    splice: Splice
    app: socket.socket
    target: socket.socket
    done: asyncio.Future[Exception | None]


@contextlib.asynccontextmanager
async def relayed() -> AsyncIterator[Relayed]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Exception | None] = loop.create_future()
    splice = Splice(lambda splice, error: done.set_result(error))
    splice.switch_at = math.inf  # stay in Python (tests/unit/test_kernel_relay.py: the kernel's)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        app = socket.create_connection(listener.getsockname())
        near, _ = await loop.sock_accept(listener)
        target_listener = socket.create_server(("127.0.0.1", 0))
    await loop.connect_accepted_socket(lambda: splice.a, near)
    with target_listener:
        target_listener.setblocking(False)
        accepting = loop.create_task(loop.sock_accept(target_listener))
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


def _run(loop: str, test: Callable[[Relayed], Awaitable[None]]) -> None:
    async def main() -> None:
        async with relayed() as fixture:
            await test(fixture)

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
