"""Bad input to our meek server (issue 10, section 6): each case answers or closes as Go's
net/http would, and another session on the same server keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from prometheus_client import CollectorRegistry

from ptdispatch.transports.meek import ServerOptions, Tuning
from ptdispatch.transports.meek.session import INBOUND_LIMIT, Session
from tests.unit._meek_raw import Upstream, Upstreams, echo, exchange, meek_server, post, read_response

pytestmark = pytest.mark.timeout(60)

GOOD = "a-session-that-keeps-working"
CANNED_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
)


async def still_serving(port: int) -> None:
    got = await exchange(port, post(GOOD, b"ping"))
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nping"), got


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello on the plain listener
    ],
)
async def test_malformed_requests_get_a_canned_400_and_close(raw: bytes) -> None:
    async with meek_server(Upstreams(on_data=echo)) as (port, _):
        await still_serving(port)
        got = await exchange(port, raw, read_until_close=True)
        assert got == CANNED_400
        await still_serving(port)


async def test_unknown_transfer_encoding_is_501() -> None:
    async with meek_server(Upstreams(on_data=echo)) as (port, _):
        raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nX-Session-Id: 123456789\r\n\r\n"
        got = await exchange(port, raw, read_until_close=True)
        assert got.startswith(b"HTTP/1.1 501 Not Implemented\r\n")
        await still_serving(port)


async def test_headers_over_16_kib_are_431() -> None:
    async with meek_server(Upstreams(on_data=echo)) as (port, _):
        raw = b"POST / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 17_000 + b"\r\n\r\n"
        got = await exchange(port, raw, read_until_close=True)
        assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        await still_serving(port)


async def test_after_a_431_the_server_half_closes_and_waits_before_closing() -> None:
    """Go's closeWriteAndWait: the answer and a FIN come at once, the socket closes 0.5 s later, so
    request bytes still on their way do not reset the connection before the client read the answer."""
    async with meek_server(Upstreams(on_data=echo)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 17_000 + b"\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)  # the answer, then the server's FIN
        assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        start = asyncio.get_running_loop().time()
        writer.write(b"more of the request" * 100)  # the server's socket is still open: no reset yet
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            while True:  # until the server closes over the unread bytes: a reset
                await asyncio.sleep(0.05)
                writer.write(b"x")
                await writer.drain()
                if asyncio.get_running_loop().time() - start > 3:
                    raise AssertionError("the server never closed")
        assert asyncio.get_running_loop().time() - start > 0.3
        writer.close()
        await still_serving(port)


async def test_trailers_over_16_kib_are_431() -> None:
    async with meek_server(Upstreams(on_data=echo)) as (port, _):
        raw = (
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Session-Id: 123456789\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n" + (b"X-T: " + b"a" * 1000 + b"\r\n") * 17 + b"\r\n"
        )
        got = await exchange(port, raw, read_until_close=True)
        assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        await still_serving(port)


async def test_slow_client_is_closed_after_the_read_timeout() -> None:
    async with meek_server(Upstreams(on_data=echo), Tuning(read_timeout=0.3)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Sess")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer, as Go does
        assert 0.25 <= loop.time() - started <= 2.0
        writer.close()
        await still_serving(port)


async def test_idle_keep_alive_connection_is_closed_after_the_read_timeout() -> None:
    async with meek_server(Upstreams(on_data=echo), Tuning(read_timeout=0.3)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(GOOD))
        await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_ten_thousand_session_ids_in_a_burst() -> None:
    ups = Upstreams(on_data=echo)
    async with meek_server(ups, options=ServerOptions(max_sessions=200)) as (port, server):
        await still_serving(port)
        statuses: dict[int, int] = {}

        async def burst(worker: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(post(f"burst-{worker:03d}-{i:05d}") for i in range(250)))  # pipelined
            for _ in range(250):
                got = await read_response(reader, timeout=30)
                status = int(got[9:12])
                statuses[status] = statuses.get(status, 0) + 1
            writer.close()

        await asyncio.gather(*(burst(w) for w in range(40)))
        table = server.tables[0]
        assert statuses == {200: 199, 500: 9801}, statuses
        assert len(table.sessions) <= 200
        await still_serving(port)  # an existing session is never refused
        table.staleness = 0.2
        await asyncio.sleep(0.3)
        assert table.reap() >= 199  # idle expiry frees the table
        got = await exchange(port, post("a-fresh-session-id"))
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        assert len(table.sessions) <= 2


async def test_a_full_table_ends_its_longest_idle_sessions_to_make_room(
    caplog: pytest.LogCaptureFixture, registry: CollectorRegistry
) -> None:
    # meek has no close signal: a client's closed connections leave their sessions behind.  Once
    # they fill the table, new clients must still get in (the abandoned sessions make room), while
    # a table full of sessions in use still refuses a burst of new ids.
    ups = Upstreams(on_data=echo)
    options = ServerOptions(max_sessions=20)
    async with meek_server(ups, Tuning(pressure_idle=5.0), options) as (port, server):
        table = server.tables[0]
        await still_serving(port)
        good = table.sessions[GOOD]
        for i in range(19):
            assert (await exchange(port, post(f"abandoned-{i:02d}"))).startswith(b"HTTP/1.1 200 OK\r\n")
        await still_serving(port)  # GOOD, the oldest session, is the most recently used one now
        with caplog.at_level(logging.WARNING, logger="ptdispatch.meek"):
            refused = await exchange(port, post("too-early"))
            assert (await exchange(port, post("too-early-too"))).startswith(b"HTTP/1.1 500 ")
        assert refused.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")  # all used within 5 s
        assert caplog.text.count("20 sessions (the cap), all used in the last 5 s: refusing new ones with 500") == 1
        assert len(table.sessions) == 20 and table.made_room == 0
        abandoned = [table.sessions[f"abandoned-{i:02d}"] for i in range(19)]
        for session in abandoned:  # as if 10 s had passed without a request for them
            session.last_seen -= 10.0
        with caplog.at_level(logging.WARNING, logger="ptdispatch.meek"):
            got = await exchange(port, post("newcomer", b"hello"))
        assert got.endswith(b"\r\n\r\nhello"), got
        assert table.made_room == 19
        assert list(table.sessions) == [GOOD, "newcomer"]
        assert table.sessions[GOOD] is good and not good.ended  # a session in use is never ended
        assert all(session.ended for session in abandoned)
        assert [up.lost for up in ups.all] == [False] + [True] * 19 + [False]  # their upstreams closed
        assert "ended 19 idle for over 5 s early to make room" in caplog.text
        await still_serving(port)
    labels = {"transport": "meeklite"}
    assert registry.get_sample_value("ptdispatch_meek_sessions_refused_total", labels) == 2
    assert registry.get_sample_value("ptdispatch_meek_sessions_ended_early_total", labels) == 19


async def test_upstream_reset_is_500_for_that_session_only() -> None:
    def reset(up: Upstream, data: bytes) -> None:
        assert up.transport is not None
        if data == b"die":
            up.transport.abort()
        else:
            up.transport.write(data)

    async with meek_server(Upstreams(on_data=reset)) as (port, _):
        await still_serving(port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("doomed-session", b"die"))
        first = await read_response(reader)
        writer.close()
        assert first.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        await still_serving(port)


def _never_reads(up: Upstream) -> None:
    assert up.transport is not None
    up.transport.pause_reading()  # its own upstream is stuck


async def test_a_session_whose_application_does_not_read_is_ended_not_fed() -> None:
    # meek-server's io.Copy into tor blocks; a request that finds no room within dial_wait is 500 and
    # ends the session, rather than have its body held with the others.
    ups = Upstreams(on_made=_never_reads)
    async with meek_server(ups, Tuning(dial_wait=0.3)) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        for _ in range(6):
            writer.write(post("stuck-session", b"s" * 65536))
            statuses.append((await read_response(reader)).split(b"\r\n", 1)[0])
        writer.close()
        assert statuses[:4] == [b"HTTP/1.1 200 OK"] * 4  # 256 KiB (INBOUND_LIMIT) held for it
        assert statuses[4] == b"HTTP/1.1 500 Internal Server Error"
        assert statuses[5] == b"HTTP/1.1 200 OK"  # a new session
        assert len(ups.all) == 2 and ups.all[0].lost and not ups.all[1].lost
        assert server.tables[0].sessions["stuck-session"].inbound_size == 65536


async def test_concurrent_posts_to_a_session_that_does_not_read_hold_no_more_than_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[int] = []
    deliver = Session.deliver

    def watched(self: Session, body: bytes) -> None:
        deliver(self, body)
        held.append(self.inbound_size)

    monkeypatch.setattr(Session, "deliver", watched)

    async def one(port: int) -> bytes:
        return (await exchange(port, post("stuck-session", b"s" * 65536), timeout=10)).split(b"\r\n", 1)[0]

    ups = Upstreams(on_made=_never_reads)
    async with meek_server(ups, Tuning(dial_wait=0.3)) as (port, _):
        statuses = await asyncio.gather(*(one(port) for _ in range(50)))
    assert max(held) <= INBOUND_LIMIT
    assert statuses.count(b"HTTP/1.1 200 OK") <= 4 * len(ups.all)
    assert set(statuses) == {b"HTTP/1.1 200 OK", b"HTTP/1.1 500 Internal Server Error"}


async def test_client_that_never_reads_is_cut_after_the_write_timeout() -> None:
    # Go's WriteTimeout: answers pile up unread until the socket buffers are full; the connection is
    # then cut, and the server and its other sessions carry on.
    def burst(up: Upstream, data: bytes) -> None:
        assert up.transport is not None
        up.transport.write(b"b" * 65536 if data == b"x" else data)

    posts = 400  # 400 answers of 64 KiB: far more than the socket buffers hold
    async with meek_server(Upstreams(on_data=burst), Tuning(read_timeout=0.5, turnaround=0.0)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(post("never-reads", b"x") for _ in range(posts)))
        await asyncio.sleep(2.0)  # not reading: the server's writes stall past its 0.5 s deadline
        got = bytearray()
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                while chunk := await reader.read(1 << 20):
                    got += chunk
        writer.close()
        assert 0 < got.count(b"HTTP/1.1 200 OK") < posts  # cut, not merely slow
        await still_serving(port)
