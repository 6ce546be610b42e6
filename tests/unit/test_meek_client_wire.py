"""Our meek client's requests (section 1.3), poll schedule (1.5) and response handling (1.6-1.7),
against a scripted raw HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

import ptdispatch
from ptdispatch.transports.meek import wire
from tests.unit._meek_raw import Upstream, Upstreams, meek_server

pytestmark = pytest.mark.timeout(30)

REQUEST = re.compile(
    rb"POST /some/path\?q=1 HTTP/1\.1\r\n"
    rb"Host: 127\.0\.0\.1:(\d+)\r\n"
    rb"Content-Length: (\d+)\r\n"
    rb"X-Session-Id: ([0-9a-f]{32})\r\n"
    rb"Accept-Encoding: gzip\r\n\r\n\Z"
)
OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Seen:
    head: bytes
    body: bytes
    at: float
    conn: int


@dataclass
class Script:
    """``answer(n, seen)`` gives the raw bytes for the n-th request (None: close without answer)."""

    answer: Callable[[int, Seen], bytes | None]
    seen: list[Seen] = field(default_factory=list)
    conns: int = 0
    close_after: frozenset[int] = frozenset()


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.conns += 1
        conn = script.conns
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                seen = Seen(head, await reader.readexactly(length), time.monotonic(), conn)
                script.seen.append(seen)
                out = script.answer(len(script.seen) - 1, seen)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if len(script.seen) - 1 in script.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/some/path?q=1"
    finally:
        server.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def echo_script(n: int, seen: Seen) -> bytes:
    return ok(seen.body)


async def test_request_shape_and_session_ids() -> None:
    script = Script(echo_script)
    async with scripted(script) as url:
        ids = []
        for _ in range(2):
            reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
            writer.write(b"hello world")
            assert await asyncio.wait_for(reader.readexactly(11), 5) == b"hello world"
            writer.close()
            ids.append(script.seen[-1].head)
    parsed = [REQUEST.match(s.head) for s in script.seen]
    assert all(parsed), [s.head for s in script.seen]
    assert parsed[0] is not None and parsed[0].group(2) == b"0"  # the opening poll
    assert any(m is not None and m.group(2) == b"11" for m in parsed)
    sids = {m.group(3) for m in parsed if m is not None}
    assert len(sids) == 2  # one per connection, the same on all its requests
    assert b"User-Agent" not in script.seen[0].head and b"Content-Type" not in script.seen[0].head


async def test_poll_schedule() -> None:
    script = Script(lambda n, seen: OK_EMPTY)
    async with scripted(script) as url:
        _, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        await asyncio.sleep(1.3)
        writer.close()
    gaps = [b.at - a.at for a, b in zip(script.seen, script.seen[1:], strict=False)]
    expected = [0.1, 0.15, 0.225, 0.3375]
    assert len(gaps) >= 4, gaps
    for gap, want in zip(gaps, expected, strict=False):
        assert want - 0.01 <= gap <= want + 0.08, gaps
    assert script.conns == 1  # keep-alive


def test_poll_interval_rule() -> None:
    interval, seen = 0.0, []
    for _ in range(12):
        interval = wire.next_poll_interval(interval, False, False)
        seen.append(round(interval, 4))
    assert seen[:4] == [0.1, 0.15, 0.225, 0.3375] and seen[-1] == 5.0
    assert wire.next_poll_interval(5.0, True, False) == 0.0
    assert wire.next_poll_interval(5.0, False, True) == 0.0


async def test_keep_alive_trap_is_survived(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server closes after each answer without saying Connection: close (as at an idle timeout
    # just as the next request goes out; any idle time counts here).
    monkeypatch.setattr(wire.RetryPolicy, "trap_idle", 0.0)

    def answer(n: int, seen: Seen) -> bytes | None:
        return None if n % 2 else ok(seen.body)

    script = Script(answer)

    async with scripted(script) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        for i in range(4):
            writer.write(b"m%d" % i)
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"m%d" % i
        writer.close()


async def test_framings_gzip_chunked_and_long_bodies() -> None:
    big = bytes(range(256)) * 400  # 102400 bytes: more than one meek payload, all of it kept
    answers = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(b"def"))
        + gzip.compress(b"def"),
        ok(big),
    ]

    script = Script(lambda n, seen: answers[n - 1] if 1 <= n <= 3 else OK_EMPTY)
    async with scripted(script) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        assert await asyncio.wait_for(reader.readexactly(6 + len(big)), 5) == b"abcdef" + big
        writer.close()


async def test_non_200_is_retried_with_the_same_body() -> None:
    def answer(n: int, seen: Seen) -> bytes:
        if n in (1, 2):
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        return ok(seen.body)

    script = Script(answer)
    async with scripted(script) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        writer.write(b"once")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"once"
        writer.close()
    assert [s.body for s in script.seen[1:4]] == [b"once"] * 3


async def test_500_ends_the_stream() -> None:
    def answer(n: int, seen: Seen) -> bytes:
        if n == 0:
            return ok(b"")
        return b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

    async with scripted(Script(answer)) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_transport_error_on_a_fresh_connection_ends_the_stream() -> None:
    def answer(n: int, seen: Seen) -> bytes | None:
        return ok(b"") if n == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"

    async with scripted(Script(answer, close_after=frozenset({1}))) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(100), 5)
        writer.close()


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope"],
    ids=["not-http", "bad-gzip"],
)
async def test_an_answer_that_is_not_http_is_a_remote_protocol_error(answer: bytes) -> None:
    """Garbage from the server is the peer's fault, caught as ``ptdispatch.RemoteProtocolError`` as
    with every other transport (not a bare connection error)."""
    async with scripted(Script(lambda n, seen: answer)) as url:
        with pytest.raises(ptdispatch.RemoteProtocolError, match=r"not HTTP/1\.1|gzip"):
            await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})


async def test_sessions_share_idle_keep_alive_connections() -> None:
    script = Script(echo_script)
    async with scripted(script) as url:
        for i in range(3):
            reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
            writer.write(b"%d" % i)
            assert await asyncio.wait_for(reader.readexactly(1), 5) == b"%d" % i
            writer.close()
            await asyncio.sleep(0.05)
    assert script.conns == 1
    assert len({REQUEST.match(s.head).group(3) for s in script.seen}) == 3  # type: ignore[union-attr]


def _closes_after_the_opening_poll() -> Script:
    return Script(echo_script, close_after=frozenset({0}))


def _says_more_than_the_answer() -> Script:
    return Script(lambda n, seen: ok(seen.body) + (b"HTTP/1.1 200 OK\r\n" if n == 0 else b""))


@pytest.mark.parametrize("make_script", [_closes_after_the_opening_poll, _says_more_than_the_answer])
async def test_a_connection_the_server_closed_or_said_more_on_is_not_reused(make_script: Callable[[], Script]) -> None:
    script = make_script()
    async with scripted(script) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        writer.close()
    assert script.conns == 2


def test_retry_policy() -> None:
    policy = wire.RetryPolicy()
    assert wire.RetryPolicy.trap_idle == 1.0
    assert policy.resend_after_failure(idle=None, answered=False) is False  # a fresh connection failed
    assert policy.resend_after_failure(idle=5.0, answered=True) is False  # the answer broke off
    assert policy.resend_after_failure(idle=0.9, answered=False) is False  # not idle long: maybe consumed
    assert policy.resend_after_failure(idle=1.0, answered=False) is True  # the keep-alive trap, once
    assert policy.resend_after_failure(idle=5.0, answered=False) is False
    assert wire.RetryPolicy().after_status(200) == wire.SUCCESS
    assert wire.RetryPolicy().after_status(500) == wire.ENDED
    policy = wire.RetryPolicy()
    delays = [policy.after_status(503) for _ in range(10)]
    assert delays[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0] and delays[-1] == wire.GIVE_UP


async def test_a_server_that_stops_answering_ends_the_stream_at_the_exchange_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ptdispatch.transports.meek.client.EXCHANGE_TIMEOUT", 0.3)
    script = Script(lambda n, seen: ok(b"") if n == 0 else b"")  # after the opening poll: silence
    async with scripted(script) as url:
        reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
        writer.write(b"x")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 5)
        assert time.monotonic() - started < 2  # the exchange's own timeout, not wait_for's
        writer.close()
    assert [s.body for s in script.seen] == [b"", b"x"]  # not sent again


async def test_a_post_lost_after_the_server_read_it_is_not_sent_again() -> None:
    # A relay (a CDN, a middlebox) drops the client's connection right after it forwarded a data
    # POST: the server has read the body, and no answer byte comes.  Sending it again would hand
    # the application the same bytes twice (and the first answer is lost): the stream ends.
    def reply(up: Upstream, data: bytes) -> None:
        assert up.transport is not None
        up.transport.write(b"<reply to %d bytes>" % len(data))

    ups = Upstreams(on_data=reply)
    dropped: list[bytes] = []

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", server_port)

        async def down() -> None:
            while data := await server_r.read(65536):
                client_w.write(data)

        answers = asyncio.ensure_future(down())
        try:
            while data := await client_r.read(65536):
                drop = b"Content-Length: 0\r\n" not in data and not dropped
                if drop:
                    answers.cancel()  # its answer never reaches the client
                server_w.write(data)
                if drop:
                    dropped.append(data)
                    await asyncio.sleep(0.05)  # the server reads the body and hands it over
                    client_w.transport.abort()
                    return
        except ConnectionError:
            pass
        finally:
            answers.cancel()
            server_w.close()

    async with meek_server(ups) as (server_port, _):
        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/"
        try:
            reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
            await asyncio.sleep(0.3)  # a few polls: the connection is a reused keep-alive one
            writer.write(b"HELLO-ONCE;")
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(reader.readexactly(100), 5)
            writer.close()
        finally:
            proxy.close()
        assert len(dropped) == 1
        assert bytes(ups.all[0].received) == b"HELLO-ONCE;"  # once
        assert [row[2] for row in ups.log].count(11) == 1
