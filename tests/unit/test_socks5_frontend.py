"""The asyncio SOCKS5 frontend in-process (timeouts that would be slow through the real command), and routing."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ptdispatch.config import LogLevel
from ptdispatch.errors import OptionsError
from ptdispatch.frontends import dialer
from ptdispatch.frontends.socks import server as socks_server
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net.addr import Address
from ptdispatch.net.tracker import ConnectionTracker
from ptdispatch.net.upstream import UpstreamProxy
from ptdispatch.transports import registry
from ptdispatch.transports.base import Timeouts
from ptdispatch.transports.meek import Tuning
from tests.unit._meek_raw import Upstreams, echo, meek_server


async def start(monkeypatch: pytest.MonkeyPatch, **timeouts: float) -> tuple[asyncio.AbstractServer, int]:
    for name, value in timeouts.items():
        monkeypatch.setattr(socks_server, name, value)
    method = _method({})
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_json_block_timeout_replies_0x11(monkeypatch: pytest.MonkeyPatch) -> None:
    srv, port = await start(monkeypatch, ARGS_TIMEOUT=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x09\x00\x00")  # method 0x09, then half a length
    assert await asyncio.wait_for(reader.read(-1), 5) == b"\x05\x09" + bytes([5, 0x11, 0, 1, 0, 0, 0, 0, 0, 0])
    writer.close()
    srv.close()


async def test_a_trickled_json_block_does_not_outlive_the_handshake_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte of the block now and then does not re-arm the timer: the block has ARGS_TIMEOUT from
    the method reply, and never more than the handshake's own deadline."""
    srv, port = await start(monkeypatch, HANDSHAKE_TIMEOUT=0.6, ARGS_TIMEOUT=0.4)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x09\x00\x00\xff\xff")  # 0x09, then a 65535-byte block
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x09"
    started = asyncio.get_running_loop().time()

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.1)
            writer.write(b" ")

    trickling = asyncio.get_running_loop().create_task(trickle())
    try:
        reply = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        trickling.cancel()
    assert reply == bytes([5, 0x11, 0, 1, 0, 0, 0, 0, 0, 0])
    assert asyncio.get_running_loop().time() - started < 0.55
    writer.close()
    srv.close()


async def test_a_completed_json_block_leaves_the_request_the_rest_of_the_handshake_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, port = await start(monkeypatch, HANDSHAKE_TIMEOUT=1.0, ARGS_TIMEOUT=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x09\x00\x00")  # 0x09 and half the length of its block: the block's timer runs
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x09"
    writer.write(b"\x00\x02{}")  # the block is complete: the CONNECT request is next
    await asyncio.sleep(0.5)  # past ARGS_TIMEOUT, within HANDSHAKE_TIMEOUT
    assert not reader.at_eof()
    assert await asyncio.wait_for(reader.read(-1), 5) == b""  # then the handshake timeout closes it
    writer.close()
    srv.close()


async def test_handshake_timeout_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    srv, port = await start(monkeypatch, HANDSHAKE_TIMEOUT=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05")
    assert await asyncio.wait_for(reader.read(-1), 5) == b""
    writer.close()
    srv.close()


async def test_a_server_address_the_idna_codec_rejects_is_an_ordinary_dial_failure() -> None:
    """A per-connection serverAddress whose name getaddrinfo cannot encode (it raises UnicodeError,
    not gaierror): reply 0x04 and a WARN line, not an internal error and no reply."""
    out = io.StringIO()
    method = _method({})
    method.log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    method.check_options(per_connection_allowed=True)
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        user = b"serverAddress=" + b"x" * 64 + b".example:80"
        writer.write(b"\x05\x01\x02" + bytes([1, len(user)]) + user + b"\x01\x00")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x05\x02\x01\x00"
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50")
        assert await asyncio.wait_for(reader.read(), 5) == b"\x05\x04\x00\x01" + bytes(6)
        writer.close()
        assert "LOG WARN plain: connection to [scrubbed] failed" in out.getvalue()
        assert "LOG ERROR" not in out.getvalue()
    finally:
        srv.close()


@pytest.mark.parametrize("name", ["obfs2", "obfs3"])
async def test_a_transport_handshake_timeout_is_reply_6(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A transport server that accepts the TCP connection and never answers: the client's handshake
    timer ends the dial, and the SOCKS client hears TTL expired (6), not general failure (1)."""
    module = importlib.import_module(f"ptdispatch.transports.{name}")
    monkeypatch.setattr(module, "TIMEOUTS", Timeouts(handshake=0.3))

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    upstream = await asyncio.start_server(silent, "127.0.0.1", 0)
    out = io.StringIO()
    method = _method({}, name)
    method.log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    try:
        port = upstream.sockets[0].getsockname()[1]
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
        assert await asyncio.wait_for(reader.read(-1), 5) == b"\x05\x06\x00\x01" + bytes(6)
        assert f"LOG WARN {name}: connection to [scrubbed] failed: " in out.getvalue()
        assert "LOG ERROR" not in out.getvalue()
    finally:
        writer.close()
        srv.close()
        upstream.close()
        await upstream.wait_closed()


async def test_an_ipv6_destination_through_a_socks4a_proxy_is_reply_8() -> None:
    """SOCKS4a cannot carry an IPv6 address: reply 8 (address type not supported) and a WARN line
    that says so; the proxy is not asked for the literal as a host name."""
    asked: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(await reader.read(1))  # anything at all: then close, failing the dial
        writer.close()

    upstream = await asyncio.start_server(proxy, "127.0.0.1", 0)
    out = io.StringIO()
    method = _method({})
    method.proxy = UpstreamProxy.parse(f"socks4a://127.0.0.1:{upstream.sockets[0].getsockname()[1]}")
    method.log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    try:
        ipv6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x04" + ipv6 + b"\x01\xbb")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
        assert await asyncio.wait_for(reader.read(-1), 5) == b"\x05\x08\x00\x01" + bytes(6)
        assert "LOG WARN plain: connection to [scrubbed] failed: SOCKS4a cannot carry an IPv6 destination" in (
            out.getvalue()
        )
        assert "LOG ERROR" not in out.getvalue()
        assert asked == []
    finally:
        writer.close()
        srv.close()
        upstream.close()
        await upstream.wait_closed()


def _method(options: dict[str, object], name: str = "plain") -> dialer.ClientMethod:
    spec = registry.lookup(name)
    assert spec is not None
    return dialer.ClientMethod(
        name,
        spec,
        options,
        None,
        EventLog(Reporter(out=io.StringIO(), err=io.StringIO(), level=LogLevel.NONE)),
        ConnectionTracker(),
    )


def test_route_uses_options_server_unless_the_connection_names_one() -> None:
    method = _method({"serverAddress": "127.0.0.1:1000"})
    method.check_options(per_connection_allowed=True)
    dest = Address("10.0.0.1", 80)
    assert method.route({}, dest) == dialer.Route(method.route({}, None).client, Address("127.0.0.1", 1000), dest)
    own = method.route({"serverAddress": "[::1]:2000"}, dest)
    assert (own.server, own.destination) == (Address("::1", 2000), dest)
    assert method.route({}, dest).server == Address("127.0.0.1", 1000)  # the override did not stick


def test_route_without_server_dials_the_socks_destination() -> None:
    method = _method({})
    method.check_options(per_connection_allowed=True)
    dest = Address("127.0.0.1", 9)
    route = method.route({}, dest)
    assert (route.server, route.destination) == (dest, None)
    with pytest.raises(OptionsError):
        method.route({}, None)


def test_bad_options_server_fails_at_start_up() -> None:
    with pytest.raises(OptionsError, match="serverAddress"):
        _method({"serverAddress": "nowhere"}).check_options(per_connection_allowed=True)


def test_per_connection_arguments_with_unhashable_values_are_cached_too() -> None:
    from ptdispatch.transports.base import TransportSpec

    spec = TransportSpec("any", lambda raw: object(), lambda raw, ctx: None)  # type: ignore[arg-type,return-value]
    log = EventLog(Reporter(out=io.StringIO(), err=io.StringIO(), level=LogLevel.NONE))
    method = dialer.ClientMethod("any", spec, {}, None, log, ConnectionTracker())
    first = method.route({"serverAddress": "127.0.0.1:1", "extra": ["a", "b"]}, None)
    assert method.route({"extra": ["a", "b"], "serverAddress": "127.0.0.1:1"}, None).client is first.client
    assert method.route({"serverAddress": "127.0.0.1:1", "extra": ["b"]}, None).client is not first.client


def test_unknown_per_connection_keys_are_dropped_with_a_warning() -> None:
    import io

    spec = registry.lookup("shadow")
    assert spec is not None
    out = io.StringIO()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    method = dialer.ClientMethod("shadow", spec, {"password": "pw"}, None, log, ConnectionTracker())
    method.check_options(per_connection_allowed=True)
    route = method.route({"cypher": "aes-128-gcm", "cipherName": "aes-128-gcm"}, Address("127.0.0.1", 9))
    assert route.client.config.cipher.name == "aes-128-gcm"  # type: ignore[attr-defined]  # the known key applies
    assert out.getvalue() == "LOG WARN shadow: ignoring unknown per-connection option(s) 'cypher'\n"
    again = method.route({"cipherName": "aes-128-gcm", "cypher": "x"}, Address("127.0.0.1", 9))
    assert again.client is route.client  # the same known arguments: parsed once, kept
    assert out.getvalue().count("LOG WARN") == 2  # but every connection with a typo is told
    with pytest.raises(OptionsError, match="unknown option 'cypher'"):
        dialer.ClientMethod(
            "shadow", spec, {"password": "pw", "cypher": "x"}, None, log, ConnectionTracker()
        ).check_options(per_connection_allowed=True)


async def test_a_client_engine_bug_is_one_error_line_and_no_reply() -> None:
    """The client side of the error boundary: the SOCKS client gets no reply, the log one ERROR line."""
    import io

    from ptdispatch.transports.base import Engine, EngineClientTransport, TransportSpec

    class Buggy(Engine):
        established = False

        def receive_data(self, data: bytes) -> bytes:
            raise KeyError("client bug")

        def send_data(self, data: bytes) -> None:
            pass

        def data_to_send(self) -> bytes:
            return b""

    class BuggyClient(EngineClientTransport):
        def new_engine(self, destination: Address | None) -> Engine:
            return Buggy()

    async def talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"server speaks")
        await reader.read(-1)
        writer.close()

    upstream = await asyncio.start_server(talker, "127.0.0.1", 0)
    out = io.StringIO()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    spec = TransportSpec("buggy", lambda raw: BuggyClient(), lambda raw, ctx: None)  # type: ignore[arg-type,return-value]
    method = dialer.ClientMethod("buggy", spec, {}, None, log, ConnectionTracker())
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        port = upstream.sockets[0].getsockname()[1]
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"  # method chosen
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(-1), 5) == b""  # no CONNECT reply at all
        writer.close()
        errors = [line for line in out.getvalue().splitlines() if line.startswith("LOG ERROR")]
        assert len(errors) == 1 and errors[0].startswith("LOG ERROR buggy: internal error: KeyError: 'client bug'")
    finally:
        srv.close()
        upstream.close()
        await upstream.wait_closed()


# --- meek: the dial starts once the SOCKS arguments are known, before the CONNECT request -------


def _meek_method(tracker: ConnectionTracker) -> dialer.ClientMethod:
    spec = registry.lookup("meeklite")
    assert spec is not None and spec.dials_without_destination
    log = EventLog(Reporter(out=io.StringIO(), err=io.StringIO(), level=LogLevel.NONE))
    return dialer.ClientMethod("meeklite", spec, {}, None, log, tracker)


async def _past_auth(socks: asyncio.Server, meek_port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A SOCKS5 client of ``socks``, its meek url (on ``meek_port``) sent as the user name, as tor does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", socks.sockets[0].getsockname()[1])
    user = f"url=http://127.0.0.1:{meek_port}/".encode()
    writer.write(b"\x05\x01\x02" + bytes([1, len(user)]) + user + b"\x01\x00")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x05\x02\x01\x00"
    return reader, writer


@contextlib.asynccontextmanager
async def _authenticated() -> AsyncIterator[
    tuple[asyncio.StreamReader, asyncio.StreamWriter, Upstreams, ConnectionTracker]
]:
    """A SOCKS5 client of a meek method, past its auth and the session's first POST (which comes
    before the CONNECT request); the upstream echoes."""
    ups = Upstreams(on_data=echo)
    tracker = ConnectionTracker()
    method = _meek_method(tracker)
    async with meek_server(ups, Tuning(turnaround=0.001)) as (meek_port, _):
        srv = await asyncio.get_running_loop().create_server(
            lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0
        )
        try:
            reader, writer = await _past_auth(srv, meek_port)
            async with asyncio.timeout(5):
                while not ups.log:
                    await asyncio.sleep(0.005)
            yield reader, writer, ups, tracker
        finally:
            srv.close()


async def test_meek_posts_before_the_connect_request_and_replies_after_it() -> None:
    async with _authenticated() as (reader, writer, ups, tracker):
        assert ups.log[0][2] == 0 and len(ups.all) == 1  # the session is open before the CONNECT request
        writer.write(b"\x05\x01\x00\x01\xc0\x00\x02\x14\x00\x50")  # CONNECT 192.0.2.20:80 (ignored)
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"\x05\x00\x00\x01" + bytes(6)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
        assert len(ups.all) == 1  # the same session carried it
        writer.close()
        assert await tracker.wait_idle(5)


@pytest.mark.parametrize(
    "then",
    [b"", b"\x05\x02\x00\x01\xc0\x00\x02\x14\x00\x50"],  # the client leaves; it asks for BIND
    ids=["no-request", "bind"],
)
async def test_meek_early_dial_ends_when_no_connect_follows(then: bytes) -> None:
    async with _authenticated() as (reader, writer, ups, tracker):
        await asyncio.sleep(0.05)  # the dial has completed: its connection is tracked
        if then:
            writer.write(then)
            assert await asyncio.wait_for(reader.read(), 5) == b"\x05\x07\x00\x01" + bytes(6)
        writer.close()
        assert await tracker.wait_idle(5), "the early dial outlived its SOCKS client"
        polls = len(ups.log)
        await asyncio.sleep(0.3)
        assert len(ups.log) == polls, "the abandoned session still polls"


@dataclass
class _Held:
    """A SOCKS5 client of a meek method whose CONNECT waits on a held first POST."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    release: asyncio.Event  # set: the HTTP server answers the first POST
    tracker: ConnectionTracker


@contextlib.asynccontextmanager
async def _held_meek(answer: bytes) -> AsyncIterator[_Held]:
    """Past the SOCKS auth; the first POST reached a raw HTTP server that holds it until
    ``release`` is set, then answers ``answer`` and closes; the CONNECT request is sent meanwhile."""
    release, arrived = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        await release.wait()
        writer.write(answer)
        writer.close()

    http = await asyncio.start_server(held, "127.0.0.1", 0)
    tracker = ConnectionTracker()
    method = _meek_method(tracker)
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    try:
        reader, writer = await _past_auth(srv, http.sockets[0].getsockname()[1])
        await asyncio.wait_for(arrived.wait(), 5)  # the early dial is under way
        writer.write(b"\x05\x01\x00\x01\xc0\x00\x02\x14\x00\x50")  # CONNECT, while the POST is held
        yield _Held(reader, writer, release, tracker)
    finally:
        release.set()
        srv.close()
        http.close()


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def test_a_connect_during_the_early_dial_is_answered_when_the_dial_completes() -> None:
    async with _held_meek(OK_EMPTY) as c:
        with pytest.raises(TimeoutError):  # no reply while the first exchange is held
            await asyncio.wait_for(c.reader.readexactly(1), 0.2)
        c.release.set()
        assert await asyncio.wait_for(c.reader.readexactly(10), 5) == b"\x05\x00\x00\x01" + bytes(6)
        c.writer.close()
        assert await c.tracker.wait_idle(5)


async def test_an_early_dial_the_server_ends_is_a_socks_error_for_the_waiting_connect() -> None:
    async with _held_meek(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") as c:
        c.release.set()
        assert await asyncio.wait_for(c.reader.read(), 5) == b"\x05\x01\x00\x01" + bytes(6)  # failure, closed
        c.writer.close()
        assert await c.tracker.wait_idle(5)


async def test_a_client_that_left_during_the_early_dial_leaves_nothing_behind() -> None:
    async with _held_meek(OK_EMPTY) as c:
        c.writer.close()  # unnoticed while the request waits (reading is paused), as for any dial
        await asyncio.sleep(0.05)
        c.release.set()
        assert await c.tracker.wait_idle(5)


async def test_an_early_dial_whose_connection_ended_before_the_connect_is_a_failure_reply() -> None:
    """The early dial completed, then its connection was reset while the client had not sent its
    CONNECT yet: the client gets a failure reply and the close, not SUCCEEDED on a dead connection."""
    from ptdispatch.net.relay import RelayProtocol
    from ptdispatch.transports.adapter import AppFactory
    from ptdispatch.transports.base import ClientTransport, TransportSpec

    far_sides: list[RelayProtocol] = []

    async def resetter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset

    far = await asyncio.start_server(resetter, "127.0.0.1", 0)
    far_port = far.sockets[0].getsockname()[1]

    class Early(ClientTransport):
        async def dial(
            self, address: Address, app_factory: AppFactory, **_: object
        ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
            made = await asyncio.get_running_loop().create_connection(app_factory, "127.0.0.1", far_port)
            assert isinstance(made[1], RelayProtocol)
            far_sides.append(made[1])
            return made

    spec = TransportSpec(
        "early",
        lambda raw: Early(),
        lambda raw, ctx: None,  # type: ignore[arg-type,return-value]
        names_servers=True,
        dials_without_destination=True,
    )
    out, tracker = io.StringIO(), ConnectionTracker()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    method = dialer.ClientMethod("early", spec, {}, None, log, tracker)
    method.check_options(per_connection_allowed=True)
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        writer.write(b"\x05\x01\x00")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
        async with asyncio.timeout(5):  # the early dial completed, then its connection was reset
            while not (far_sides and far_sides[0].lost):
                await asyncio.sleep(0.01)
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50")
        assert await asyncio.wait_for(reader.read(), 5) == b"\x05\x01\x00\x01" + bytes(6)  # failure, closed
        writer.close()
        assert await tracker.wait_idle(5), "the splice outlived both its sides"
        assert "LOG WARN early: connection to [scrubbed] failed" in out.getvalue()
        assert "LOG ERROR" not in out.getvalue()
    finally:
        srv.close()
        far.close()
