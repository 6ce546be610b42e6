"""obfs4proxy in either role, for any transport it speaks, on top of :mod:`tests.peers.managed`.

* :func:`obfs4proxy_server`: obfs4proxy as a bridge (``TOR_PT_SERVER_TRANSPORTS``) forwarding to an
  ORPort of our choice; yields ``(host, port, smethod_args)``.
* :func:`obfs4proxy_client`: obfs4proxy as tor's client PT; yields its SOCKS5 address for the
  transport.  :func:`socks5_connect` then opens a stream through it the way tor does (method 00 when
  there are no per-connection arguments, 02 with ``k=v;k=v`` as the user name otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

import ptdispatch
from ptdispatch.ipc.args import escape
from tests.conftest import need_binary
from tests.peers.managed import echo_handler, run_managed


def _escape(value: str) -> str:
    """Escape a per-connection or server-option value (PT 1.0: backslash before ``\\ = ; :``)."""
    return escape(value, "=;:")


def socks_args(args: Mapping[str, str]) -> str:
    """``k=v;k=v``, as tor writes per-connection arguments into the SOCKS user name."""
    return ";".join(f"{key}={_escape(value)}" for key, value in args.items())


@contextlib.asynccontextmanager
async def obfs4proxy_server(
    transport: str,
    orport: int,
    state_dir: Path,
    options: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[str, int, dict[str, str]]]:
    """obfs4proxy serving ``transport`` on an ephemeral loopback port, relaying to ``127.0.0.1:orport``."""
    binary = need_binary("obfs4proxy")
    env = {
        "TOR_PT_SERVER_TRANSPORTS": transport,
        "TOR_PT_SERVER_BINDADDR": f"{transport}-127.0.0.1:0",
        "TOR_PT_ORPORT": f"127.0.0.1:{orport}",
    }
    if options:
        env["TOR_PT_SERVER_TRANSPORT_OPTIONS"] = ";".join(
            f"{transport}:{key}={_escape(value)}" for key, value in options.items()
        )
    async with run_managed(binary, env, state_dir=state_dir) as proxy:
        host, port = proxy.address(transport)
        yield host, port, proxy.args(transport)


@contextlib.asynccontextmanager
async def obfs4proxy_client(transport: str, state_dir: Path) -> AsyncIterator[tuple[str, int]]:
    """obfs4proxy as a client PT for ``transport``; yields its SOCKS5 listener address."""
    binary = need_binary("obfs4proxy")
    env = {"TOR_PT_CLIENT_TRANSPORTS": transport}
    async with run_managed(binary, env, state_dir=state_dir) as proxy:
        yield proxy.address(transport)


async def socks5_connect(
    socks: tuple[str, int],
    target: tuple[str, int],
    args: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to ``target`` through the SOCKS5 proxy at ``socks`` (a client PT's CMETHOD)."""
    username = password = None
    if args:
        encoded = socks_args(args)
        username, password = encoded[:255], encoded[255:] or "\x00"
    proxy = Proxy(ProxyType.SOCKS5, socks[0], socks[1], username=username, password=password)
    sock = await proxy.connect(target[0], target[1], timeout=timeout)
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def echo_roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int, *, timeout: float = 60.0
) -> None:
    """Write ``size`` random bytes while reading them back from an echo; fail on any difference.

    Does not half-close: obfs4proxy closes both directions as soon as one ends.
    """
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()

    async def produce() -> None:
        left = size
        offset = 0
        while left:
            n = min(left, 1 << 16)
            piece = block[offset : offset + n]
            offset = (offset + n) % len(block)
            if len(piece) < n:
                piece += block[: n - len(piece)]
            sent.update(piece)
            writer.write(piece)
            await writer.drain()
            left -= n

    received = hashlib.sha256()
    async with asyncio.timeout(timeout):
        producer = asyncio.create_task(produce())
        got = 0
        try:
            while got < size:
                data = await reader.read(1 << 20)
                if not data:
                    raise AssertionError(f"echo ended after {got} of {size} bytes")
                received.update(data)
                got += len(data)
        except BaseException:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await producer
            raise
        await producer
    assert got == size, f"echo returned {got} bytes, sent {size}"
    assert received.digest() == sent.digest(), "echoed bytes differ"


Exercise = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _banner_echo(banner: bytes) -> Exercise:
    """An echo handler (the ORPort) that first sends ``banner``, if any."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if banner:
            writer.write(banner)
        await echo_handler(reader, writer)

    return handle


async def _banner_echo_server(banner: bytes) -> tuple[asyncio.Server, int]:
    """A loopback echo server (the ORPort) that first sends ``banner``, if any."""
    server = await asyncio.start_server(_banner_echo(banner), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def via_obfs4proxy_server(
    transport: str,
    state_dir: Path,
    exercise: Exercise,
    *,
    server_options: Mapping[str, str] | None = None,
    client_options: Mapping[str, object] | None = None,
    banner: bytes = b"",
) -> None:
    """Our client (``ptdispatch.open_connection``) -> obfs4proxy server -> echo ORPort.

    ``client_options`` default to the SMETHOD ARGS obfs4proxy printed (obfs4's cert and iat-mode).
    """
    orport_server, orport = await _banner_echo_server(banner)
    try:
        async with obfs4proxy_server(transport, orport, state_dir, server_options) as (host, port, args):
            options = dict(args) if client_options is None else client_options
            reader, writer = await asyncio.wait_for(ptdispatch.open_connection(transport, (host, port), options), 30)
            try:
                await exercise(reader, writer)
            finally:
                writer.close()
    finally:
        orport_server.close()
        await orport_server.wait_closed()


async def via_obfs4proxy_client(
    transport: str,
    state_dir: Path,
    exercise: Exercise,
    *,
    server_options: Mapping[str, object] | None = None,
    client_args: Mapping[str, str] | None = None,
    banner: bytes = b"",
) -> None:
    """obfs4proxy client (SOCKS5, as tor drives it) -> our server (``ptdispatch.start_server``), echoing.

    ``client_args`` are the per-connection arguments tor would send (e.g. obfs4's cert).
    """
    (state_dir / "server").mkdir(exist_ok=True)
    (state_dir / "client").mkdir(exist_ok=True)

    server = await ptdispatch.start_server(
        _banner_echo(banner), transport, "127.0.0.1", 0, server_options, state_dir=state_dir / "server"
    )
    try:
        port = server.sockets[0].getsockname()[1]
        async with obfs4proxy_client(transport, state_dir / "client") as socks:
            reader, writer = await socks5_connect(socks, ("127.0.0.1", port), client_args)
            try:
                await exercise(reader, writer)
            finally:
                writer.close()
    finally:
        server.close()
        await server.wait_closed()
