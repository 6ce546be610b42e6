"""SOCKS5 and transparent-TCP through a real client+server pair, including bad input and a transport
connection that fails mid-stream (a reset for the application, not a FIN)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from python_socks.async_.asyncio import Proxy

from ptdispatch import api
from ptdispatch.net.addr import Address
from ptdispatch.transports.base import Timeouts
from ptdispatch.transports.darkstar.engine import DarkStarServerEngine, ServerKey
from ptdispatch.transports.darkstar.handshake import server_identifier
from ptdispatch.transports.darkstar.keys import encode_public, generate_compact
from ptdispatch.transports.darkstar.replay import ReplayFilter
from tests.peers.dispatcher import Dispatcher, running
from tests.peers.managed import echo_server

CONNECT = b"\x05\x01\x00\x01\x7f\x00\x00\x01"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, Dispatcher, int]]:
    """An echo target, a plain server in front of it, and a SOCKS5 client with serverAddress."""
    echo, echo_port = await echo_server()
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", f"127.0.0.1:{echo_port}",
        "-state", str(tmp_path / "s"),
    ) as server:  # fmt: skip
        _, sport = server.method("SMETHOD", "plain")
        async with running(
            "-transport", "plain", "-options", json.dumps({"serverAddress": f"127.0.0.1:{sport}"}),
            "-state", str(tmp_path / "c"),
        ) as client:  # fmt: skip
            yield client, server, echo_port
    echo.close()


async def socks_connect(
    port: int, dest: tuple[str, int] = ("127.0.0.1", 9)
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = await Proxy.from_url(f"socks5://127.0.0.1:{port}").connect(dest[0], dest[1], timeout=10)
    return await asyncio.open_connection(sock=sock)


async def roundtrip(port: int, size: int = 100_000) -> None:
    reader, writer = await socks_connect(port)
    blob = os.urandom(size)
    writer.write(blob)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(size), 20) == blob
    writer.close()


async def raw(port: int, data: bytes, read: int = 64, timeout: float = 5) -> bytes:
    """Send ``data`` to the SOCKS port; return what comes back until EOF or ``read`` bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while len(out) < read and (chunk := await reader.read(read)):
                out += chunk
    except TimeoutError:
        pass  # a truncated handshake: the server waits for more, as it should
    except ConnectionResetError:
        pass  # refused onward: the server cuts the connection without a word
    finally:
        writer.close()
    return out


async def test_socks5_roundtrip(pair: tuple[Dispatcher, Dispatcher, int]) -> None:
    client, _, _ = pair
    await roundtrip(client.method("CMETHOD", "plain")[1], 4 << 20)


async def test_connect_destination_is_the_server_without_server_address(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    async with running("-transport", "plain", "-state", str(tmp_path)) as client:
        reader, writer = await socks_connect(client.method("CMETHOD", "plain")[1], ("127.0.0.1", echo_port))
        writer.write(b"direct")
        assert await asyncio.wait_for(reader.readexactly(6), 5) == b"direct"
        writer.close()
    echo.close()


async def test_json_block_server_address(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    async with running("-transport", "plain", "-state", str(tmp_path)) as client:
        port = client.method("CMETHOD", "plain")[1]
        block = json.dumps({"serverAddress": f"127.0.0.1:{echo_port}"}).encode()
        reply = await raw(port, b"\x05\x01\x09" + struct.pack(">I", len(block)) + block + CONNECT + b"\x00\x09", 12)
        assert reply[:2] == b"\x05\x09"
        assert reply[2:4] == b"\x05\x00"
    echo.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\x7f\xff\xff\xff", 0x10),
        (struct.pack(">I", 3) + b"[1]", 0x12),
        (struct.pack(">I", 5) + b"nope!", 0x12),
    ],
)
async def test_json_block_errors(pair: tuple[Dispatcher, Dispatcher, int], body: bytes, code: int) -> None:
    client, _, _ = pair
    port = client.method("CMETHOD", "plain")[1]
    reply = await raw(port, b"\x05\x01\x09" + body)
    assert reply == b"\x05\x09" + bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
    await roundtrip(port)


async def test_rejected_per_connection_args_give_0x13(tmp_path: Path) -> None:
    options = json.dumps({"password": "pw", "cipherName": "chacha20-ietf-poly1305"})
    async with running("-transport", "shadow", "-options", options, "-state", str(tmp_path)) as client:
        port = client.method("CMETHOD", "shadow")[1]
        block = json.dumps({"cipherName": "rot13"}).encode()
        reply = await raw(port, b"\x05\x01\x09" + struct.pack(">I", len(block)) + block + CONNECT + b"\x00\x09")
        assert reply == b"\x05\x09" + bytes([5, 0x13, 0, 1, 0, 0, 0, 0, 0, 0])


async def test_unreachable_server_is_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with running(
        "-transport", "plain", "-options", json.dumps({"serverAddress": f"127.0.0.1:{dead}"}), "-state", str(tmp_path)
    ) as client:  # fmt: skip
        reply = await raw(client.method("CMETHOD", "plain")[1], b"\x05\x01\x00" + CONNECT + b"\x00\x09", 12)
        assert reply == b"\x05\x00" + bytes([5, 0x05, 0, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x05",
        b"\x05\x03\x00",
        b"\x05\x01\x00\x05\x01\x00\x03",
        b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50",
        os.urandom(512),
    ],
)
async def test_garbage_closes_only_that_connection(pair: tuple[Dispatcher, Dispatcher, int], garbage: bytes) -> None:
    client, server, _ = pair
    port = client.method("CMETHOD", "plain")[1]
    await raw(port, garbage, timeout=1)
    await roundtrip(port)
    assert client.process.returncode is None and server.process.returncode is None


async def test_reset_mid_handshake(pair: tuple[Dispatcher, Dispatcher, int]) -> None:
    client, _, _ = pair
    port = client.method("CMETHOD", "plain")[1]
    for partial in (b"\x05", b"\x05\x01\x00", b"\x05\x01\x00\x05\x01\x00\x01\x7f"):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(partial)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    await roundtrip(port)


async def test_target_refusing_closes_quietly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", f"127.0.0.1:{dead}",
        "-state", str(tmp_path),
    ) as server:  # fmt: skip
        _, sport = server.method("SMETHOD", "plain")
        for _ in range(3):
            assert await raw(sport, b"hello", timeout=3) == b""
        assert server.process.returncode is None


async def test_target_resetting(tmp_path: Path) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    target = await asyncio.start_server(reset, "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", f"127.0.0.1:{tport}",
        "-state", str(tmp_path),
    ) as server:  # fmt: skip
        _, sport = server.method("SMETHOD", "plain")
        await raw(sport, b"hello", timeout=3)
        assert server.process.returncode is None
    target.close()


async def test_thousand_connections_opened_and_dropped(pair: tuple[Dispatcher, Dispatcher, int]) -> None:
    client, server, _ = pair
    port = client.method("CMETHOD", "plain")[1]
    socks = []
    for i in range(1000):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        socks.append(s)
        if i % 2:
            with_greeting = b"\x05\x01\x00" + CONNECT + b"\x00\x09"
            with contextlib.suppress(OSError):
                s.send(with_greeting)
    await asyncio.sleep(0.5)
    for s in socks:
        s.close()
    await asyncio.sleep(0.5)
    await roundtrip(port)
    assert client.process.returncode is None and server.process.returncode is None


async def test_transparent_tcp(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", f"127.0.0.1:{echo_port}",
        "-state", str(tmp_path / "s"), "-mode", "transparent-TCP",
    ) as server:  # fmt: skip
        _, sport = server.method("SMETHOD", "plain")
        async with running(
            "-transport", "plain", "-mode", "transparent-TCP", "-state", str(tmp_path / "c"),
            "-options", json.dumps({"serverAddress": f"127.0.0.1:{sport}"}),
        ) as client:  # fmt: skip
            host, port = client.method("CMETHOD", "plain")
            assert client.lines[1] == f"CMETHOD plain transparent-TCP 127.0.0.1:{port}"
            reader, writer = await asyncio.open_connection(host, port)
            blob = os.urandom(1 << 20)
            writer.write(blob)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(-1), 10) == blob  # half-close passes through
            writer.close()
    echo.close()


# --- a transport connection that fails mid-stream: the application must see a reset, not a FIN ------


async def _read_to_end(reader: asyncio.StreamReader) -> tuple[bytes, type[BaseException] | None]:
    """What ``reader`` gets until its connection ends, and how it ended (None: a clean EOF)."""
    got = b""
    try:
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 16):
                got += chunk
    except OSError as exc:
        return got, type(exc)
    return got, None


@pytest.mark.parametrize("cut", [True, False], ids=["cut", "whole"])
async def test_a_frame_cut_in_two_resets_the_socks_application(tmp_path: Path, cut: bool) -> None:
    """A DarkStar server sends a frame, then (once the application has answered, so the relay is
    joined) a second one, whole or cut after 17 bytes, then FIN.  The cut is a protocol error:
    the SOCKS application must see a reset, since a FIN would pass the first frame off as the
    whole stream; the whole one ends with a FIN as before."""
    key = ServerKey(generate_compact())
    ports: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine = DarkStarServerEngine(key, server_identifier(Address("127.0.0.1", ports[0])), ReplayFilter())
        engine.start(time.monotonic(), Timeouts())
        engine.receive_data(await reader.readexactly(64))
        engine.send_data(b"first frame")
        writer.write(engine.data_to_send())
        while not engine.receive_data(await reader.read(1000)):  # the application's answer
            assert not reader.at_eof()
        engine.send_data(b"second frame")
        last = engine.data_to_send()
        writer.write(last[:17] if cut else last)
        writer.write_eof()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(), 10)
        writer.close()

    fake = await asyncio.start_server(serve, "127.0.0.1", 0)
    ports.append(fake.sockets[0].getsockname()[1])
    options = {
        "cipherName": "DarkStar",
        "serverPublicKey": encode_public(key.public),
        "serverAddress": f"127.0.0.1:{ports[0]}",
    }
    async with running("-transport", "shadow", "-options", json.dumps(options), "-state", str(tmp_path)) as client:
        reader, writer = await socks_connect(client.method("CMETHOD", "shadow")[1], ("127.0.0.1", 80))
        assert await asyncio.wait_for(reader.readexactly(11), 10) == b"first frame"
        writer.write(b"go on")
        await writer.drain()
        if cut:
            assert await _read_to_end(reader) == (b"", ConnectionResetError)
        else:
            assert await _read_to_end(reader) == (b"second frame", None)
        writer.close()
    fake.close()


@pytest.mark.parametrize("cut", [True, False], ids=["cut", "whole"])
async def test_a_frame_cut_in_two_resets_the_servers_target(tmp_path: Path, cut: bool) -> None:
    """The other direction: a shadow client sends a chunk, then (once the target has it) a second
    one, whole or missing its last 3 bytes, then FIN.  The server's target sees a reset for the cut
    stream, a FIN for the whole one."""
    shadow = {"password": "cut in two", "cipherName": "chacha20-ietf-poly1305"}
    targets: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    target = await asyncio.start_server(lambda r, w: targets.put_nowait((r, w)), "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    async with running(
        "-server", "-transport", "shadow", "-bindaddr", "shadow-127.0.0.1:0", "-target", f"127.0.0.1:{tport}",
        "-state", str(tmp_path), "-options", json.dumps({"shadow": shadow}),
    ) as server:  # fmt: skip
        engine = api.client_transport("shadow", shadow).new_engine(Address("127.0.0.1", 9))  # type: ignore[attr-defined]
        engine.start(time.monotonic(), Timeouts())
        engine.initiate()
        engine.send_data(b"first chunk")
        _, wire_w = await asyncio.open_connection(*server.method("SMETHOD", "shadow"))
        wire_w.write(engine.data_to_send())
        tgt_r, tgt_w = await asyncio.wait_for(targets.get(), 10)
        assert await asyncio.wait_for(tgt_r.readexactly(11), 10) == b"first chunk"
        engine.send_data(b"second chunk")
        last = engine.data_to_send()
        wire_w.write(last[:-3] if cut else last)
        wire_w.write_eof()
        if cut:
            assert await _read_to_end(tgt_r) == (b"", ConnectionResetError)
        else:
            assert await _read_to_end(tgt_r) == (b"second chunk", None)
        tgt_w.close()
        wire_w.close()
    target.close()


async def test_a_target_reset_reaches_the_socks_application_as_a_reset(tmp_path: Path) -> None:
    """The server resets the transport connection (its wire socket, under the engine) when the target
    resets; the client then resets the SOCKS application's connection."""
    shadow = {"password": "reset", "cipherName": "chacha20-ietf-poly1305"}

    async def resetting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        await reader.readexactly(3)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    target = await asyncio.start_server(resetting, "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    async with running(
        "-server", "-transport", "shadow", "-bindaddr", "shadow-127.0.0.1:0", "-target", f"127.0.0.1:{tport}",
        "-state", str(tmp_path / "s"), "-options", json.dumps({"shadow": shadow}),
    ) as server:  # fmt: skip
        _, sport = server.method("SMETHOD", "shadow")
        options = {**shadow, "serverAddress": f"127.0.0.1:{sport}"}
        async with running(
            "-transport", "shadow", "-options", json.dumps(options), "-state", str(tmp_path / "c")
        ) as client:  # fmt: skip
            reader, writer = await socks_connect(client.method("CMETHOD", "shadow")[1])
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
            writer.write(b"bye")
            assert await _read_to_end(reader) == (b"", ConnectionResetError)
            writer.close()
    target.close()
