"""``ptdispatch -generateConfig``: the config pair it writes works as -optionsFile on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_operator_e2e import roundtrip
from tests.peers.dispatcher import run_once, running
from tests.peers.managed import echo_server
from tests.peers.obfs4proxy import socks5_connect
from tests.peers.procs import free_port


@pytest.mark.parametrize(("flag", "name", "prefix"), [
    ("shadow", "shadow", "Shadow"), ("Starbridge", "Starbridge", "Starbridge"), ("replicant", "Replicant", "Replicant"),
])  # fmt: skip
async def test_generated_pair_works(tmp_path: Path, flag: str, name: str, prefix: str) -> None:
    port = free_port()
    code, out, err = await run_once("-generateConfig", "-transport", flag, "-serverIP", f"127.0.0.1:{port}",
                                    "-state", str(tmp_path / "gen"))  # fmt: skip
    assert code == 0 and out == [], (out, err)
    server_file, client_file = (
        tmp_path / "gen" / f"{prefix}ServerConfig.json",
        tmp_path / "gen" / f"{prefix}ClientConfig.json",
    )
    assert str(server_file) in err[0] and str(client_file) in err[0]
    assert server_file.stat().st_mode & 0o777 == 0o600
    client_config = json.loads(client_file.read_text())
    assert client_config["serverAddress"] == f"127.0.0.1:{port}"
    echo, eport = await echo_server()
    async with (
        running("-server", "-transport", name, "-bindaddr", f"{name}-127.0.0.1:{port}", "-target",
                f"127.0.0.1:{eport}", "-state", str(tmp_path / "s"), "-optionsFile", str(server_file)),
        running("-transport", name, "-optionsFile", str(client_file), "-state", str(tmp_path / "c")) as client,
    ):  # fmt: skip
        await roundtrip(*await socks5_connect(client.method("CMETHOD", name), ("127.0.0.1", eport)))
    echo.close()


@pytest.mark.parametrize("argv", [
    ["-generateConfig", "-transport", "obfs4", "-serverIP", "127.0.0.1:1"],
    ["-generateConfig", "-transport", "shadow", "-serverIP", "example.com:1"],
    ["-generateConfig", "-transport", "shadow"],
])  # fmt: skip
async def test_bad_generate_config_is_a_usage_error(argv: list[str]) -> None:
    code, out, err = await run_once(*argv)
    assert code == 64 and out == [] and "usage" in "\n".join(err)
