"""The Python relay (``net.relay``) where a side comes late: ``Splice.attach`` and ``Splice.join``."""

from __future__ import annotations

import asyncio
import socket

from ptdispatch.net.relay import Splice


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
