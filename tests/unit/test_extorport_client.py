"""open_extorport() against a loopback test double of tor's ExtORPort that checks every byte."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from ptdispatch.backends import ServerMethod
from ptdispatch.config import LogLevel
from ptdispatch.errors import RemoteProtocolError
from ptdispatch.extorport import (
    ExtOrPortAuthError,
    ExtOrPortDenied,
    ExtOrPortError,
    ExtOrPortTimeout,
    open_extorport,
)
from ptdispatch.extorport.cookie import COOKIE_HEADER
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net.addr import Address
from ptdispatch.net.tracker import ConnectionTracker
from tests.peers.fake_tor import COOKIE, DENY, NONCE, OKAY, FakeTor, fake_tor, mac, nonce_rng


def expected_client_bytes(tor: FakeTor, commands: bytes) -> bytes:
    return b"\x01" + NONCE + mac(COOKIE, b"client-to-server", NONCE, tor.server_nonce) + commands


async def test_handshake_every_byte_then_or_stream() -> None:
    tor = FakeTor(check_quiet_after_done=True)
    async with fake_tor(tor) as address:
        sock, leftover = await open_extorport(address, COOKIE, "obfs4", Address("192.0.2.7", 40123), rng=nonce_rng)
        try:
            assert leftover == b""
            assert not sock.getblocking()
            loop = asyncio.get_running_loop()
            blob = os.urandom(300_000)
            got = bytearray()

            async def receive() -> None:
                while len(got) < len(blob):
                    got.extend(await loop.sock_recv(sock, 65536))

            async with asyncio.timeout(10):
                await asyncio.gather(loop.sock_sendall(sock, blob), receive())
            assert got == blob
        finally:
            sock.close()
        await asyncio.wait_for(tor.finished.wait(), 5)
    commands = b"\x00\x01\x00\x0f192.0.2.7:40123" + b"\x00\x02\x00\x05obfs4" + b"\x00\x00\x00\x00"
    assert bytes(tor.received) == expected_client_bytes(tor, commands)  # the echoed OR stream is not recorded
    assert tor.commands == [(1, b"192.0.2.7:40123"), (2, b"obfs4"), (0, b"")]
    assert tor.problems == []


async def test_socket_splices_with_create_connection() -> None:
    tor = FakeTor(after_reply=b"early OR bytes")
    async with fake_tor(tor) as address:
        sock, leftover = await open_extorport(address, COOKIE, "obfs4", "1.2.3.4:5", rng=nonce_rng)
        assert leftover == b"early OR bytes"
        loop = asyncio.get_running_loop()
        received: asyncio.Queue[bytes] = asyncio.Queue()

        class Collect(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.put_nowait(data)

        transport, _ = await loop.create_connection(Collect, sock=sock)
        transport.write(b"hello tor")
        got = b""
        async with asyncio.timeout(5):
            while got != b"hello tor":
                got += await received.get()
        transport.close()


async def test_ipv6_loopback_and_no_useraddr() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    tor = FakeTor()
    try:
        async with fake_tor(tor, "::1") as address:
            sock, _ = await open_extorport(address, COOKIE, "meek_lite", None, rng=nonce_rng)
            sock.close()
            await asyncio.wait_for(tor.finished.wait(), 5)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert tor.commands == [(2, b"meek_lite"), (0, b"")]


async def test_ipv6_client_address() -> None:
    tor = FakeTor()
    async with fake_tor(tor) as address:
        sock, _ = await open_extorport(address, COOKIE, "obfs4", Address("2001:db8::1", 443), rng=nonce_rng)
        sock.close()
        await asyncio.wait_for(tor.finished.wait(), 5)
    assert tor.commands[0] == (1, b"[2001:db8::1]:443")


async def test_wrong_cookie_is_caught_by_server_hash() -> None:
    tor = FakeTor(server_cookie=b"\xee" * 32)
    async with fake_tor(tor) as address:
        with pytest.raises(ExtOrPortAuthError, match="ExtORPort server hash mismatch: wrong cookie"):
            await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)
        await asyncio.wait_for(tor.finished.wait(), 5)
    assert bytes(tor.received) == b"\x01" + NONCE, "no ClientHash goes to a server that failed to prove the cookie"


async def test_tor_rejects_our_hash() -> None:
    tor = FakeTor(cookie=b"\x11" * 32, server_cookie=COOKIE)  # tor checks our hash with another cookie
    async with fake_tor(tor) as address:
        with pytest.raises(ExtOrPortAuthError, match=r"rejected our authentication \(status 0\)"):
            await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)


async def test_auth_status_zero() -> None:
    async with fake_tor(FakeTor(status=b"\x00")) as address:
        with pytest.raises(ExtOrPortAuthError, match="status 0"):
            await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)


async def test_deny() -> None:
    async with fake_tor(FakeTor(reply=DENY)) as address:
        with pytest.raises(ExtOrPortDenied, match="ExtORPort denied the connection"):
            await open_extorport(address, COOKIE, "obfs4", "1.2.3.4:5678", rng=nonce_rng)


async def test_unknown_commands_before_okay_are_ignored() -> None:
    tor = FakeTor(reply=b"\x10\x02\x00\x03abc" + b"\x7f\xff\x00\x00" + OKAY)
    async with fake_tor(tor) as address:
        sock, leftover = await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)
        sock.close()
    assert leftover == b""


@pytest.mark.parametrize("stage", ["start", "nonce", "hash", "commands"])
async def test_closed_mid_handshake(stage: str) -> None:
    async with fake_tor(FakeTor(close_at=stage)) as address:
        with pytest.raises(ExtOrPortError, match="ExtORPort closed the connection while"):
            await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"HTTP/1.0 400 Bad Request\r\n\r\n", ExtOrPortError),
        (b"\xff" * 300, ExtOrPortError),
        (b"\x02\x03\x00", ExtOrPortAuthError),
        (b"\x01\x00" + os.urandom(64) + b"\x01" + OKAY, ExtOrPortAuthError),
    ],
    ids=["http", "endless-auth-types", "no-safe-cookie", "random-server-hash"],
)
async def test_garbage(raw: bytes, error: type[ExtOrPortError]) -> None:
    async with fake_tor(FakeTor(raw=raw)) as address:
        with pytest.raises(error):
            await open_extorport(address, COOKIE, "obfs4", None, rng=nonce_rng)


async def test_timeout() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    address = Address("127.0.0.1", server.sockets[0].getsockname()[1])
    with pytest.raises(ExtOrPortTimeout, match=r"within 0\.2s"):
        await open_extorport(address, COOKIE, "obfs4", None, timeout=0.2)
    await asyncio.wait_for(done.wait(), 5)  # our side closed, so the fake tor's side closes too
    server.close()
    await server.wait_closed()


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot connect to the ExtORPort at 127.0.0.1:{port}"):
        await open_extorport(Address("127.0.0.1", port), COOKIE, "obfs4", None)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_failures_close_their_socket_and_the_next_connection_works() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    for tor in (FakeTor(reply=DENY), FakeTor(server_cookie=b"\x00" * 32), FakeTor(close_at="hash")):
        async with fake_tor(tor) as address:
            with pytest.raises(RemoteProtocolError):  # warm up: the loop's own fds
                await open_extorport(address, COOKIE, "obfs4", None)
            before = open_fds()
            for _ in range(5):
                with pytest.raises(RemoteProtocolError):
                    await open_extorport(address, COOKIE, "obfs4", None)
            await asyncio.sleep(0.05)
            assert open_fds() <= before
    async with fake_tor(FakeTor()) as address:
        sock, _ = await open_extorport(address, COOKIE, "obfs4", None)
        sock.close()


@pytest.mark.parametrize("contents", [None, COOKIE_HEADER], ids=["missing", "header-only"])
async def test_a_cookie_file_gone_bad_while_serving_fails_the_connection_at_warn(
    tmp_path: Path, contents: bytes | None
) -> None:
    """The cookie is read per connection (tor rewrites it when it restarts): a missing or half-written
    file fails that connection like an ExtORPort that cannot be reached, not as an internal error."""
    cookie = tmp_path / "cookie"
    if contents is not None:
        cookie.write_bytes(contents)
    out = io.StringIO()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    tracker = ConnectionTracker()
    no_server: Any = None  # the connections come straight from the listener: no transport
    method = ServerMethod("obfs4", no_server, None, log, tracker, extorport=Address("127.0.0.1", 9), authcookie=cookie)
    srv = await asyncio.get_running_loop().create_server(method.accepted, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        with pytest.raises(ConnectionResetError):  # the failed dial onward resets the connection
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert await tracker.wait_idle(5)
        warns = [line for line in out.getvalue().splitlines() if line.startswith("LOG WARN")]
        assert len(warns) == 1 and "ExtORPort auth cookie file" in warns[0] and str(cookie) in warns[0]
        assert "LOG ERROR" not in out.getvalue()
    finally:
        srv.close()
