"""shadow over real loopback sockets through the library API (our client <-> our server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import pytest

import ptdispatch
from ptdispatch import api
from ptdispatch.net.addr import Address
from ptdispatch.transports.shadow import ServerTimeouts, ShadowClient, ShadowServer, parse_config
from ptdispatch.transports.shadow.ciphers import CIPHERS
from tests.peers.managed import echo_handler as echo

OPTIONS = {"password": "api-test", "cipherName": "chacha20-ietf-poly1305"}
#: A failed handshake closes at its start + the handshake timeout + the linger: 2 s here.
SHORT = ServerTimeouts(handshake=(1.0, 1.0), linger=(1.0, 1.0))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start(
    options: dict[str, str], bounds: ServerTimeouts | None = None, handler: Handler = echo
) -> tuple[asyncio.Server, int]:
    if bounds is None:
        server = await ptdispatch.start_server(handler, "shadow", "127.0.0.1", 0, options)
    else:
        transport = ShadowServer(parse_config(options), bounds=bounds)
        server = await api.listen(
            transport, "127.0.0.1", 0, lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), handler)
        )
    return server, server.sockets[0].getsockname()[1]


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), 10)


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
async def test_roundtrip_every_cipher(cipher: str) -> None:
    options = {"password": "api-test", "cipherName": cipher}
    server, port = await start(options)
    try:
        reader, writer = await ptdispatch.open_connection(
            "shadow", f"127.0.0.1:{port}", options, destination="192.0.2.9:80"
        )
        blob = os.urandom(1 << 20)
        writer.write(blob)
        assert await read_exactly(reader, len(blob)) == blob
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_target_option_without_destination() -> None:
    server, port = await start(OPTIONS)
    try:
        reader, writer = await ptdispatch.open_connection(
            "shadow", f"127.0.0.1:{port}", {**OPTIONS, "target": "example.com:443"}
        )
        writer.write(b"ping")
        assert await read_exactly(reader, 4) == b"ping"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def probe(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def assert_quiet_then_closed(reader: asyncio.StreamReader, quiet: float, closed_within: float) -> None:
    """No byte and no close for ``quiet`` seconds; then closed (EOF or reset) without a reply."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), quiet)
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(1), closed_within) == b""


async def good_client_works(port: int) -> None:
    reader, writer = await ptdispatch.open_connection("shadow", f"127.0.0.1:{port}", OPTIONS, destination="10.1.2.3:4")
    writer.write(b"still fine")
    assert await read_exactly(reader, 10) == b"still fine"
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [os.urandom(300), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4, bytes(64)],
    ids=["random", "http", "zeros"],
)
async def test_probe_gets_silence_then_close(garbage: bytes) -> None:
    server, port = await start(OPTIONS, SHORT)
    try:
        reader, writer = await probe(port, garbage)
        await good_client_works(port)
        await assert_quiet_then_closed(reader, 0.3, 3.0)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_short_probe_times_out_quietly() -> None:
    server, port = await start(OPTIONS, SHORT)
    try:
        reader, writer = await probe(port, os.urandom(20))  # too short to fail: the timeout, then the linger
        await assert_quiet_then_closed(reader, 1.5, 3.0)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_replayed_connection_rejected_over_the_network() -> None:
    server, port = await start(OPTIONS, SHORT)
    try:
        engine = ShadowClient(parse_config(OPTIONS)).new_engine(Address("192.0.2.1", 80))
        engine.initiate()
        engine.send_data(b"recorded request")
        recorded = engine.data_to_send()
        reader, writer = await probe(port, recorded)
        reply = await read_exactly(reader, 32 + 18 + 16 + 16)  # server salt + one chunk echoing the request
        assert len(reply) == 82
        writer.close()
        reader, writer = await probe(port, recorded)
        await assert_quiet_then_closed(reader, 0.25, 3.0)
        writer.close()
        await good_client_works(port)
    finally:
        server.close()
        await server.wait_closed()


async def test_wrong_password_client_gets_nothing() -> None:
    server, port = await start(OPTIONS, SHORT)
    try:
        reader, writer = await ptdispatch.open_connection(
            "shadow", f"127.0.0.1:{port}", {**OPTIONS, "password": "wrong"}, destination="10.0.0.1:1"
        )
        writer.write(b"hello")
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
            await asyncio.wait_for(reader.readexactly(5), 3)
        writer.close()
        await good_client_works(port)
    finally:
        server.close()
        await server.wait_closed()


async def test_requested_destination_through_get_extra_info() -> None:
    seen: list[object] = []

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen.append(transport.get_extra_info("requested_destination"))
            seen.append(transport.get_extra_info("peername"))
            seen.append(transport.get_extra_info("no-such-key", "fallback"))
            transport.close()

    server = await api.listen(ShadowServer(parse_config(OPTIONS)), "127.0.0.1", 0, Record)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await ptdispatch.open_connection(
            "shadow", f"127.0.0.1:{port}", OPTIONS, destination="192.0.2.7:8080"
        )
        writer.write(b"x")
        with contextlib.suppress(ConnectionResetError):  # the server closes at once
            await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        assert seen[0] == Address("192.0.2.7", 8080)
        assert isinstance(seen[1], tuple) and seen[1][0] == "127.0.0.1"
        assert seen[2] == "fallback"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_speaks_first_is_heard_without_client_data() -> None:
    # (The client sends its address header at once, so the server dials its target without data.)
    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        writer.write(await reader.readline())
        writer.close()

    server, port = await start(OPTIONS, handler=greeter)
    try:
        reader, writer = await ptdispatch.open_connection("shadow", f"127.0.0.1:{port}", OPTIONS,
                                                          destination="192.0.2.9:25")  # fmt: skip
        assert await asyncio.wait_for(reader.readline(), 5) == b"220 ready\r\n"
        writer.write(b"QUIT\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"QUIT\r\n"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_half_close_before_any_data_still_reaches_the_server() -> None:
    async def answer_at_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.read()
        writer.write(b"got %d bytes" % len(got))
        writer.close()

    server, port = await start(OPTIONS, handler=answer_at_eof)
    try:
        reader, writer = await ptdispatch.open_connection("shadow", f"127.0.0.1:{port}", OPTIONS,
                                                          destination="192.0.2.9:80")  # fmt: skip
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"got 0 bytes"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
