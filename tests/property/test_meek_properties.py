"""meek properties: how the bytes are chunked never changes the answers; garbage only ever gives
Go-style error answers (server) or ConnectionError (client), never another exception."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.transports.meek import MeekServer, ServerOptions, Tuning, wire
from ptdispatch.transports.meek.http import ExchangeFailed, HttpClientConnection
from ptdispatch.transports.meek.options import MeekUrl
from ptdispatch.transports.meek.server import HttpConnection
from ptdispatch.transports.meek.session import SessionTable
from tests.chunking import split
from tests.unit._meek_raw import DATE, post

cuts = st.lists(st.integers(min_value=0), max_size=20)


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


class FakeWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.transport = FakeTransport()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.transport.closed

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.transport.closed = True


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data[::-1])


async def _feed(reader: asyncio.StreamReader, chunks: list[bytes]) -> None:
    for chunk in chunks:
        reader.feed_data(chunk)
        for _ in range(3):
            await asyncio.sleep(0)
    reader.feed_eof()


async def serve(chunks: list[bytes]) -> bytes:
    server = MeekServer(ServerOptions(), Tuning(turnaround=0.0, read_timeout=5.0))
    table = SessionTable(Echo, cap=16, staleness=60)
    reader, writer = asyncio.StreamReader(), FakeWriter()
    feeder = asyncio.ensure_future(_feed(reader, chunks))
    await HttpConnection(server, table, reader, writer).run()  # type: ignore[arg-type]
    await feeder
    table.close()
    return DATE.sub(b"Date: X\r\n", bytes(writer.out))


requests = st.lists(
    st.one_of(
        st.binary(max_size=3000).map(lambda b: post("session-one", b)),
        st.binary(max_size=300).map(lambda b: post("session-two", b)),
        st.just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        st.just(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        st.just(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(stream=requests, points=cuts)
def test_server_answers_do_not_depend_on_chunking(stream: list[bytes], points: list[int]) -> None:
    raw = b"".join(stream)
    whole = asyncio.run(serve([raw]))
    assert asyncio.run(serve(split(raw, points))) == whole
    assert whole.count(b"HTTP/1.1 ") == len(stream)


@settings(max_examples=80, deadline=None)
@given(garbage=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"POST / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n"]))
def test_server_garbage_gives_only_http_answers(garbage: bytes, prefix: bytes) -> None:
    out = asyncio.run(serve([prefix + garbage]))
    assert out == b"" or out.startswith(b"HTTP/1.1 "), out[:200]


URL = MeekUrl.parse("http://meek.example/")


async def client_read(chunks: list[bytes]) -> bytes:
    conn = HttpClientConnection()
    conn.connection_made(FakeWriter())  # type: ignore[arg-type]
    exchange = asyncio.ensure_future(conn.round_trip(wire.Requests(URL, "0" * 32).post(b""), 5.0))
    await asyncio.sleep(0)  # the request is written; the answer arrives chunk by chunk, then the end
    for chunk in chunks:
        conn.data_received(chunk)
        await asyncio.sleep(0)
    if not exchange.done():
        conn.eof_received()
    return (await exchange).body


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=5000), chunked=st.booleans(), points=cuts)
def test_client_reads_the_same_body_however_chunked(body: bytes, chunked: bool, points: list[int]) -> None:
    if chunked:
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        raw += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in split(body, points) if p) + b"0\r\n\r\n"
    else:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert asyncio.run(client_read(split(raw, points))) == body


@settings(max_examples=80, deadline=None)
@given(garbage=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n"]))
def test_client_garbage_gives_only_connection_errors(garbage: bytes, prefix: bytes) -> None:
    with contextlib.suppress(ExchangeFailed, ConnectionError):
        asyncio.run(client_read([prefix + garbage]))
