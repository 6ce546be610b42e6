"""obfs4 against obfs4proxy 0.0.14, both ways, through the library API, all iat modes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pytest
from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

import ptdispatch
from ptdispatch.transports.obfs4.state import STATE_FILE, new_state
from tests.conftest import need_binary
from tests.peers.managed import close_stream, echo_server, run_managed
from tests.peers.managed import echo_handler as _echo
from tests.peers.managed import exchange as _exchange

pytestmark = pytest.mark.interop

BIG = 64 * 1024 * 1024


def socks_credentials(args: str) -> tuple[str, str]:
    """Per-connection args as tor sends them: the first 255 bytes as user, the rest (or NUL) as password."""
    return args[:255], args[255:] or "\x00"


def _server_env(or_port: int, iat_mode: int | None) -> dict[str, str]:
    env = {
        "TOR_PT_SERVER_TRANSPORTS": "obfs4",
        "TOR_PT_SERVER_BINDADDR": "obfs4-127.0.0.1:0",
        "TOR_PT_ORPORT": f"127.0.0.1:{or_port}",
    }
    if iat_mode is not None:
        env["TOR_PT_SERVER_TRANSPORT_OPTIONS"] = f"obfs4:iat-mode={iat_mode}"
    return env


def _usable_state(state_dir: Path, iat_mode: int) -> None:
    """Give obfs4proxy a state whose length distribution cannot draw 0 (as our new states are).

    obfs4proxy 0.0.14 panics in iat-mode 2 ("BUG: Write(), iat length was 0") as soon as its
    own seed's distribution draws a 0-byte write, which about one seed in 30 allows: the whole
    process dies mid-transfer. That is obfs4proxy's bug, not a wire incompatibility, so the
    state it would draw for itself is replaced by one that avoids it.
    """
    state = dataclasses.replace(new_state(os.urandom), iat_mode=iat_mode)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).write_text(state.to_json())


async def _client_to_obfs4proxy(tmp_path: Path, iat_mode: int, size: int) -> None:
    binary = need_binary("obfs4proxy")
    if iat_mode == 2:
        _usable_state(tmp_path, iat_mode)
    echo, port = await echo_server()
    try:
        async with run_managed(binary, _server_env(port, iat_mode), state_dir=tmp_path) as proxy:
            args = proxy.args("obfs4")
            assert args["iat-mode"] == str(iat_mode)
            options = {"cert": args["cert"], "iat-mode": args["iat-mode"]}
            reader, writer = await asyncio.wait_for(
                ptdispatch.open_connection("obfs4", proxy.address("obfs4"), options), 15
            )
            await asyncio.wait_for(_exchange(reader, writer, size), 60)
    finally:
        echo.close()
        await echo.wait_closed()


async def _obfs4proxy_to_server(tmp_path: Path, iat_mode: int, size: int) -> None:
    binary = need_binary("obfs4proxy")
    accepted: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await _echo(reader, writer)

    server = await ptdispatch.start_server(
        echo, "obfs4", "127.0.0.1", 0, {"iat-mode": iat_mode}, state_dir=tmp_path / "ours"
    )
    port = server.sockets[0].getsockname()[1]
    state = json.loads((tmp_path / "ours" / "obfs4_state.json").read_text())
    cert = ptdispatch.server_transport("obfs4", {}, tmp_path / "ours").smethod_args()["cert"]
    assert state["iat-mode"] == iat_mode
    try:
        env = {"TOR_PT_CLIENT_TRANSPORTS": "obfs4"}
        async with run_managed(binary, env, state_dir=tmp_path / "theirs") as proxy:
            host, socks_port = proxy.address("obfs4")
            user, password = socks_credentials(f"cert={cert};iat-mode={iat_mode}")
            sock = await Proxy(ProxyType.SOCKS5, host, socks_port, user, password).connect(
                "127.0.0.1", port, timeout=15
            )
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            await asyncio.wait_for(_exchange(reader, writer, size), 60)
    finally:
        server.close()
        for conn in accepted:  # iat-mode 1/2 may still be pacing its last writes: the data was checked
            conn.transport.abort()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports finish closing


@pytest.mark.parametrize("iat_mode", [0, 1, 2])
async def test_our_client_to_obfs4proxy_server(tmp_path: Path, iat_mode: int) -> None:
    await _client_to_obfs4proxy(tmp_path, iat_mode, 300_000)


@pytest.mark.parametrize("iat_mode", [0, 1, 2])
async def test_obfs4proxy_client_to_our_server(tmp_path: Path, iat_mode: int) -> None:
    await _obfs4proxy_to_server(tmp_path, iat_mode, 300_000)


@pytest.mark.slow
async def test_64mib_through_obfs4proxy_server(tmp_path: Path) -> None:
    await _client_to_obfs4proxy(tmp_path, 0, BIG)


@pytest.mark.slow
async def test_64mib_from_obfs4proxy_client(tmp_path: Path) -> None:
    await _obfs4proxy_to_server(tmp_path, 0, BIG)


async def test_state_written_by_obfs4proxy_loads_in_ours(tmp_path: Path) -> None:
    binary = need_binary("obfs4proxy")
    echo, port = await echo_server()
    try:
        async with run_managed(binary, _server_env(port, None), state_dir=tmp_path) as proxy:
            their_cert = proxy.args("obfs4")["cert"]
    finally:
        echo.close()
        await echo.wait_closed()
    their_bridge_line = (tmp_path / "obfs4_bridgeline.txt").read_text()
    ours = ptdispatch.server_transport("obfs4", {}, tmp_path)
    assert ours.smethod_args() == {"cert": their_cert, "iat-mode": "0"}
    assert (tmp_path / "obfs4_bridgeline.txt").read_text() == their_bridge_line


async def test_state_written_by_us_loads_in_obfs4proxy(tmp_path: Path) -> None:
    binary = need_binary("obfs4proxy")
    ours = ptdispatch.server_transport("obfs4", {"iat-mode": "1"}, tmp_path)
    our_bridge_line = (tmp_path / "obfs4_bridgeline.txt").read_text()
    echo, port = await echo_server()
    try:
        async with run_managed(binary, _server_env(port, None), state_dir=tmp_path) as proxy:
            assert proxy.args("obfs4") == ours.smethod_args()
            reader, writer = await asyncio.wait_for(
                ptdispatch.open_connection("obfs4", proxy.address("obfs4"), ours.smethod_args()), 15
            )
            await asyncio.wait_for(_exchange(reader, writer, 10_000), 30)
    finally:
        echo.close()
        await echo.wait_closed()
    assert (tmp_path / "obfs4_bridgeline.txt").read_text() == our_bridge_line


async def test_our_paranoid_client_survives_zero_lengths(tmp_path: Path) -> None:
    """Against a bridge whose length distribution contains 0 (obfs4proxy's own iat-mode 2 client
    and server panic there, so the bridge runs iat-mode 0), our iat-mode 2 client just writes;
    the keys are given as server options."""
    binary = need_binary("obfs4proxy")
    seed = "823d5a90015ba308cb254484e57b3b0c3f88629d66d431d5"  # its distribution contains 0
    keys = f"node-id={os.urandom(20).hex()};obfs4:private-key={os.urandom(32).hex()};obfs4:drbg-seed={seed}"
    echo, port = await echo_server()
    env = _server_env(port, 0)
    env["TOR_PT_SERVER_TRANSPORT_OPTIONS"] += f";obfs4:{keys}"
    try:
        async with run_managed(binary, env, state_dir=tmp_path) as proxy:
            options = {"cert": proxy.args("obfs4")["cert"], "iat-mode": "2"}
            reader, writer = await asyncio.wait_for(
                ptdispatch.open_connection("obfs4", proxy.address("obfs4"), options), 15
            )
            for _ in range(20):
                await asyncio.wait_for(_exchange_once(reader, writer, os.urandom(3000)), 20)
            await close_stream(reader, writer)
    finally:
        echo.close()
        await echo.wait_closed()


async def _exchange_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    assert await reader.readexactly(len(data)) == data
