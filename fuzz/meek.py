"""Fuzz targets for meek's HTTP handling, on both sides.

* ``meek-server``: raw bytes (in chunks chosen by the input) into one accepted connection's HTTP
  handling and the session table behind it (keep-alive, pipelining, ``X-Session-Id``, bodies,
  ``Expect: 100-continue``, HEAD...).  The connection must end on its own, raising nothing, and
  every byte it writes must be one of meek-server's answers (section 2.2 of the wire notes): HTTP
  responses with the statuses meek-server gives, whose bodies are its canned texts or upstream
  bytes (here a run of ``u``);
* ``meek-client``: raw bytes as the server's (or the front's) answer to the client's POSTs over one
  keep-alive connection: only ``ExchangeFailed`` or ``RemoteProtocolError`` may come out.

Both run on one event loop per process, with no real time waits (turnaround and dial wait 0).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Any, cast

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.meek import wire
from ptdispatch.transports.meek.http import ExchangeFailed, HttpClientConnection
from ptdispatch.transports.meek.options import MeekUrl, ServerOptions
from ptdispatch.transports.meek.server import HttpConnection, MeekServer, Tuning
from ptdispatch.transports.meek.session import SessionTable

from .support import Input, chunks, target

STATUSES = {b"100", b"200", b"400", b"404", b"413", b"431", b"500", b"501"}
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_UPSTREAM = 0x75  # b"u": what the fake application sends back
LIMIT = 2.0
"""Seconds one input may take on the loop before it counts as a hang."""

_loop: asyncio.AbstractEventLoop | None = None


def _run(coro: Any) -> Any:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


class _Writer:
    """What HttpConnection uses of a StreamWriter (and of its transport)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.transport = self

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 40000) if name == "peername" else default


class _App(asyncio.Protocol):
    """The upstream: answers each body with ``len % 5000`` bytes of ``u`` (chunked above 2048)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(bytes([_UPSTREAM]) * (len(data) % 5000))
        if data[:1] == b"!":
            self.transport.close()


_SERVER = MeekServer(
    ServerOptions(), Tuning(staleness=60.0, read_timeout=LIMIT, turnaround=0.0, dial_wait=0.0, rst_avoidance=0.0)
)
"""A real server object (never listening): what each connection reads of its server is what it would be."""


async def _serve(pieces: list[bytes]) -> bytes:
    reader = asyncio.StreamReader()
    writer = _Writer()
    table = SessionTable(_App, cap=3, staleness=_SERVER.tuning.staleness)
    conn = HttpConnection(_SERVER, table, reader, cast(asyncio.StreamWriter, writer))

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        async with asyncio.timeout(LIMIT):
            await conn.run()
    except TimeoutError:
        raise AssertionError("meek-server: the connection did not end") from None
    finally:
        feeder.cancel()
        table.close()
        await asyncio.sleep(0)
    assert writer.closed, "meek-server: the connection was left open"
    return bytes(writer.out)


def check_answers(out: bytes) -> None:
    """Everything written is meek-server's answers: status lines we give, nothing else."""
    if not out:
        return
    assert out.startswith(b"HTTP/1.1 "), f"meek-server wrote {out[:40]!r}"
    for status in _STATUS.findall(out):
        assert status in STATUSES, f"meek-server answered {status!r}"


@target("meek-server")
def meek_server(data: bytes) -> None:
    inp = Input(data)
    seed = inp.byte()
    check_answers(_run(_serve(chunks(inp.rest(), seed))))


_URL = MeekUrl.parse("http://meek.example/")


async def _client(pieces: list[bytes], exchanges: int) -> None:
    conn = HttpClientConnection()
    conn.connection_made(cast(asyncio.Transport, _Writer()))
    waiting, ended = deque(pieces), False
    for i in range(exchanges):
        body = bytes(i % 3) * 10
        exchange = asyncio.ensure_future(conn.round_trip(wire.Requests(_URL, "fuzzsession0").post(body), LIMIT))
        await asyncio.sleep(0)  # the request is written; the answer arrives piece by piece, then the end
        while not exchange.done():
            if waiting:
                conn.data_received(waiting.popleft())
            elif not ended:
                ended = True
                conn.eof_received()
                conn.connection_lost(None)
            await asyncio.sleep(0)
        try:
            exchange.result()
        except (ExchangeFailed, RemoteProtocolError):
            return
        if not conn.reusable:
            return


@target("meek-client")
def meek_client(data: bytes) -> None:
    inp = Input(data)
    seed, exchanges = inp.byte(), 1 + inp.byte() % 4
    _run(_client(chunks(inp.rest(), seed), exchanges))
