"""The Python API: transports without the IPC layer.

>>> reader, writer = await ptdispatch.open_connection("obfs4", "192.0.2.1:443", {"cert": "...", "iat-mode": "0"})
>>> server = await ptdispatch.start_server(handle, "obfs4", "127.0.0.1", 0, state_dir="/var/lib/pt")

:func:`connect` and :func:`listen` are the protocol-level forms the dispatcher itself uses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from .errors import OptionsError
from .net.addr import Address, parse_hostport
from .net.upstream import Dialer, OutboundBind, UpstreamProxy
from .transports import registry
from .transports.adapter import AppFactory, ErrorCallback
from .transports.base import ClientTransport, RawOptions, ServerContext, ServerTransport, Timeouts, TransportSpec

__all__ = [
    "Address",
    "Timeouts",
    "client_transport",
    "connect",
    "get_spec",
    "listen",
    "open_connection",
    "server_transport",
    "start_server",
]

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
STREAM_LIMIT = 2**16


def get_spec(name: str) -> TransportSpec:
    spec = registry.lookup(name)
    if spec is None:
        raise OptionsError(name, f"unknown transport {name!r}; known: {', '.join(registry.names())}")
    return spec


def client_transport(name: str, options: RawOptions) -> ClientTransport:
    """Validate client ``options`` for transport ``name`` (raises ``OptionsError``)."""
    return get_spec(name).make_client(options)


def server_transport(
    name: str, options: RawOptions, state_dir: str | os.PathLike[str] = ".", *, timeouts: Timeouts | None = None
) -> ServerTransport:
    """Validate server ``options`` and load or create its state (raises ``OptionsError``).

    ``timeouts`` replaces the transport's own handshake timeout and close delays (which match the
    reference implementations; how each transport reads them is in its docs)."""
    return get_spec(name).make_server(options, ServerContext(state_dir=Path(state_dir), timeouts=timeouts))


def _address(value: str | Address | tuple[str, int]) -> Address:
    return parse_hostport(value) if isinstance(value, str) else Address(*value)


async def connect(
    client: ClientTransport,
    address: str | Address | tuple[str, int],
    app_factory: AppFactory,
    *,
    destination: Address | None = None,
    proxy: UpstreamProxy | None = None,
    connect_timeout: float = 30.0,
    bind: OutboundBind | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Dial ``address``, run the transport handshake, and hand the plaintext side to ``app_factory()``.

    ``proxy`` carries the outgoing connections, ``bind`` chooses the source address of direct ones
    (tor's outbound bind addresses).  This is :meth:`ClientTransport.dial` with a
    :class:`~ptdispatch.net.upstream.Dialer` built from those arguments.
    """
    dialer = Dialer(proxy=proxy, bind=bind, timeout=connect_timeout)
    return await client.dial(_address(address), app_factory, destination=destination, dialer=dialer)


async def listen(
    server: ServerTransport,
    host: str,
    port: int,
    app_factory: AppFactory,
    *,
    on_error: ErrorCallback | None = None,
) -> asyncio.Server:
    """Accept transport connections on ``host:port``; each gets ``app_factory()`` after its handshake."""
    srv = await server.listen(app_factory, Address(host, port), on_error=on_error)
    sockets = getattr(srv, "sockets", ())
    if sockets:
        sockname = sockets[0].getsockname()
        server.bound(Address(sockname[0], sockname[1]))
    return srv


async def open_connection(
    transport: str,
    address: str | Address | tuple[str, int],
    options: Mapping[str, object] | None = None,
    *,
    destination: str | Address | tuple[str, int] | None = None,
    proxy: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like :func:`asyncio.open_connection`, through transport ``transport``."""
    client = client_transport(transport, options or {})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    dest = _address(destination) if destination is not None else None
    upstream = UpstreamProxy.parse(proxy) if proxy else None
    plain, protocol = await connect(
        client,
        address,
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
        destination=dest,
        proxy=upstream,
    )
    assert isinstance(protocol, asyncio.StreamReaderProtocol)
    return reader, asyncio.StreamWriter(plain, protocol, reader, loop)


async def start_server(
    handler: StreamHandler,
    transport: str,
    host: str,
    port: int,
    options: Mapping[str, object] | None = None,
    *,
    state_dir: str | os.PathLike[str] = ".",
    timeouts: Timeouts | None = None,
) -> asyncio.Server:
    """Like :func:`asyncio.start_server`, accepting connections of transport ``transport``
    (``timeouts``: see :func:`server_transport`)."""
    server = server_transport(transport, options or {}, state_dir, timeouts=timeouts)
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop), handler, loop=loop)

    return await listen(server, host, port, factory)
