"""The asyncio SOCKS5 frontend in-process: timeouts that would be slow through the real command."""

from __future__ import annotations

import asyncio

import pytest

from ptdispatch.config import LogLevel
from ptdispatch.events import ConnectionTracker, EventLog
from ptdispatch.frontends import dialer
from ptdispatch.frontends.socks5 import server as socks_server
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.transports import registry


async def start(monkeypatch: pytest.MonkeyPatch, **timeouts: float) -> tuple[asyncio.AbstractServer, int]:
    for name, value in timeouts.items():
        monkeypatch.setattr(socks_server, name, value)
    spec = registry.lookup("plain")
    assert spec is not None
    log = EventLog(Reporter(level=LogLevel.NONE))
    method = dialer.ClientMethod("plain", spec, {}, None, log, ConnectionTracker())
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_json_block_timeout_replies_0x11(monkeypatch: pytest.MonkeyPatch) -> None:
    srv, port = await start(monkeypatch, ARGS_TIMEOUT=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x09\x00\x00")  # method 0x09, then half a length
    assert await asyncio.wait_for(reader.read(-1), 5) == b"\x05\x09" + bytes([5, 0x11, 0, 1, 0, 0, 0, 0, 0, 0])
    writer.close()
    srv.close()


async def test_handshake_timeout_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    srv, port = await start(monkeypatch, HANDSHAKE_TIMEOUT=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05")
    assert await asyncio.wait_for(reader.read(-1), 5) == b""
    writer.close()
    srv.close()
