"""-proxy: every outgoing transport connection goes through a real upstream proxy on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from python_socks.async_.asyncio import Proxy

from tests.conftest import need_binary
from tests.peers.dispatcher import running
from tests.peers.managed import echo_server
from tests.peers.procs import free_port, process


@contextlib.contextmanager
def microsocks(auth: bool) -> Iterator[str]:
    port = free_port()
    argv = [need_binary("microsocks"), "-i", "127.0.0.1", "-p", str(port)]
    if auth:
        argv += ["-u", "alice", "-P", "s3cret"]
    with process(argv, port):
        yield f"socks5://alice:s3cret@127.0.0.1:{port}" if auth else f"socks5://127.0.0.1:{port}"


@contextlib.contextmanager
def dante(tmp: Path) -> Iterator[str]:
    port = free_port()
    conf = tmp / "danted.conf"
    conf.write_text(
        f"logoutput: stderr\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
        "clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
        "client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n}\n"
        "socks pass {\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect\n}\n"
    )
    with process([need_binary("danted"), "-f", str(conf), "-N", "1", "-p", str(tmp / "danted.pid")], port):
        yield f"socks4a://127.0.0.1:{port}"


@contextlib.contextmanager
def tinyproxy(tmp: Path, auth: bool) -> Iterator[str]:
    port = free_port()
    conf = tmp / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1", "MaxClients 50", "LogLevel Error"]
    if auth:
        lines.append("BasicAuth bob hunter2")
    conf.write_text("\n".join(lines) + "\n")
    with process([need_binary("tinyproxy"), "-d", "-c", str(conf)], port):
        yield f"http://bob:hunter2@127.0.0.1:{port}" if auth else f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def pair_through(proxy: str, tmp: Path) -> AsyncIterator[int]:
    """An echo target behind a plain server; a SOCKS5 client that reaches it via ``proxy``."""
    echo, echo_port = await echo_server()
    try:
        async with running(
            "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", f"127.0.0.1:{echo_port}",
            "-state", str(tmp / "s"), "-ipcLogLevel", "INFO",
        ) as server:  # fmt: skip
            _, sport = server.method("SMETHOD", "plain")
            async with running(
                "-transport", "plain", "-proxy", proxy, "-state", str(tmp / "c"),
                "-options", json.dumps({"serverAddress": f"127.0.0.1:{sport}"}),
            ) as client:  # fmt: skip
                assert client.lines[1] == "PROXY DONE"
                yield client.method("CMETHOD", "plain")[1]
    finally:
        echo.close()


async def through(port: int) -> None:
    sock = await Proxy.from_url(f"socks5://127.0.0.1:{port}").connect("127.0.0.1", 9, timeout=10)
    reader, writer = await asyncio.open_connection(sock=sock)
    blob = os.urandom(300_000)
    writer.write(blob)
    assert await asyncio.wait_for(reader.readexactly(len(blob)), 15) == blob
    writer.close()


@pytest.mark.parametrize("auth", [False, True])
async def test_socks5_upstream(tmp_path: Path, auth: bool) -> None:
    with microsocks(auth) as proxy:
        async with pair_through(proxy, tmp_path) as port:
            await through(port)


async def test_socks4a_upstream(tmp_path: Path) -> None:
    with dante(tmp_path) as proxy:
        async with pair_through(proxy, tmp_path) as port:
            await through(port)


@pytest.mark.parametrize("auth", [False, True])
async def test_http_connect_upstream(tmp_path: Path, auth: bool) -> None:
    with tinyproxy(tmp_path, auth) as proxy:
        async with pair_through(proxy, tmp_path) as port:
            await through(port)


async def test_upstream_refusing_maps_to_a_socks_reply(tmp_path: Path) -> None:
    with microsocks(False) as proxy:
        dead = free_port()
        async with running(
            "-transport", "plain", "-proxy", proxy, "-state", str(tmp_path),
            "-options", json.dumps({"serverAddress": f"127.0.0.1:{dead}"}),
        ) as client:  # fmt: skip
            port = client.method("CMETHOD", "plain")[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x09")
            reply = await asyncio.wait_for(reader.readexactly(12), 10)
            assert reply[:2] == b"\x05\x00" and reply[2] == 5 and reply[3] != 0  # an error reply, not success
            writer.close()
