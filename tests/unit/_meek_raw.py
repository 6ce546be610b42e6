"""Helpers for byte-level meek server tests: a server with a scriptable upstream, raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ptdispatch.net.addr import Address
from ptdispatch.transports.meek import MeekServer, ServerOptions, Tuning

DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


class Upstream(asyncio.Protocol):
    """A session's application: records what arrives; ``on_data`` decides what to answer."""

    def __init__(self, owner: Upstreams) -> None:
        self.owner = owner
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        owner.all.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.owner.on_made is not None:
            self.owner.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.owner.on_data is not None:
            self.owner.on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def echo(up: Upstream, data: bytes) -> None:
    """An ``on_data`` that sends every body back."""
    assert up.transport is not None
    up.transport.write(data)


@dataclass
class Upstreams:
    on_data: Callable[[Upstream, bytes], None] | None = None
    on_made: Callable[[Upstream], None] | None = None
    all: list[Upstream] = field(default_factory=list)
    log: list[tuple[str, str, int, int]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def meek_server(
    ups: Upstreams, tuning: Tuning | None = None, options: ServerOptions | None = None
) -> AsyncIterator[tuple[int, MeekServer]]:
    server = MeekServer(options or ServerOptions(), tuning)
    server.request_log = lambda *row: ups.log.append(row)
    listener = await server.listen(lambda: Upstream(ups), Address("127.0.0.1", 0))
    try:
        yield listener.sockets[0].getsockname()[1], server
    finally:
        listener.close()


async def exchange(port: int, raw: bytes, *, read_until_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send ``raw`` on a new connection; return one response (or everything until close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        return await read_response(reader, read_until_close=read_until_close, timeout=timeout)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader, *, read_until_close: bool = False, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        if read_until_close:
            return await reader.read()
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"Content-Length: (\d+)\r\n", head)
        if match:
            return head + await reader.readexactly(int(match.group(1)))
        if b"Transfer-Encoding: chunked" in head:
            body = b""
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.strip(), 16)
                chunk = await reader.readexactly(size + 2)
                body += line + chunk
                if size == 0:
                    return head + body
        return head


def undated(response: bytes) -> bytes:
    """The response with its Date header replaced by ``Date: X`` (after checking its form)."""
    assert len(DATE.findall(response)) == 1, response
    return DATE.sub(b"Date: X\r\n", response)


def post(sid: str, body: bytes = b"", path: str = "/", extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: meek.example\r\nContent-Length: {len(body)}\r\nX-Session-Id: {sid}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )
