"""A fleet on loopback: HAProxy (mode tcp) in front of two ptdispatch servers that share one obfs4
identity (a copied state directory), one shadow password and one Redis replay store.

One bridge line (HAProxy's address + the shared cert) reaches both nodes; a client handshake
replayed to the other node is refused; stopping a node leaves new connections working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.net.addr import Address
from tests.conftest import need_binary
from tests.peers.dispatcher import Dispatcher, client_hello, running, send_raw, stop
from tests.peers.managed import echo_server
from tests.peers.procs import free_port, stop_process
from tests.peers.redis import redis_server

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]
SHADOW = {"password": "fleet password", "cipherName": "chacha20-ietf-poly1305"}


def node(state: Path, target: int, redis_url: str):  # type: ignore[no-untyped-def]
    return running(
        "-server", "-transports", "obfs4,shadow", "-bindaddr", "obfs4-127.0.0.1:0,shadow-127.0.0.1:0",
        "-target", f"127.0.0.1:{target}", "-state", str(state), "-options", json.dumps({"shadow": SHADOW}),
        "-replayStore", redis_url, "-workers", "2", "-ipcLogLevel", "INFO",
    )  # fmt: skip


def haproxy_config(front: dict[str, int], nodes: list[Dispatcher]) -> str:
    lines = [
        "global", "  maxconn 1000",
        "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 30s", "  timeout server 30s",
        "  retries 3", "  option redispatch",
    ]  # fmt: skip
    for name, port in front.items():
        lines += [f"listen {name}", f"  bind 127.0.0.1:{port}", "  balance roundrobin"]
        for i, server in enumerate(nodes):
            host, sport = server.method("SMETHOD", name)
            lines.append(f"  server node{i} {host}:{sport} check inter 500ms fall 1 rise 1")
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def haproxy(config: Path) -> AsyncIterator[None]:
    proc = subprocess.Popen(
        [need_binary("haproxy"), "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await asyncio.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield
    finally:
        stop_process(proc)


async def roundtrip(transport: str, address: tuple[str, int], options: dict[str, str]) -> None:
    destination = Address("127.0.0.1", 9) if transport == "shadow" else None
    reader, writer = await api.open_connection(transport, address, options, destination=destination)
    blob = os.urandom(10_000)
    writer.write(blob)
    assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
    writer.close()


def shadow_first_flight() -> bytes:
    engine = api.client_transport("shadow", SHADOW).new_engine(Address("127.0.0.1", 9))  # type: ignore[attr-defined]
    engine.send_data(b"hello")
    return bytes(engine.data_to_send())


async def test_fleet_behind_haproxy(tmp_path: Path) -> None:
    need_binary("haproxy")
    echo, eport = await echo_server()
    with redis_server(tmp_path / "redis") as redis:
        async with node(tmp_path / "a", eport, redis.url) as a:
            (tmp_path / "b").mkdir()
            shutil.copy(tmp_path / "a" / "obfs4_state.json", tmp_path / "b" / "obfs4_state.json")  # the state to copy
            async with node(tmp_path / "b", eport, redis.url) as b:
                cert = a.smethod_args("obfs4")
                assert b.smethod_args("obfs4") == cert  # one identity, one bridge line
                front = {"obfs4": free_port(), "shadow": free_port()}
                config = tmp_path / "haproxy.cfg"
                config.write_text(haproxy_config(front, [a, b]))
                async with haproxy(config):
                    bridge = ("127.0.0.1", front["obfs4"])
                    await asyncio.gather(*(roundtrip("obfs4", bridge, cert) for _ in range(8)))
                    await asyncio.gather(
                        *(roundtrip("shadow", ("127.0.0.1", front["shadow"]), SHADOW) for _ in range(8))
                    )
                    for server in (a, b):
                        await server.more_lines(0.3)
                        assert any(": obfs4: connection from" in line for line in server.lines)
                        assert any(": shadow: connection from" in line for line in server.lines)

                    # A handshake seen by node a is refused by node b (through Redis).
                    hello = client_hello(a)
                    assert await send_raw(a.method("SMETHOD", "obfs4"), hello)
                    assert not await send_raw(b.method("SMETHOD", "obfs4"), hello)
                    flight = shadow_first_flight()
                    assert await send_raw(a.method("SMETHOD", "shadow"), flight)
                    assert not await send_raw(b.method("SMETHOD", "shadow"), flight)
                    await b.more_lines(0.3)
                    assert any("replayed client handshake" in line for line in b.lines)
                    assert any("repeated salt" in line for line in b.lines)

                    # Node a goes away: new connections through the same bridge line still work.
                    await stop(a.process)
                    await asyncio.sleep(1.0)
                    for _ in range(6):
                        await roundtrip("obfs4", bridge, cert)
                        await roundtrip("shadow", ("127.0.0.1", front["shadow"]), SHADOW)
    echo.close()
