"""The obfs4proxy runner works (server side prints SMETHOD with the obfs4 cert)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import need_binary
from tests.peers.managed import echo_server, run_managed


async def test_obfs4proxy_server_starts(tmp_path: Path) -> None:
    binary = need_binary("obfs4proxy")
    server, port = await echo_server()
    env = {
        "TOR_PT_SERVER_TRANSPORTS": "obfs4",
        "TOR_PT_SERVER_BINDADDR": "obfs4-127.0.0.1:0",
        "TOR_PT_ORPORT": f"127.0.0.1:{port}",
    }
    async with run_managed(binary, env, state_dir=tmp_path) as proxy:
        assert "cert" in proxy.args("obfs4")
        assert proxy.address("obfs4")[1] > 0
    server.close()
