"""meek's HTTP/1.1 reading and writing (``meek/h1.py``, over httptools): the cases h11 used to
decide for us, and the ones where Go's net/http and llhttp differ."""

from __future__ import annotations

import gzip

import pytest

from ptdispatch.transports.meek import h1
from tests.unit._meek_raw import Upstreams, exchange, meek_server, undated

pytestmark = pytest.mark.timeout(30)

TEXT_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
    b"Date: X\r\nContent-Length: 13\r\n"
)
CANNED_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
)


def reader() -> h1.RequestReader:
    return h1.RequestReader(max_header_bytes=16384, max_body=65537)


async def test_a_method_llhttp_does_not_know_gets_the_handlers_400() -> None:
    # Go takes any token as a method, and meek-server's handler answers 400 "Bad request.".
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", read_until_close=True)
    assert undated(got) == TEXT_400 + b"Connection: close\r\n\r\nBad request.\n"


async def test_a_broken_request_line_gets_the_canned_400() -> None:
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, b"FOO /\r\n\r\n", read_until_close=True)
    assert got == CANNED_400


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
)
async def test_host_header_rules(raw: bytes) -> None:
    async with meek_server(Upstreams()) as (port, _):
        assert await exchange(port, raw, read_until_close=True) == CANNED_400


async def test_http10_without_host_is_answered_and_closed() -> None:
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, b"GET / HTTP/1.0\r\n\r\n", read_until_close=True)
    assert undated(got).startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 38\r\nConnection: close\r\n\r\n" in got


async def test_an_upgrade_request_is_answered_then_closed() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    async with meek_server(Upstreams()) as (port, _):
        got = await exchange(port, raw + b"\x00\x01binary after the upgrade", read_until_close=True)
    assert undated(got).startswith(b"HTTP/1.1 200 OK\r\n")
    assert got.count(b"HTTP/1.1") == 1 and got.endswith(
        b"Connection: close\r\n\r\n" + "I\u2019m just a happy little web server.\n".encode()
    )


def test_pipelined_requests_come_out_one_by_one() -> None:
    r = reader()
    r.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = r.ready
    assert (first.method, first.target, first.body, first.keep_alive) == (b"POST", b"/a", b"hi", True)
    assert (second.method, second.target, second.body) == (b"GET", b"/b", b"")
    assert h1.header(first.headers, b"host") == b"x"  # names in lower case


def test_headers_over_the_limit_in_pieces_are_431() -> None:
    r = reader()
    r.feed(b"POST / HTTP/1.1\r\nHost: x\r\nX-Filler: ")
    with pytest.raises(h1.HttpError) as err:
        for _ in range(20):
            r.feed(b"a" * 1000)
    assert err.value.status == 431


CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nX-Session-Id: abcdefgh12\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        [b"5\r\nhello\r\n0\r\n"] + [(b"X-T: " + b"a" * 1000 + b"\r\n") * 5] * 20,  # many lines
        [b"5\r\nhello\r\n0\r\nX-T: "] + [b"a" * 1000] * 20,  # one line that never ends
        [b"5\r\nhello\r\n0\r\n" + (b"X-T: " + b"a" * 1000 + b"\r\n") * 20],  # with the last chunk
    ],
)
def test_trailers_over_the_limit_are_431(pieces: list[bytes]) -> None:
    # llhttp reads trailers as header lines after the last chunk, and httptools buffers an unfinished
    # one: without a limit, a client could make the server hold them until the read timeout.
    r = reader()
    r.feed(CHUNKED)
    with pytest.raises(h1.HttpError) as err:
        for piece in pieces:
            r.feed(piece)
    assert err.value.status == 431 and r.stopped and not r.ready


def test_trailers_are_not_request_headers() -> None:
    r = reader()
    r.feed(CHUNKED.replace(b"X-Session-Id: abcdefgh12\r\n", b""))
    r.feed(b"5\r\nhello\r\n0\r\n")  # the last chunk ends a piece: the next one is all trailers
    r.feed(b"X-Session-Id: 1234567890\r\nX-Pad: " + b"p" * 8000 + b"\r\n\r\n")
    (request,) = r.ready
    assert request.body == b"hello" and h1.header(request.headers, b"x-session-id") is None
    assert [name for name, _ in request.headers] == [b"host", b"transfer-encoding"]


def test_chunk_framing_split_anywhere_is_not_taken_for_trailers() -> None:
    # A piece that ends right after a chunk's size line leaves the next piece's start undecided
    # (chunk data or trailers) until the data arrives.
    raw = CHUNKED + b"8000\r\n" + b"d" * 0x8000 + b"\r\n8000\r\n" + b"e" * 0x8000 + b"\r\n0\r\nX-T: t\r\n\r\n"
    for cut in (len(CHUNKED) + 7, len(CHUNKED) + 7 + 0x8000 + 9, len(raw) - 12, len(raw) - 2):
        r = reader()
        r.feed(raw[:cut])
        r.feed(raw[cut:])
        (request,) = r.ready
        assert request.body == b"d" * 0x8000 + b"e" * 0x8000, cut


def test_a_body_over_the_limit_keeps_its_first_bytes_and_stops() -> None:
    r = h1.RequestReader(max_header_bytes=16384, max_body=10)
    r.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n" + b"z" * 30)
    (request,) = r.ready
    assert request.too_large and request.body == b"z" * 10 and r.stopped


def test_expect_100_continue_is_due_once() -> None:
    r = reader()
    r.feed(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert r.continue_due and not r.continue_due
    r.feed(b"ok")
    assert r.ready[0].body == b"ok"


def responses(raw: bytes, *, eof: bool = False) -> h1.ResponseReader:
    r = h1.ResponseReader(1 << 20)
    r.feed(raw)
    if eof:
        r.eof()
    return r


def test_response_after_100_continue() -> None:
    r = responses(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert r.response is not None and (r.response.status, r.response.body, r.reusable) == (200, b"ok", True)


def test_response_read_until_close() -> None:
    r = responses(b"HTTP/1.1 200 OK\r\n\r\nall of it", eof=False)
    assert r.response is None
    assert r.eof() and r.response is not None and r.response.body == b"all of it" and not r.reusable


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",  # bytes nobody asked for
    ],
)
def test_responses_that_end_the_connection(raw: bytes) -> None:
    r = responses(raw)
    assert r.response is not None and r.response.status == 200 and not r.reusable


def test_gzip_body_comes_out_raw_for_the_caller_to_decode() -> None:
    body = gzip.compress(b"x" * 100)
    r = responses(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.response is not None and h1.header(r.response.headers, b"content-encoding") == b"gzip"
    assert gzip.decompress(r.response.body) == b"x" * 100


def test_response_body_over_the_limit() -> None:
    r = h1.ResponseReader(10)
    with pytest.raises(h1.ResponseTooLarge):
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"y" * 20)


@pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 2OO OK\r\n\r\n", b"\x16\x03\x01\x00\x05hello"])
def test_not_a_response(raw: bytes) -> None:
    with pytest.raises(ValueError):
        responses(raw)


def test_response_bytes_as_go_writes_them() -> None:
    headers = [(b"Content-Type", b"application/octet-stream"), (b"Date", b"D"), (b"Transfer-Encoding", b"chunked")]
    assert h1.response(200, headers, b"abc") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nDate: D\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert h1.response(200, headers, b"abc", http10=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nDate: D\r\nConnection: close\r\n\r\nabc"
    )
    closing = [(b"Date", b"D"), (b"Content-Length", b"0"), (b"Connection", b"close")]
    assert h1.response(200, closing, b"", close=True).count(b"Connection: close") == 1
