"""Every transport through its public entry points (``api.listen`` / ``api.connect``) on loopback:
round trips in any chunks, half-close, back-pressure, probes, EOF in the handshake, an engine bug."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.errors import InternalError, RemoteProtocolError
from ptdispatch.transports.base import Engine, EngineServerTransport, ServerTransport
from tests.conformance.pairs import LINGER, PAIRS, pair_ids
from tests.peers.managed import echo_handler


def echo_factory() -> asyncio.BaseProtocol:
    return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=1 << 20), echo_handler)


@contextlib.asynccontextmanager
async def serving(
    pair_id: str,
    tmp_path: Path,
    app_factory: Callable[[], asyncio.BaseProtocol] = echo_factory,
    server: ServerTransport | None = None,
) -> AsyncIterator[tuple[ServerTransport, int, list[Exception]]]:
    errors: list[Exception] = []
    transport = server or PAIRS[pair_id].server(tmp_path)
    listener = await api.listen(transport, "127.0.0.1", 0, app_factory, on_error=errors.append)
    try:
        yield transport, listener.sockets[0].getsockname()[1], errors
    finally:
        listener.close()
        await listener.wait_closed()


async def open_stream(
    pair_id: str, server: ServerTransport, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    plain, protocol = await api.connect(
        PAIRS[pair_id].client(server, port),
        ("127.0.0.1", port),
        lambda: asyncio.StreamReaderProtocol(reader),
        destination=PAIRS[pair_id].destination,
    )
    assert isinstance(protocol, asyncio.StreamReaderProtocol)
    return reader, asyncio.StreamWriter(plain, protocol, reader, loop)


async def read_to_end(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(reader.read(-1), timeout)
    return b""


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def wait_for_errors(errors: list[Exception], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not errors and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("pair_id", pair_ids(test="test_round_trip_in_any_chunks_with_half_close"))
async def test_round_trip_in_any_chunks_with_half_close(pair_id: str, tmp_path: Path) -> None:
    async with serving(pair_id, tmp_path) as (server, port, errors):
        reader, writer = await open_stream(pair_id, server, port)
        blob = os.urandom(300_000)
        pos = 0
        for size in (1, 7, 1500, 65_536, 3, 16_384 + 1, 1 << 20):
            writer.write(blob[pos : pos + size])
            pos += size
            await writer.drain()
        if PAIRS[pair_id].no_half_close:  # the table says why; read the echo back in full instead
            assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
        else:
            writer.write_eof()  # half-close: the echo answers everything, then closes its side
            assert await read_to_end(reader) == blob
        await close(writer)
        assert errors == []


@pytest.mark.parametrize("pair_id", pair_ids(test="test_back_pressure_holds"))
async def test_back_pressure_holds(pair_id: str, tmp_path: Path) -> None:
    received = 0
    sinks: list[asyncio.Transport] = []

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # a slow application
            sinks.append(transport)

        def data_received(self, data: bytes) -> None:
            nonlocal received
            received += len(data)

    async with serving(pair_id, tmp_path, Sink) as (server, port, _):
        _reader, writer = await open_stream(pair_id, server, port)
        chunk = os.urandom(1 << 18)
        written = 0
        blocked = False
        while written < 64 << 20:
            writer.write(chunk)
            written += len(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.3)
            except TimeoutError:
                blocked = True
                break
        assert blocked, "the writer was never paused although the peer stopped reading"
        assert received < written
        sinks[0].resume_reading()
        await asyncio.wait_for(writer.drain(), 20)
        deadline = time.monotonic() + 20
        while received < written and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert received == written
        sinks[0].close()
        await close(writer)


async def probe(port: int, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` on a raw connection; return what came back and when the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    try:
        writer.write(data)
        got = await read_to_end(reader)
        return got, time.monotonic() - began
    finally:
        await close(writer)  # also when the read timed out (no unclosed socket leaks into the next test)


@pytest.mark.parametrize("pair_id", pair_ids(where="handshake", test="test_probe_gets_only_our_errors_and_silence"))
async def test_probe_gets_only_our_errors_and_silence(pair_id: str, tmp_path: Path) -> None:
    pair = PAIRS[pair_id]
    async with serving(pair_id, tmp_path) as (_, port, errors):
        got, elapsed = await probe(port, os.urandom(9000) + pair.probe_suffix)
        await wait_for_errors(errors, 0.5 if pair.probe_answer is not None else 5.0)
    if pair.probe_answer is not None:  # an HTTP server (meek): its answer to a non-meek request
        assert got.startswith(pair.probe_answer), got[:80]
        assert errors == [], errors
        return
    assert errors and all(isinstance(e, RemoteProtocolError) for e in errors), errors
    if not pair.server_speaks_first:
        assert got == b""
    if pair.probe_lingers:
        assert elapsed >= pair.min_linger() * 0.9, f"closed after {elapsed:.2f} s"


@pytest.mark.parametrize(
    "pair_id", pair_ids(where="handshake", test="test_eof_inside_the_handshake_is_a_remote_error_and_closes")
)
async def test_eof_inside_the_handshake_is_a_remote_error_and_closes(pair_id: str, tmp_path: Path) -> None:
    pair = PAIRS[pair_id]
    async with serving(pair_id, tmp_path) as (_, port, errors):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        writer.write(os.urandom(8))
        writer.write_eof()
        got = await read_to_end(reader)  # the peer gave up first: nothing to hide, so no linger (as obfs4proxy)
        elapsed = time.monotonic() - began
        await wait_for_errors(errors, 0.5 if pair.probe_answer is not None else 5.0)
        await close(writer)
    if pair.probe_answer is not None:  # an HTTP server: an incomplete request ends the connection
        assert errors == [] and (got == b"" or got.startswith(pair.probe_answer)), (errors, got[:80])
        assert elapsed < LINGER, f"closed after {elapsed:.2f} s"
        return
    assert len(errors) == 1 and isinstance(errors[0], RemoteProtocolError), errors
    assert elapsed < LINGER, f"closed after {elapsed:.2f} s"


@pytest.mark.parametrize("pair_id", pair_ids(test="test_an_engine_bug_still_lingers"))
async def test_an_engine_bug_still_lingers(pair_id: str, tmp_path: Path) -> None:
    pair = PAIRS[pair_id]
    server = pair.server(tmp_path)
    assert isinstance(server, EngineServerTransport), "rows without an engine mark this test not applicable"
    make = server.new_engine

    def buggy() -> Engine:
        engine = make()

        def receive_data(data: bytes) -> bytes:
            raise ZeroDivisionError("injected")

        engine.receive_data = receive_data  # type: ignore[method-assign]
        return engine

    server.new_engine = buggy  # type: ignore[method-assign]
    async with serving(pair_id, tmp_path, server=server) as (_, port, errors):
        got, elapsed = await probe(port, b"anything at all")
        await wait_for_errors(errors)
    assert len(errors) == 1 and isinstance(errors[0], InternalError), errors
    assert isinstance(errors[0].__cause__, ZeroDivisionError)
    if not pair.server_speaks_first:
        assert got == b""
    assert elapsed >= pair.bug_linger() * 0.9, f"closed after {elapsed:.2f} s"
