"""obfs4proxy 0.0.14's meek_lite client (PT 1.0 managed, driven as tor drives it) against our server:
plain http, https with a test CA (SSL_CERT_FILE, empty SSL_CERT_DIR), and with a front."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.transports.meek import MeekServer, ServerOptions
from tests.conftest import need_binary
from tests.peers.certs import make_test_ca
from tests.peers.managed import echo_handler, run_managed
from tests.peers.obfs4proxy import echo_roundtrip

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

Row = tuple[float, str, str, int, int]


@contextlib.asynccontextmanager
async def our_server(options: ServerOptions) -> AsyncIterator[tuple[int, list[Row]]]:
    server = MeekServer(options)
    log: list[Row] = []
    server.request_log = lambda method, sid, size, status: log.append((time.monotonic(), method, sid, size, status))

    def app() -> asyncio.BaseProtocol:
        loop = asyncio.get_running_loop()
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), echo_handler, loop=loop)

    listener = await server.listen(app, Address("127.0.0.1", 0))
    try:
        yield listener.sockets[0].getsockname()[1], log
    finally:
        listener.close()


@contextlib.asynccontextmanager
async def obfs4proxy_meek_lite(state: Path, extra_env: dict[str, str] | None = None) -> AsyncIterator[tuple[str, int]]:
    binary = need_binary("obfs4proxy")
    env = {"TOR_PT_CLIENT_TRANSPORTS": "meek_lite", **(extra_env or {})}
    state.mkdir(parents=True, exist_ok=True)
    async with run_managed(binary, env, state_dir=state) as proxy:
        yield proxy.address("meek_lite")


async def tor_socks(socks: tuple[str, int], args: dict[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """SOCKS5 with the args as tor writes them for a bridge line (only ``\\`` and ``;`` escaped: obfs4proxy
    refuses ``\\:``), password ``\\x00``."""
    from python_socks import ProxyType
    from python_socks.async_.asyncio import Proxy

    user = ";".join(f"{k}={v.replace(chr(92), chr(92) * 2).replace(';', chr(92) + ';')}" for k, v in args.items())
    proxy = Proxy(ProxyType.SOCKS5, socks[0], socks[1], username=user[:255], password=user[255:] or "\x00")
    sock = await proxy.connect("192.0.2.20", 80, timeout=30)
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def _echo_through(socks: tuple[str, int], args: dict[str, str], size: int) -> float:
    started = time.monotonic()
    reader, writer = await tor_socks(socks, args)
    try:
        await echo_roundtrip(reader, writer, size, timeout=60)
    finally:
        writer.close()
    return started


async def test_plain_http_echo_session_ids_and_polls(tmp_path: Path) -> None:
    async with our_server(ServerOptions()) as (port, log), obfs4proxy_meek_lite(tmp_path) as socks:
        url = f"http://127.0.0.1:{port}/"
        await _echo_through(socks, {"url": url}, 1 << 20)
        await _echo_through(socks, {"url": url}, 4)
        # An idle connection: its polls back off 100 ms x 1.5^n.
        _reader, writer = await tor_socks(socks, {"url": url})
        opened = time.monotonic()
        await asyncio.sleep(1.3)
        writer.close()
    sids = [row[2] for row in log]
    assert all(re.fullmatch(r"[0-9a-f]{32}", sid) for sid in sids)
    assert len(set(sids)) == 3
    assert all(row[4] == 200 for row in log)
    assert max(row[3] for row in log) <= 65536
    idle = [row[0] for row in log if row[2] == sids[-1]]
    assert idle[0] - opened <= 0.25, "first poll should come about 110 ms after SOCKS success"
    gaps = [b - a for a, b in itertools.pairwise(idle)]
    for gap, want in zip(gaps, [0.15, 0.225, 0.3375], strict=False):
        assert want - 0.02 <= gap <= want + 0.1, gaps


async def test_https_with_test_ca_and_front(tmp_path: Path) -> None:
    ca = make_test_ca(tmp_path / "ca")
    options = ServerOptions(cert=str(ca.cert), key=str(ca.key))
    async with our_server(options) as (port, log), obfs4proxy_meek_lite(tmp_path / "pt", ca.env()) as socks:
        await _echo_through(socks, {"url": f"https://localhost:{port}/"}, 1 << 20)
        await _echo_through(socks, {"url": "https://meek.invalid:9999/x", "front": f"localhost:{port}"}, 1 << 20)
    assert len({row[2] for row in log}) == 2


async def test_https_without_the_ca_closes_the_stream(tmp_path: Path) -> None:
    ca = make_test_ca(tmp_path / "ca")
    other = make_test_ca(tmp_path / "other")
    options = ServerOptions(cert=str(ca.cert), key=str(ca.key))
    async with our_server(options) as (port, log), obfs4proxy_meek_lite(tmp_path / "pt", other.env()) as socks:
        reader, writer = await tor_socks(socks, {"url": f"https://localhost:{port}/"})
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    assert log == []
