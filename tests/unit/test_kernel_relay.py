"""Bulk relaying in the kernel (``net.kernel``): a splice between two plain TCP sockets moves into
``splice(2)`` after ``SWITCH_AFTER`` bytes, on uvloop and on asyncio's own loop.  What the Python
relay guarantees must still hold: every byte in order both ways, the byte counts, half-close each
way, back-pressure, a reset ending both sides (a reset on the other side too) or an outside abort, and no
descriptor left behind."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from ptdispatch.net import kernel
from ptdispatch.net.relay import Splice
from ptdispatch.transports.adapter import EngineTransport

pytestmark = [
    pytest.mark.skipif(not kernel.available(), reason="no splice(2) on this system"),
    pytest.mark.timeout(60),
]

BIG = 8 << 20


LOOPS = ["asyncio", "uvloop"]


def run(loop: str, test: Callable[[Relayed], Awaitable[None]]) -> None:
    """Run ``test`` with a fresh relayed connection on event loop ``loop``."""

    async def main() -> None:
        async with relayed() as fixture:
            await test(fixture)

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


@dataclass
class Relayed:
    """An app connection relayed by one splice to a target connection."""

    splice: Splice
    app: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    target: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    done: asyncio.Future[Exception | None]
    servers: list[asyncio.AbstractServer] = field(default_factory=list)


@contextlib.asynccontextmanager
async def relayed() -> AsyncIterator[Relayed]:
    loop = asyncio.get_running_loop()
    targets: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    target = await asyncio.start_server(lambda r, w: targets.put_nowait((r, w)), "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    done: asyncio.Future[Exception | None] = loop.create_future()
    splices: list[Splice] = []
    dials: list[asyncio.Task[None]] = []

    def finished(splice: Splice, error: Exception | None) -> None:
        if not done.done():
            done.set_result(error)

    def accepted() -> asyncio.Protocol:
        splice = Splice(finished)
        splices.append(splice)

        async def dial() -> None:
            await loop.create_connection(lambda: splice.b, "127.0.0.1", target_port)
            splice.join()

        dials.append(loop.create_task(dial()))
        return splice.a

    relay = await loop.create_server(accepted, "127.0.0.1", 0)
    app = await asyncio.open_connection("127.0.0.1", relay.sockets[0].getsockname()[1])
    got = await asyncio.wait_for(targets.get(), 10)
    fixture = Relayed(splices[0], app, got, done, [relay, target])
    try:
        yield fixture
    finally:
        for _, writer in (fixture.app, fixture.target):
            writer.close()
        for server in fixture.servers:
            server.close()
            await server.wait_closed()


async def _send(writer: asyncio.StreamWriter, blob: bytes, *, eof: bool = True) -> None:
    for i in range(0, len(blob), 100_000):
        writer.write(blob[i : i + 100_000])
        await writer.drain()
    if eof:
        writer.write_eof()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop", LOOPS)
def test_bulk_both_ways_moves_into_the_kernel_and_keeps_every_byte(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        up, down = os.urandom(BIG), os.urandom(BIG // 2)
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        sending = asyncio.gather(_send(app_w, up), _send(tgt_w, down))
        got_up, got_down, _ = await asyncio.wait_for(asyncio.gather(tgt_r.read(), app_r.read(), sending), 30)
        assert got_up == up and got_down == down  # each half-close arrived after its last byte
        assert relayed.splice.kernel is not None and relayed.splice.kernel.ended
        assert await asyncio.wait_for(relayed.done, 10) is None
        assert (relayed.splice.bytes_a_to_b, relayed.splice.bytes_b_to_a) == (len(up), len(down))

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_half_close_leaves_the_other_way_open(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        up = os.urandom(BIG)
        await _send(app_w, up)
        assert await asyncio.wait_for(tgt_r.read(), 30) == up
        assert relayed.splice.kernel is not None
        later = os.urandom(BIG)  # the target answers after the app has finished sending
        await _send(tgt_w, later)
        assert await asyncio.wait_for(app_r.read(), 30) == later
        assert await asyncio.wait_for(relayed.done, 10) is None

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_slow_receiver_holds_the_sender_back(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        up = os.urandom(64 << 20)
        sending = asyncio.ensure_future(_send(app_w, up))
        await asyncio.sleep(1.0)  # the target reads nothing: kernel buffers fill, then the sender waits
        assert not sending.done()
        assert relayed.splice.kernel is not None
        assert await asyncio.wait_for(tgt_r.read(), 30) == up
        await sending
        tgt_w.write_eof()
        assert await asyncio.wait_for(app_r.read(), 10) == b""
        assert await asyncio.wait_for(relayed.done, 10) is None

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("resetting", ["target", "app"])
def test_a_reset_is_a_reset_on_the_other_side_and_leaves_no_descriptor(loop: str, resetting: str) -> None:
    """A FIN to the other side would pass what it got off as the whole stream: it gets a reset."""

    async def test(relayed: Relayed) -> None:
        before, pooled = _open_fds(), kernel.pooled_pipes()
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        await _send(app_w, os.urandom(BIG), eof=False)
        await asyncio.wait_for(tgt_r.readexactly(BIG), 30)
        assert relayed.splice.kernel is not None and not relayed.splice.kernel.ended
        writer, other = (tgt_w, app_r) if resetting == "target" else (app_w, tgt_r)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # RST to the relay
        assert isinstance(await asyncio.wait_for(relayed.done, 10), OSError)
        with pytest.raises(ConnectionResetError):  # the other side was reset, not closed
            await asyncio.wait_for(other.read(), 10)
        await asyncio.sleep(0.1)
        # gone: the relay's two sockets and their duplicates, and both ends' sockets (one aborted, the
        # other closed by its loop on the reset); pipes are pooled
        assert _open_fds() == before - 4 + 2 * (kernel.pooled_pipes() - pooled)

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_outside_abort_stops_the_kernel_relay(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, _) = relayed.app, relayed.target
        await _send(app_w, os.urandom(BIG), eof=False)
        await asyncio.wait_for(tgt_r.readexactly(BIG), 30)
        relay = relayed.splice.kernel
        assert relay is not None
        relayed.splice.abort()  # what shutdown does to every open relay
        await asyncio.wait_for(relayed.done, 10)
        assert relay.ended
        assert await asyncio.wait_for(app_r.read(), 10) == b""
        assert await asyncio.wait_for(tgt_r.read(), 10) == b""

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_short_exchanges_stay_in_python(loop: str) -> None:
    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        for _ in range(20):
            app_w.write(b"ping")
            assert await asyncio.wait_for(tgt_r.readexactly(4), 10) == b"ping"
            tgt_w.write(b"pong")
            assert await asyncio.wait_for(app_r.readexactly(4), 10) == b"pong"
        assert relayed.splice.kernel is None

    run(loop, test)


def test_only_the_loops_own_tcp_transports_are_eligible() -> None:
    assert not kernel.eligible(EngineTransport.__new__(EngineTransport))

    async def check() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        assert kernel.eligible(writer.transport)
        writer.close()
        server.close()

    uvloop.run(check())
    asyncio.run(check())


@pytest.mark.parametrize("loop", LOOPS)
def test_no_descriptor_to_duplicate_keeps_the_relay_in_python(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(transport: asyncio.Transport) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(kernel, "_dup", exhausted)

    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        up = os.urandom(BIG)
        await asyncio.wait_for(asyncio.gather(_send(app_w, up), _send(tgt_w, b"")), 30)
        assert await asyncio.wait_for(tgt_r.read(), 30) == up
        assert await asyncio.wait_for(app_r.read(), 10) == b""
        assert relayed.splice.kernel is None
        assert await asyncio.wait_for(relayed.done, 10) is None

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_no_descriptor_for_a_pipe_holds_the_direction_back_until_one_is_free(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process ran out of descriptors (EMFILE) just as a direction needed a pipe: it waits and
    tries again (the bytes wait in the socket), and the connection carries on, every byte intact,
    as the Python relay would; it is not cut for the process's shortage."""
    real_take = kernel._POOL.take
    refused: list[int] = []

    def exhausted() -> tuple[int, int]:
        if len(refused) < 3:
            refused.append(1)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_take()

    async def test(relayed: Relayed) -> None:
        (app_r, app_w), (tgt_r, tgt_w) = relayed.app, relayed.target
        first = os.urandom(kernel.SWITCH_AFTER + 1)
        await _send(app_w, first, eof=False)  # switches after this
        assert await asyncio.wait_for(tgt_r.readexactly(len(first)), 30) == first
        monkeypatch.setattr(kernel._POOL, "take", exhausted)
        more = os.urandom(BIG)
        await asyncio.wait_for(asyncio.gather(_send(app_w, more), _send(tgt_w, b"")), 30)
        assert await asyncio.wait_for(tgt_r.read(), 30) == more
        assert await asyncio.wait_for(app_r.read(), 10) == b""
        assert len(refused) == 3
        assert await asyncio.wait_for(relayed.done, 10) is None

    run(loop, test)
