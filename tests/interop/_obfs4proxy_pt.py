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
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

from tests.conftest import need_binary
from tests.peers.managed import run_managed


def _escape(value: str) -> str:
    """Escape a per-connection or server-option value (PT 1.0: backslash before ``\\ = ; :``)."""
    out = []
    for char in value:
        if char in "\\=;:":
            out.append("\\")
        out.append(char)
    return "".join(out)


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
