"""Our meek pair over TLS: the test CA through SSL_CERT_FILE, a front, ALPN and bad TLS input."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest

import ptdispatch
from ptdispatch.net.addr import Address
from ptdispatch.transports.meek import MeekServer, ServerOptions
from tests.peers.certs import Authority, make_test_ca
from tests.peers.managed import echo_handler

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


async def _tls_server(ca: Authority) -> tuple[asyncio.Server, int, list[tuple[str, str, int, int]]]:
    server = MeekServer(ServerOptions(cert=str(ca.cert), key=str(ca.key)))
    log: list[tuple[str, str, int, int]] = []
    server.request_log = lambda *row: log.append(row)

    def app() -> asyncio.BaseProtocol:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        return asyncio.StreamReaderProtocol(reader, echo_handler, loop=loop)

    listener = await server.listen(app, Address("127.0.0.1", 0))
    return listener, listener.sockets[0].getsockname()[1], log


async def _echo(options: dict[str, object]) -> None:
    reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), options)
    blob = os.urandom(300_000)
    writer.write(blob)
    assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
    writer.close()


async def test_https_with_the_test_ca(ca: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ca.env().items():
        monkeypatch.setenv(key, value)
    listener, port, log = await _tls_server(ca)
    try:
        await _echo({"url": f"https://localhost:{port}/"})
        await _echo({"url": "https://meek.invalid:9999/x", "front": f"localhost:{port}"})
        await _echo({"url": f"https://127.0.0.1:{port}/", "utls": "HelloChrome_Auto"})
    finally:
        listener.close()
    assert log and all(row[0] == "POST" and len(row[1]) == 32 for row in log)


async def test_https_without_the_ca_fails(ca: Authority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = make_test_ca(tmp_path / "other")
    for key, value in other.env().items():
        monkeypatch.setenv(key, value)
    listener, port, _ = await _tls_server(ca)
    try:
        with pytest.raises(ssl.SSLError):
            await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": f"https://localhost:{port}/"})
    finally:
        listener.close()


async def test_server_picks_http11_when_h2_is_offered(ca: Authority) -> None:
    listener, port, _ = await _tls_server(ca)
    try:
        ctx = ssl.create_default_context(cafile=str(ca.ca))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 200 OK")
        writer.close()
    finally:
        listener.close()


async def test_tls_garbage_leaves_other_sessions_alone(ca: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ca.env().items():
        monkeypatch.setenv(key, value)
    listener, port, _ = await _tls_server(ca)
    try:
        reader, writer = await ptdispatch.open_connection(
            "meeklite", ("192.0.2.1", 1), {"url": f"https://localhost:{port}/"}
        )
        for garbage in (b"\x16\x03\x01\x00\x05hello", os.urandom(3000), b"GET / HTTP/1.1\r\n\r\n"):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(garbage)
            assert await asyncio.wait_for(r.read(), 5) is not None
            w.close()
        writer.write(b"still here")
        assert await asyncio.wait_for(reader.readexactly(10), 10) == b"still here"
        writer.close()
    finally:
        listener.close()
