"""meek's client connections go through the upstream proxy (-proxy), TLS included (microsocks)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import ptdispatch
from ptdispatch.net.addr import Address
from ptdispatch.transports.meek import MeekServer, ServerOptions
from tests.interop.test_upstream_proxy import microsocks
from tests.peers.certs import make_test_ca
from tests.peers.managed import echo_handler

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.mark.parametrize("tls", [False, True])
async def test_meek_through_microsocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool) -> None:
    options = ServerOptions()
    if tls:
        ca = make_test_ca(tmp_path)
        for key, value in ca.env().items():
            monkeypatch.setenv(key, value)
        options = ServerOptions(cert=str(ca.cert), key=str(ca.key))
    server = MeekServer(options)
    seen: list[str] = []
    server.request_log = lambda method, sid, size, status: seen.append(sid)

    def app() -> asyncio.BaseProtocol:
        loop = asyncio.get_running_loop()
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), echo_handler, loop=loop)

    listener = await server.listen(app, Address("127.0.0.1", 0))
    port = listener.sockets[0].getsockname()[1]
    try:
        with microsocks(auth=True) as proxy:
            url = f"{'https' if tls else 'http'}://localhost:{port}/"
            reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url}, proxy=proxy)
            blob = os.urandom(200_000)
            writer.write(blob)
            assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
            writer.close()
    finally:
        listener.close()
    assert seen


async def test_meek_uses_the_proxy_it_is_given() -> None:
    server = MeekServer(ServerOptions())
    listener = await server.listen(asyncio.Protocol, Address("127.0.0.1", 0))
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError):  # a dead proxy: the direct path would have worked
            await ptdispatch.open_connection(
                "meeklite", ("192.0.2.1", 1), {"url": f"http://127.0.0.1:{port}/"}, proxy="socks5://127.0.0.1:9"
            )
    finally:
        listener.close()
