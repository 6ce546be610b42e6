"""DarkStar and Starbridge servers over loopback sockets: bad input ends that connection only.

Timers are shortened (handshake timeout, linger, Starburst step) so that each bad connection is
seen to end; a good client is served before and after, and no bad connection reaches the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import ptdispatch
from ptdispatch.net.addr import Address
from ptdispatch.transports import starburst
from ptdispatch.transports.base import Timeouts
from ptdispatch.transports.darkstar.engine import DarkStarClientEngine
from ptdispatch.transports.darkstar.handshake import server_identifier
from ptdispatch.transports.darkstar.transport import DarkStarServer
from tests.peers.managed import exchange

OPTIONS = {"shadow": {"cipherName": "DarkStar"}, "Starbridge": {}}


#: Short timers, as configuration: handshake 0.4-0.8 s (each toneburst step 0.8 s), linger 0.1-0.6 s.
SHORT = Timeouts(handshake=0.8, linger=0.6)


class Served:
    def __init__(self, name: str, server: DarkStarServer, listener: asyncio.Server) -> None:
        self.name = name
        self.server = server
        self.listener = listener
        self.port: int = listener.sockets[0].getsockname()[1]
        self.accepted = 0

    @property
    def options(self) -> dict[str, object]:
        return {**self.server.smethod_args(), "serverAddress": f"127.0.0.1:{self.port}"}

    async def good_client(self) -> None:
        reader, writer = await asyncio.wait_for(
            ptdispatch.open_connection(self.name, ("127.0.0.1", self.port), self.options), 10
        )
        await asyncio.wait_for(exchange(reader, writer, 50_000), 10)

    def hello(self) -> bytes:
        """A valid DarkStar client hello for this server."""
        key = self.server.key.public
        engine = DarkStarClientEngine(key, server_identifier(Address("127.0.0.1", self.port)))
        engine.initiate()
        return engine.data_to_send()


@contextlib.asynccontextmanager
async def serve(name: str, tmp: Path) -> AsyncIterator[Served]:
    server = ptdispatch.server_transport(name, OPTIONS[name], tmp)
    assert isinstance(server, DarkStarServer)
    server.timeouts = SHORT
    served: Served

    def app() -> asyncio.Protocol:
        served.accepted += 1
        return _EchoProtocol()

    listener = await ptdispatch.api.listen(server, "127.0.0.1", 0, app)
    served = Served(name, server, listener)
    try:
        yield served
    finally:
        listener.close()


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def ends_silently(sock: socket.socket, expect: bytes = b"", within: float = 5.0) -> None:
    """The server sends exactly ``expect`` (maybe nothing), then closes within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    got = b""
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    assert got == expect


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


@pytest.mark.parametrize(
    "bad",
    ["invalid-point", "garbage", "truncated-hello", "wrong-key", "stall"],
)
async def test_bad_darkstar_hello(tmp_path: Path, bad: str) -> None:
    async with serve("shadow", tmp_path) as served:
        await served.good_client()
        sock = connect(served.port)
        try:
            if bad == "invalid-point":
                await send(sock, b"\xff" * 64)
            elif bad == "garbage":
                await send(sock, bytes(range(256)) * 40)
            elif bad == "truncated-hello":
                await send(sock, served.hello()[:40])
            elif bad == "wrong-key":
                hello = bytearray(served.hello())
                hello[40] ^= 1
                await send(sock, bytes(hello))
            await ends_silently(sock)
        finally:
            sock.close()
        await served.good_client()
        assert served.accepted == 2


async def test_replayed_hello(tmp_path: Path) -> None:
    async with serve("shadow", tmp_path) as served:
        hello = served.hello()
        first, second = connect(served.port), connect(served.port)
        try:
            await send(first, hello)
            loop = asyncio.get_running_loop()
            assert len(await asyncio.wait_for(loop.sock_recv(first, 64), 5)) == 64  # answered
            await send(second, hello)
            await ends_silently(second)
        finally:
            first.close()
            second.close()
        await served.good_client()


@pytest.mark.parametrize("bad", ["bad-tag", "truncated-frame"])
async def test_bad_frames_after_the_handshake(tmp_path: Path, bad: str) -> None:
    async with serve("shadow", tmp_path) as served:
        client = DarkStarClientEngine(served.server.key.public, server_identifier(Address("127.0.0.1", served.port)))
        client.initiate()
        sock = connect(served.port)
        loop = asyncio.get_running_loop()
        try:
            await send(sock, client.data_to_send())
            reply = await asyncio.wait_for(loop.sock_recv(sock, 64), 5)
            client.receive_data(reply)
            assert client.established
            client.send_data(b"x" * 1000)
            frame = bytearray(client.data_to_send())
            if bad == "bad-tag":
                frame[-3] ^= 0x40
                await send(sock, bytes(frame))
                await ends_silently(sock)
            else:
                await send(sock, bytes(frame[:500]))
                sock.shutdown(socket.SHUT_WR)
                await ends_silently(sock)
        finally:
            sock.close()
        await served.good_client()


@pytest.mark.parametrize("bad", ["stall", "junk", "stall-after-ehlo"])
async def test_bad_toneburst(tmp_path: Path, bad: str) -> None:
    async with serve("Starbridge", tmp_path) as served:
        await served.good_client()
        sock = connect(served.port)
        expect = starburst.BANNER
        try:
            if bad == "junk":
                await send(sock, b"\x00junk" * 2048)  # 10 KiB, no line end
            elif bad == "stall-after-ehlo":
                await send(sock, b"EHLO prober\r\n")
                expect += starburst.WELCOME
            await ends_silently(sock, expect)
        finally:
            sock.close()
        await served.good_client()
        assert served.accepted == 2
