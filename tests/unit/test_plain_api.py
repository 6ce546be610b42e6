"""The library API over the plain transport, and the relay."""

from __future__ import annotations

import asyncio
import os

import ptdispatch


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_plain_roundtrip() -> None:
    server = await ptdispatch.start_server(echo, "plain", "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await ptdispatch.open_connection("plain", f"127.0.0.1:{port}")
    blob = os.urandom(1 << 20)
    writer.write(blob)
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(-1), 10)
    assert got == blob
    writer.close()
    server.close()
    await server.wait_closed()


def test_the_types_in_the_api_signatures_are_exported() -> None:
    """``Address`` and ``Timeouts`` appear in the signatures of ``connect`` and ``start_server``."""
    assert {"Address", "Timeouts"} <= set(ptdispatch.__all__)
    assert ptdispatch.Timeouts(handshake=5.0).handshake == 5.0
    assert ptdispatch.Address("127.0.0.1", 1).port == 1


async def test_open_connection_takes_a_destination_tuple() -> None:
    server = await ptdispatch.start_server(echo, "plain", "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await ptdispatch.open_connection("plain", ("127.0.0.1", port), destination=("127.0.0.1", port))
    writer.write(b"x")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(-1), 10) == b"x"  # the echo handler ends and closes
    writer.close()
    server.close()
    await server.wait_closed()
