"""``plain``: the identity transport (tests, and the benchmark's baseline).

Its client and server hand the application the socket's own transport: no engine runs, so a plain
connection costs what the event loop's own sockets cost (:class:`PlainEngine` remains, for code
that wants an engine that does nothing).
"""

from __future__ import annotations

import asyncio
import socket

from ..net.addr import Address
from ..net.upstream import DIRECT, Dialer
from .adapter import AppFactory, ErrorCallback
from .base import ClientTransport, Engine, RawOptions, ServerContext, ServerTransport, TransportSpec


class PlainEngine(Engine):
    """Bytes pass through unchanged; established from the start."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out: list[bytes] = []

    @property
    def established(self) -> bool:
        return True

    def receive_data(self, data: bytes) -> bytes:
        return data

    def send_data(self, data: bytes) -> None:
        self._out.append(data)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)


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
        loop = asyncio.get_running_loop()
        if isinstance(where, socket.socket):
            return await loop.create_server(app_factory, sock=where)
        return await loop.create_server(app_factory, where.host, where.port)


def _client(raw: RawOptions) -> PlainClient:
    return PlainClient()


def _server(raw: RawOptions, ctx: ServerContext) -> PlainServer:
    return PlainServer()


SPEC = TransportSpec(name="plain", client=_client, server=_server)
