"""shadow (cipherName DarkStar), Starbridge and Replicant through the real command.

Each server runs with no key option, so it generates one, keeps it in its state directory and
publishes ``serverPublicKey`` in ``SMETHOD ... ARGS:``; each client is configured with exactly those
ARGS plus ``serverAddress`` (the round trip Operator's configs are meant for).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from python_socks import ProxyError, ProxyTimeoutError

from tests.e2e.test_udp_e2e import exchange, source, spawn, udp_echo, until_connected
from tests.peers.dispatcher import Dispatcher, running
from tests.peers.managed import echo_server
from tests.peers.obfs4proxy import socks5_connect

CASES: dict[str, tuple[str, dict[str, object]]] = {
    "shadow-darkstar": ("shadow", {"cipherName": "DarkStar"}),
    "Starbridge": ("Starbridge", {}),
    "Replicant": ("Replicant", {"transport": "Replicant"}),
}


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int = 200_000) -> None:
    blob = os.urandom(size)
    writer.write(blob)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(size), 30) == blob
    writer.close()


def server_cmd(name: str, state: Path, target: int, options: dict[str, object], mode: str = "socks5") -> list[str]:
    return [
        "-server", "-transport", name, "-mode", mode, "-bindaddr", f"{name}-127.0.0.1:0",
        "-target", f"127.0.0.1:{target}", "-state", str(state), "-options", json.dumps(options),
        "-ipcLogLevel", "INFO",
    ]  # fmt: skip


def client_options(server: Dispatcher, name: str) -> dict[str, object]:
    host, port = server.method("SMETHOD", name)
    return {**server.smethod_args(name), "serverAddress": f"{host}:{port}"}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["socks5", "transparent-TCP"])
async def test_tcp_modes(tmp_path: Path, case: str, mode: str) -> None:
    name, options = CASES[case]
    echo, eport = await echo_server()
    async with running(*server_cmd(name, tmp_path / "s", eport, options)) as server:
        args = server.smethod_args(name)
        assert "serverPublicKey" in args and len(args["serverPublicKey"]) == 88
        assert any("bound address" in line for line in server.lines), server.lines  # the LOG about the SID
        opts = json.dumps(client_options(server, name))
        async with running("-transport", name, "-mode", mode, "-options", opts, "-state", str(tmp_path / "c")) as c:
            where = c.method("CMETHOD", name)
            for _ in range(2):
                if mode == "socks5":
                    await roundtrip(*await socks5_connect(where, ("127.0.0.1", eport)))
                else:
                    await roundtrip(*await asyncio.open_connection(*where))
    echo.close()


@pytest.mark.parametrize("case", CASES)
async def test_transparent_udp(tmp_path: Path, case: str) -> None:
    name, options = CASES[case]
    with udp_echo() as eport:
        server = await spawn(*server_cmd(name, tmp_path / "s", eport, options, "transparent-UDP"))
        client = None
        try:
            await server.read_until("SMETHODS DONE")
            words = server.first("SMETHOD")
            args = dict(item.split("=", 1) for item in words[3].removeprefix("ARGS:").split(","))
            opts = json.dumps({**args, "serverAddress": words[2]})
            client = await spawn("-client", "-transport", name, "-mode", "transparent-UDP", "-options", opts,
                                 "-state", str(tmp_path / "c"))  # fmt: skip
            await client.read_until("CMETHODS DONE")
            host, _, port = client.first("CMETHOD")[3].rpartition(":")
            sock = source()
            try:
                await until_connected(sock, (host, int(port)), b"probe")
                await exchange(sock, (host, int(port)), [os.urandom(1200) for _ in range(50)], 8)
            finally:
                sock.close()
        finally:
            if client is not None:
                await client.stop()
            await server.stop()


async def test_server_restart_keeps_its_key(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    state = tmp_path / "s"
    async with running(*server_cmd("Starbridge", state, eport, {})) as first:
        before = first.smethod_args("Starbridge")
    async with running(*server_cmd("Starbridge", state, eport, {})) as second:
        assert second.smethod_args("Starbridge") == before
        host, port = second.method("SMETHOD", "Starbridge")
        opts = json.dumps({**before, "serverAddress": f"{host}:{port}"})
        async with running("-transport", "Starbridge", "-options", opts, "-state", str(tmp_path / "c")) as c:
            await roundtrip(*await socks5_connect(c.method("CMETHOD", "Starbridge"), ("127.0.0.1", eport)))
    echo.close()


async def test_wrong_key_client_fails_and_others_work(tmp_path: Path) -> None:
    echo, eport = await echo_server()
    async with (
        running(*server_cmd("shadow", tmp_path / "s", eport, {"cipherName": "darkstar"})) as server,
        running(*server_cmd("shadow", tmp_path / "other", eport, {"cipherName": "DARKSTAR"})) as other,
    ):
        good = client_options(server, "shadow")
        wrong = {**good, "serverPublicKey": other.smethod_args("shadow")["serverPublicKey"]}
        async with (
            running("-transport", "shadow", "-options", json.dumps(good), "-state", str(tmp_path / "c1")) as c1,
            running(
                "-transport",
                "shadow",
                "-options",
                json.dumps(wrong),
                "-state",
                str(tmp_path / "c2"),
                env={"PTDISPATCH_SHUTDOWN_GRACE": "0.5"},
            ) as c2,
        ):
            # the server stays silent (as to a prober), so the client only sees its own timeout
            with pytest.raises((ProxyError, ProxyTimeoutError)):
                await socks5_connect(c2.method("CMETHOD", "shadow"), ("127.0.0.1", eport), timeout=5)
            await roundtrip(*await socks5_connect(c1.method("CMETHOD", "shadow"), ("127.0.0.1", eport)))
    echo.close()


async def test_replicant_unknown_toneburst_is_cmethod_error(tmp_path: Path) -> None:
    bad = json.dumps({"toneburst": {"type": "whalesong", "mode": "SMTPClient"}, "polish": {"serverPublicKey": "x"}})
    async with running("-transports", "Replicant,plain", "-options", bad, "-state", str(tmp_path)) as client:
        assert client.method("CMETHOD", "plain")
    errors = [line for line in client.errors if line.startswith("CMETHOD-ERROR Replicant ")]  # stderr in PT 3.0
    assert errors and "whalesong" in errors[0] and "supported" in errors[0], client.errors
