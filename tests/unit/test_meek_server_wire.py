"""Every row of the wire notes' section 2.2: our server's exact response bytes."""

from __future__ import annotations

import asyncio
import io

import pytest

from ptdispatch.config import LogLevel
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net.accept import DialOnAccept
from ptdispatch.net.addr import Address
from ptdispatch.net.relay import Splice
from ptdispatch.transports.meek import MeekServer, ServerOptions, Tuning, wire
from ptdispatch.transports.meek.session import SessionTable
from tests.peers.managed import echo_handler
from tests.unit._meek_raw import Upstream, Upstreams, echo, exchange, meek_server, post, read_response, undated

pytestmark = pytest.mark.timeout(30)

SID = "0d4675ea70ecec374dfb04c621d8db05"
ROOT = "I\u2019m just a happy little web server.\n".encode()
TEXT = b"Content-Type: text/plain; charset=utf-8\r\n"
NOSNIFF = b"X-Content-Type-Options: nosniff\r\n"
OCTET = b"Content-Type: application/octet-stream\r\n"


@pytest.mark.parametrize("target", [b"/", b"/?q=1", b"//./", b"/a/.."])
async def test_get_root(target: bytes) -> None:
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(ROOT) == 38
    assert undated(got) == b"HTTP/1.1 200 OK\r\n" + TEXT + b"Date: X\r\nContent-Length: 38\r\n\r\n" + ROOT


async def test_get_other_path_is_404() -> None:
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    body = b"404 page not found\n"
    assert (
        undated(got) == b"HTTP/1.1 404 Not Found\r\n" + TEXT + NOSNIFF + b"Date: X\r\nContent-Length: 19\r\n\r\n" + body
    )


@pytest.mark.parametrize("method", [b"PUT", b"OPTIONS", b"DELETE"])
async def test_other_methods_are_400(method: bytes) -> None:
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head = b"HTTP/1.1 400 Bad Request\r\n" + TEXT + NOSNIFF + b"Date: X\r\nContent-Length: 13\r\n\r\n"
    assert undated(got) == head + b"Bad request.\n"


async def test_head_is_400_without_body() -> None:
    async with meek_server(Upstreams()) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        second = await read_response(reader)
        writer.close()
    assert undated(head) == b"HTTP/1.1 400 Bad Request\r\n" + TEXT + NOSNIFF + b"Date: X\r\nContent-Length: 13\r\n\r\n"
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")  # no body bytes sat between the two


@pytest.mark.parametrize("extra", [b"", b"X-Session-Id: 1234567\r\n"])
async def test_post_without_a_usable_session_id_is_400(extra: bytes) -> None:
    ups = Upstreams()
    async with meek_server(ups) as (port, _):
        raw = b"POST /any HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" + extra + b"\r\nabc"
        got = await exchange(port, raw)
    assert undated(got).startswith(b"HTTP/1.1 400 Bad Request\r\n" + TEXT + NOSNIFF)
    assert got.endswith(b"\r\n\r\nBad request.\n")
    assert ups.all == []


async def test_post_empty_poll_is_empty_200() -> None:
    ups = Upstreams()
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, path="/any/path?q=1"))
        assert len(ups.all) == 1 and not ups.all[0].lost
    assert undated(got) == b"HTTP/1.1 200 OK\r\n" + OCTET + b"Date: X\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("n", [1, 2048])
async def test_post_small_answer_has_content_length(n: int) -> None:
    ups = Upstreams(on_data=echo)
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, b"x" * n))
    head = b"HTTP/1.1 200 OK\r\n" + OCTET + b"Date: X\r\nContent-Length: " + str(n).encode() + b"\r\n\r\n"
    assert undated(got) == head + b"x" * n


@pytest.mark.parametrize("n", [2049, 65536])
async def test_post_large_answer_is_chunked(n: int) -> None:
    ups = Upstreams(on_data=echo)
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, b"y" * n))
    head = b"HTTP/1.1 200 OK\r\n" + OCTET + b"Date: X\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert undated(got) == head + f"{n:x}\r\n".encode() + b"y" * n + b"\r\n0\r\n\r\n"


async def test_answer_is_at_most_64_kib_per_response() -> None:
    def burst(up: Upstream, data: bytes) -> None:
        assert up.transport is not None
        up.transport.write(b"z" * 100_000)

    ups = Upstreams(on_data=burst)
    async with meek_server(ups) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(SID, b"go"))
        first = await read_response(reader)
        writer.write(post(SID))
        second = await read_response(reader)
        writer.close()
    assert b"\r\n10000\r\n" in first
    assert b"\r\n86a0\r\n" in second  # 34464 = 100000 - 65536


async def test_new_session_whose_dial_fails_is_500() -> None:
    def failing_dial(up: Upstream) -> None:
        assert up.transport is not None
        up.transport.pause_reading()  # an application that holds its reads while it dials
        asyncio.get_running_loop().call_later(0.05, up.transport.close)

    ups = Upstreams(on_made=failing_dial)
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, b"hello"))
        assert ups.all[0].lost
    head = b"HTTP/1.1 500 Internal Server Error\r\n" + TEXT + NOSNIFF + b"Date: X\r\nContent-Length: 23\r\n\r\n"
    assert undated(got) == head + b"Internal server error.\n"
    assert ups.all[0].lost


@pytest.mark.parametrize("dial_fails", [False, True], ids=["connects", "fails"])
async def test_a_new_session_waits_for_the_dispatchers_dial_though_it_reads_meanwhile(dial_fails: bool) -> None:
    """The dispatcher's own application, DialOnAccept, reads on while it dials (it does not pause as
    the doubles above do): the first answer still waits for the dial, and carries the upstream's
    echo, or is a 500 when the dial fails."""
    loop = asyncio.get_running_loop()
    target = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    log = EventLog(Reporter(out=io.StringIO(), err=io.StringIO(), level=LogLevel.DEBUG))
    sides: list[DialOnAccept] = []

    async def slow_dial(splice: Splice, accepted: asyncio.Transport) -> None:
        await asyncio.sleep(0.3)
        if dial_fails:
            raise ConnectionRefusedError("refused")
        await loop.create_connection(lambda: splice.b, *target.sockets[0].getsockname()[:2])

    def accepted() -> asyncio.Protocol:
        side = Splice(a_factory=lambda splice: DialOnAccept(splice, slow_dial, log, "meek")).a
        assert isinstance(side, DialOnAccept)
        sides.append(side)
        return side

    server = MeekServer(ServerOptions(), Tuning(dial_wait=5.0))
    listener = await server.listen(accepted, Address("127.0.0.1", 0))
    try:
        got = await exchange(listener.sockets[0].getsockname()[1], post(SID, b"hello"))
    finally:
        listener.close()
        target.close()
    assert sides and sides[0].bytes_in == 5  # read during the dial
    if dial_fails:
        assert got.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    else:
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nhello"), got
    for side in sides:
        side.splice.abort()


async def test_a_sessions_requests_are_answered_one_at_a_time() -> None:
    # Two requests of one new session at once (two connections, as through a CDN): the second is
    # read by the application only once the first is answered, so each answer carries its echo.
    loop = asyncio.get_running_loop()

    def slow_dial(up: Upstream) -> None:
        assert up.transport is not None
        up.transport.pause_reading()  # an application that holds its reads while it dials
        loop.call_later(0.3, up.transport.resume_reading)

    async def one(body: bytes) -> tuple[bytes, float]:
        got = await exchange(port, post(SID, body))
        return got, loop.time() - started

    async with meek_server(Upstreams(on_data=echo, on_made=slow_dial), Tuning(dial_wait=5.0)) as (port, _):
        started = loop.time()
        first = asyncio.ensure_future(one(b"first"))
        await asyncio.sleep(0.05)
        (a, a_at), (b, b_at) = await asyncio.gather(first, one(b"second"))
    assert a.endswith(b"\r\n\r\nfirst") and b.endswith(b"\r\n\r\nsecond"), (a, b)
    assert a_at < 1 and b_at < 1  # neither waits out dial_wait


async def test_upstream_end_is_500_after_the_data_and_deletes_the_session() -> None:
    def answer_and_close(up: Upstream, data: bytes) -> None:
        assert up.transport is not None
        up.transport.write(b"bye")
        up.transport.close()

    ups = Upstreams(on_data=answer_and_close)
    async with meek_server(ups) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(SID, b"hi"))
        first = await read_response(reader)
        writer.write(post(SID))
        second = await read_response(reader)
        writer.write(post(SID))  # the id is forgotten: a new upstream connection
        third = await read_response(reader)
        writer.close()
        assert ups.all[0].lost and not ups.all[1].lost
    assert first.endswith(b"\r\n\r\nbye")
    assert undated(second).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert third.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(ups.all) == 2 and ups.all[0].lost


async def test_body_over_65537_bytes_closes_the_session() -> None:
    ups = Upstreams()
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, b"q" * 70_000), read_until_close=True)
        assert ups.all[0].lost
    assert undated(got) == b"HTTP/1.1 200 OK\r\nDate: X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert bytes(ups.all[0].received) == b"q" * 65537
    assert ups.all[0].lost


async def test_body_of_65537_bytes_is_accepted() -> None:
    ups = Upstreams()
    async with meek_server(ups) as (port, _):
        got = await exchange(port, post(SID, b"q" * 65537))
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection" not in got
    assert len(ups.all[0].received) == 65537


async def test_chunked_request_body_is_accepted() -> None:
    ups = Upstreams(on_data=echo)
    async with meek_server(ups) as (port, _):
        raw = (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Session-Id: " + SID.encode() + b"\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        got = await exchange(port, raw)
    assert got.endswith(b"Content-Length: 5\r\n\r\nabcde")


async def test_keep_alive_and_client_close() -> None:
    async with meek_server(Upstreams()) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(SID) + post(SID, extra=b"Connection: close\r\n"))
        first = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert b"Connection" not in first
    assert (
        undated(rest) == b"HTTP/1.1 200 OK\r\n" + OCTET + b"Date: X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (b"X-Forwarded-For: 203.0.113.5, 10.0.0.1\r\n", ("203.0.113.5", 1)),
        (b"X-Forwarded-For: 203.0.113.5\r\nMeek-IP: 2001:db8::1\r\n", ("2001:db8::1", 1)),
        (b"X-Forwarded-For: not-an-ip\r\n", None),
        (b"X-Forwarded-For: fe80::1%] LOG ERROR forged by the peer\r\n", None),  # Go's net.ParseIP: no scope id
        (b"X-Forwarded-For: 203.0.113.5\r\nMeek-IP: fe80::1%eth0\r\n", None),
        (b"", ("127.0.0.1", 1)),
    ],
)
async def test_useraddr(headers: bytes, expected: tuple[str, int] | None) -> None:
    ups = Upstreams()
    async with meek_server(ups) as (port, _):
        await exchange(port, post(SID, extra=headers))
    assert ups.all[0].transport is not None
    assert ups.all[0].transport.get_extra_info("peername") == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"x-forwarded-for", b"fe80::1%] LOG ERROR forged by the peer")], None),
        ([(b"x-forwarded-for", b"fe80::1%eth0, 203.0.113.5")], None),
        ([(b"meek-ip", b"fe80::1%1")], None),
        ([(b"meek-ip", b"fe80::1")], "fe80::1"),
        ([], "192.0.2.7"),
    ],
)
def test_user_ip_refuses_a_scope_id(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    """A scope id (any characters after '%', which the peer chooses) is not an IP, as for Go's
    net.ParseIP in meek-server: it would otherwise be the client's address in a LOG line."""
    assert wire.user_ip(headers, "192.0.2.7") == expected


async def test_idle_sessions_expire() -> None:
    ups = Upstreams()
    async with meek_server(ups, Tuning(staleness=0.2)) as (port, server):
        await exchange(port, post(SID))
        await asyncio.sleep(0.5)
        assert ups.all[0].lost
        assert server.tables[0].sessions == {}


def test_default_limits_are_meek_servers() -> None:
    tuning = Tuning()
    assert (tuning.staleness, tuning.read_timeout, tuning.turnaround) == (120.0, 20.0, 0.010)


async def test_expect_100_continue() -> None:
    ups = Upstreams(on_data=echo)
    async with meek_server(ups) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(SID, extra=b"Expect: 100-continue\r\n").replace(b"Content-Length: 0", b"Content-Length: 2"))
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        got = await read_response(reader)
        writer.close()
    assert got.endswith(b"Content-Length: 2\r\n\r\nok")


async def test_http10_client_gets_no_chunking_and_a_close() -> None:
    # nginx's proxy_pass speaks HTTP/1.0 by default. (We add Connection: close, as h11 did; Go would not.)
    ups = Upstreams(on_data=echo)
    async with meek_server(ups) as (port, _):
        raw = post(SID, b"w" * 5000).replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)
        got = await exchange(port, raw, read_until_close=True)
    head = b"HTTP/1.1 200 OK\r\n" + OCTET + b"Date: X\r\nConnection: close\r\n\r\n"
    assert undated(got) == head + b"w" * 5000


async def test_a_closed_table_makes_no_new_session() -> None:
    """A request read just before the listener closed must not dial a new upstream connection."""
    made: list[object] = []

    def factory() -> asyncio.Protocol:
        made.append(object())
        return asyncio.Protocol()

    table = SessionTable(factory, cap=16, staleness=60)
    assert table.get("a-session-id", lambda: None) is not None
    table.close()
    assert table.get("another-session-id", lambda: None) is None
    assert len(made) == 1
