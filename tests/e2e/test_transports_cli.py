"""Every transport through the real command, ours against ours and against the deployed peers.

These are the paths a parent application uses: a server started with flags, a client started with
flags, and SOCKS5 in front, with the transport's arguments in -options or per connection (method
0x02 ``k=v;k=v``, as tor sends them; method 0x09 JSON, as PT 3.0 defines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import pytest

from ptdispatch.transports import registry
from tests.peers.dispatcher import Dispatcher, running
from tests.peers.managed import echo_server
from tests.peers.obfs4proxy import obfs4proxy_client, obfs4proxy_server, socks5_connect

OBFS = ["obfs4", "obfs2", "obfs3"]
SHADOW = {"password": "e2e password", "cipherName": "chacha20-ietf-poly1305"}


def have(name: str) -> None:
    try:
        registry.lookup(name)
    except ImportError:
        pytest.skip(f"transport {name} is not in this tree")


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int = 300_000) -> None:
    blob = os.urandom(size)
    writer.write(blob)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(size), 30) == blob
    writer.close()


async def our_server(
    name: str, tmp: Path, target: int, options: Mapping[str, object] | None = None
) -> contextlib.AbstractAsyncContextManager[Dispatcher]:
    return running(
        "-server", "-transport", name, "-bindaddr", f"{name}-127.0.0.1:0", "-target", f"127.0.0.1:{target}",
        "-state", str(tmp / f"{name}-server"), "-options", json.dumps({name: options or {}}),
    )  # fmt: skip


@pytest.mark.parametrize("name", ["plain", "shadow", *OBFS])
async def test_ours_to_ours_with_options(tmp_path: Path, name: str) -> None:
    have(name)
    echo, eport = await echo_server()
    extra = SHADOW if name == "shadow" else {}
    async with await our_server(name, tmp_path, eport, extra) as server:
        host, port = server.method("SMETHOD", name)
        options = {**extra, **server.smethod_args(name), "serverAddress": f"{host}:{port}"}
        async with running("-transport", name, "-options", json.dumps(options), "-state", str(tmp_path / "c")) as c:
            await roundtrip(*await socks5_connect(c.method("CMETHOD", name), ("127.0.0.1", eport)))
    echo.close()


async def test_obfs4_args_per_connection_tor_style(tmp_path: Path) -> None:
    """No -options: the cert comes in the SOCKS5 user name, CONNECT names the bridge (as tor does)."""
    have("obfs4")
    echo, eport = await echo_server()
    async with await our_server("obfs4", tmp_path, eport) as server:
        bridge = server.method("SMETHOD", "obfs4")
        args = server.smethod_args("obfs4")
        async with running("-transport", "obfs4", "-state", str(tmp_path / "c")) as client:
            await roundtrip(*await socks5_connect(client.method("CMETHOD", "obfs4"), bridge, args))
    echo.close()


async def test_obfs4_args_per_connection_json_block(tmp_path: Path) -> None:
    have("obfs4")
    echo, eport = await echo_server()
    async with await our_server("obfs4", tmp_path, eport) as server:
        host, port = server.method("SMETHOD", "obfs4")
        block = json.dumps({**server.smethod_args("obfs4"), "serverAddress": f"{host}:{port}"}).encode()
        async with running("-transport", "obfs4", "-state", str(tmp_path / "c")) as client:
            reader, writer = await asyncio.open_connection(*client.method("CMETHOD", "obfs4"))
            writer.write(b"\x05\x01\x09" + struct.pack(">I", len(block)) + block)
            writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", eport))
            assert await asyncio.wait_for(reader.readexactly(12), 20) == b"\x05\x09\x05\x00\x00\x01" + bytes(6)
            await roundtrip(reader, writer)
    echo.close()


async def test_obfs4_bad_cert_per_connection_is_0x13(tmp_path: Path) -> None:
    have("obfs4")
    async with running("-transport", "obfs4", "-state", str(tmp_path)) as client:
        reader, writer = await asyncio.open_connection(*client.method("CMETHOD", "obfs4"))
        user = b"cert=notbase64!!;iat-mode=0"
        writer.write(b"\x05\x01\x02" + b"\x01" + bytes([len(user)]) + user + b"\x01\x00")
        writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x09")
        assert await asyncio.wait_for(reader.readexactly(14), 10) == b"\x05\x02\x01\x00\x05\x13\x00\x01" + bytes(6)
        writer.close()


async def test_obfs4_bad_cert_in_options_is_cmethod_error(tmp_path: Path) -> None:
    have("obfs4")
    async with running("-transports", "obfs4,plain", "-state", str(tmp_path),
                       "-options", '{"obfs4": {"cert": "short", "iat-mode": "0"}}') as client:  # fmt: skip
        assert client.method("CMETHOD", "plain")
    assert any(e.startswith("CMETHOD-ERROR obfs4 ") for e in client.errors), client.errors


@pytest.mark.interop
@pytest.mark.parametrize("name", OBFS)
async def test_obfs4proxy_client_to_our_server_command(tmp_path: Path, name: str) -> None:
    have(name)
    echo, eport = await echo_server()
    async with await our_server(name, tmp_path, eport) as server:
        bridge = server.method("SMETHOD", name)
        async with obfs4proxy_client(name, tmp_path / "o") as socks:
            await roundtrip(*await socks5_connect(socks, bridge, server.smethod_args(name) or None))
    echo.close()


@pytest.mark.interop
@pytest.mark.parametrize("name", OBFS)
async def test_our_client_command_to_obfs4proxy_server(tmp_path: Path, name: str) -> None:
    have(name)
    echo, eport = await echo_server()
    async with (
        obfs4proxy_server(name, eport, tmp_path / "o") as (host, port, args),
        running("-transport", name, "-state", str(tmp_path / "c")) as client,
    ):
        # tor style: CONNECT names the bridge, arguments per connection
        await roundtrip(*await socks5_connect(client.method("CMETHOD", name), (host, port), args or None))
    echo.close()
