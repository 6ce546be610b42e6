"""``plain``: the identity transport (tests, and the benchmark's baseline).

Its client and server hand the application the socket's own transport: no engine runs, so a plain
connection costs what the event loop's own sockets cost (issue 12: through the engine adapter a
plain server made 0.73x the floor row's connections per CPU-second, without it 1.08x).  Once a
connection has carried 256 KiB one way, the relay between its two sockets moves into the kernel
(:mod:`ptdispatch.net.kernel`, ``splice(2)``): bulk bytes no longer pass through Python.
"""

from __future__ import annotations

import asyncio
import socket

from ..net.accept import create_server
from ..net.addr import Address
from ..net.upstream import DIRECT, Dialer
from .adapter import AppFactory, ErrorCallback
from .base import ClientTransport, RawOptions, ServerContext, ServerTransport, TransportSpec


class PlainClient(ClientTransport):
    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        return await dialer.create_connection(app_factory, address)


class PlainServer(ServerTransport):
    async def listen(
        self,
        app_factory: AppFactory,
        where: Address | socket.socket,
        *,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Server:
        return await create_server(app_factory, where)


def _client(raw: RawOptions) -> PlainClient:
    return PlainClient()


def _server(raw: RawOptions, ctx: ServerContext) -> PlainServer:
    return PlainServer()


SPEC = TransportSpec(name="plain", client=_client, server=_server, client_keys=frozenset(), server_keys=frozenset())
