"""Dials through fake upstream proxies on loopback: what the proxy is sent, what the transport receives."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from ptdispatch.frontends.dialer import reply_for
from ptdispatch.frontends.socks.protocol import Reply
from ptdispatch.net.addr import Address
from ptdispatch.net.upstream import Dialer, ProxyRefused, UpstreamProxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TARGET = Address("example.com", 443)


class Received(asyncio.Protocol):
    """Everything the transport side of a dial is given, until the connection ends."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


@contextlib.asynccontextmanager
async def fake_proxy(handler: Handler) -> AsyncIterator[int]:
    """A listener that runs ``handler`` on each connection; every connection is closed on leaving."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def http_proxy(*chunks: bytes | float, requests: list[bytes] | None = None) -> Handler:
    """An HTTP proxy that reads the CONNECT request, writes ``chunks`` (a float: a pause), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if requests is not None:
            requests.append(request)
        for chunk in chunks:
            if isinstance(chunk, float):
                await asyncio.sleep(chunk)
            else:
                writer.write(chunk)
                await writer.drain()
        writer.close()

    return handle


async def tunnel_bytes(uri: str, handler: Handler) -> bytes:
    """What the transport receives through a dial via the proxy at ``uri`` (``{port}`` filled in)."""
    async with fake_proxy(handler) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(uri.format(port=port)), timeout=5)
        transport, protocol = await dialer.create_connection(Received, TARGET)
        await asyncio.wait_for(protocol.ended, 5)
        transport.close()
        return bytes(protocol.data)


async def dial_error(uri: str, handler: Handler, target: Address = TARGET) -> Exception:
    async with fake_proxy(handler) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(uri.format(port=port)), timeout=5)
        with pytest.raises(Exception) as caught:
            await dialer.create_connection(Received, target)
        assert isinstance(caught.value, Exception)
        return caught.value


# --- HTTP CONNECT -------------------------------------------------------------------------------------
@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "chunks",
    [
        (b"HTTP/1.1 200 Connection established\r\n\r\nTUNNEL",),  # in the reply's segment
        (b"HTTP/1.1 200 Connection established\r\n", 0.1, b"Proxy-agent: x\r\n\r\n", 0.1, b"TUNNEL"),
        (b"HTTP/1.0 200 OK\r\nX: y\r", 0.1, b"\n\r", 0.1, b"\nTUN", 0.1, b"NEL"),  # the blank line cut in two
        (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 16_000 + b"\r\n\r\nTUNNEL",),  # a long header, under 16 KiB
    ],
)
async def test_http_tunnel_gets_exactly_the_bytes_after_the_reply(chunks: tuple[bytes | float, ...]) -> None:
    assert await tunnel_bytes("http://127.0.0.1:{port}", http_proxy(*chunks)) == b"TUNNEL"


@pytest.mark.timeout(20)
def test_http_tunnel_on_uvloop() -> None:
    chunks = (b"HTTP/1.1 200 OK\r\n", 0.1, b"X: y\r\n\r\nTUN", 0.1, b"NEL")
    assert uvloop.run(tunnel_bytes("http://127.0.0.1:{port}", http_proxy(*chunks))) == b"TUNNEL"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\nTUNNEL",  # a header block over 16 KiB
        b"SSH-2.0 200 hi\r\n\r\n",
        b"HTTP/1.1 5 weird\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 20",  # closed within the reply
        b"HTTP/1.1 200 OK\r\n",
    ],
)
async def test_http_reply_that_is_no_success_fails_the_dial(reply: bytes) -> None:
    error = await dial_error("http://127.0.0.1:{port}", http_proxy(reply))
    assert isinstance(error, ProxyRefused) and error.code is None
    assert reply_for(error) is Reply.GENERAL_FAILURE


@pytest.mark.timeout(20)
async def test_http_refusal_carries_the_status() -> None:
    error = await dial_error("http://127.0.0.1:{port}", http_proxy(b"HTTP/1.1 407 Proxy Auth Required\r\n\r\n"))
    assert isinstance(error, ProxyRefused) and error.code == 407 and "407" in str(error)
    assert reply_for(error) is Reply.GENERAL_FAILURE


@pytest.mark.timeout(20)
async def test_http_reply_that_never_ends_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        await reader.read()

    async with fake_proxy(handle) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(f"http://127.0.0.1:{port}"), timeout=0.5)
        with pytest.raises(TimeoutError):
            await dialer.create_connection(Received, TARGET)


@pytest.mark.timeout(20)
async def test_http_connect_request() -> None:
    requests: list[bytes] = []
    reply = http_proxy(b"HTTP/1.1 200 OK\r\n\r\n", requests=requests)
    await tunnel_bytes("http://b%C3%B6b:se%23cret@127.0.0.1:{port}", reply)
    lines = requests[0].split(b"\r\n")
    assert lines[0] == b"CONNECT example.com:443 HTTP/1.1"
    assert b"Host: example.com:443" in lines
    assert b"Proxy-Authorization: Basic " + base64.b64encode("böb:se#cret".encode()) in lines


@pytest.mark.timeout(20)
async def test_http_connect_refuses_a_name_that_would_change_the_request() -> None:
    requests: list[bytes] = []
    async with fake_proxy(http_proxy(b"HTTP/1.1 200 OK\r\n\r\n", requests=requests)) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(f"http://127.0.0.1:{port}"), timeout=5)
        with pytest.raises(UnicodeError):
            await dialer.create_connection(Received, Address("example.com\r\nX-Evil: 1", 443))
    assert requests == []


# --- credentials ---------------------------------------------------------------------------------------
def socks4_proxy(seen: list[bytes]) -> Handler:
    """A SOCKS4a proxy that grants every request; ``seen`` gets each request's user id."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(8)
        seen.append((await reader.readuntil(b"\0"))[:-1])
        if head[4:7] == bytes(3) and head[7]:  # 0.0.0.x: a host name follows (4a)
            await reader.readuntil(b"\0")
        writer.write(b"\0\x5a" + bytes(6))
        await reader.read()

    return handle


def socks5_proxy(seen: list[tuple[bytes, bytes]]) -> Handler:
    """A SOCKS5 proxy that wants a user name and password (``seen`` gets them) and grants every request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, count = await reader.readexactly(2)
        assert 2 in await reader.readexactly(count)
        writer.write(b"\x05\x02")
        _, size = await reader.readexactly(2)
        user = await reader.readexactly(size)
        password = await reader.readexactly((await reader.readexactly(1))[0])
        seen.append((user, password))
        writer.write(b"\x01\x00")
        head = await reader.readexactly(5)
        await reader.readexactly(head[4] + 2)
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await reader.read()

    return handle


async def dial_through(uri: str, handler: Handler) -> None:
    async with fake_proxy(handler) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(uri.format(port=port)), timeout=5)
        transport, _ = await dialer.create_connection(Received, TARGET)
        transport.close()


@pytest.mark.timeout(20)
async def test_socks4a_user_id_reaches_the_proxy() -> None:
    seen: list[bytes] = []
    await dial_through("socks4a://alice@127.0.0.1:{port}", socks4_proxy(seen))
    assert seen == [b"alice"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("host", ["2001:db8::1", "::ffff:192.0.2.1", "fe80::1%1"])
async def test_socks4a_refuses_an_ipv6_destination_before_asking_the_proxy(host: str) -> None:
    """SOCKS4a has no IPv6 address type: the literal would reach the proxy as a host name."""
    seen: list[bytes] = []
    error = await dial_error("socks4a://alice@127.0.0.1:{port}", socks4_proxy(seen), Address(host, 443))
    assert isinstance(error, ProxyRefused) and "SOCKS4a cannot carry an IPv6 destination" in str(error)
    assert reply_for(error) is Reply.ADDRESS_TYPE_NOT_SUPPORTED
    assert seen == []


@pytest.mark.timeout(20)
async def test_socks4a_still_carries_ipv4_and_host_names() -> None:
    seen: list[bytes] = []
    async with fake_proxy(socks4_proxy(seen)) as port:
        dialer = Dialer(proxy=UpstreamProxy.parse(f"socks4a://alice@127.0.0.1:{port}"), timeout=5)
        for target in (Address("192.0.2.1", 443), TARGET):
            transport, _ = await dialer.create_connection(Received, target)
            transport.close()
    assert seen == [b"alice", b"alice"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("userinfo", "user", "password"),
    [
        ("bob:hunter2", b"bob", b"hunter2"),
        ("bob:p%40ss%2Fword", b"bob", b"p@ss/word"),
        ("bob:se%23cret", b"bob", b"se#cret"),
        ("bob:100%2541", b"bob", b"100%41"),  # decoded once
        ("b%3Aob:p%3Fw%5B", b"b:ob", b"p?w["),
    ],
)
async def test_socks5_credentials_reach_the_proxy_as_written(userinfo: str, user: bytes, password: bytes) -> None:
    seen: list[tuple[bytes, bytes]] = []
    await dial_through(f"socks5://{userinfo}@127.0.0.1:{{port}}", socks5_proxy(seen))
    assert seen == [(user, password)]
