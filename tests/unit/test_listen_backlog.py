"""Every listener asks for the kernel's largest listen backlog (``net.core.somaxconn``), not
asyncio's 100: a burst of connections past 100 would otherwise lose SYNs and wait out TCP's
retransmission backoff.  ``ss -ltn`` shows a listener's backlog as its Send-Q."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

import ptdispatch
from ptdispatch.net.accept import LISTEN_BACKLOG
from tests.conftest import need_binary
from tests.peers.dispatcher import running


def kernel_cap() -> int:
    return min(LISTEN_BACKLOG, int(Path("/proc/sys/net/core/somaxconn").read_text()))


def backlog_of(port: int) -> int:
    """The listen backlog of the TCP listener on 127.0.0.1:``port``, as ``ss`` reports it."""
    ss = need_binary("ss")
    out = subprocess.run(
        [ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    assert out and out[0] == "LISTEN", out
    return int(out[2])


async def _drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.mark.parametrize("transport", ["plain", "obfs4", "meeklite"])
async def test_library_listeners_ask_for_the_largest_backlog(transport: str, tmp_path: Path) -> None:
    server = await ptdispatch.start_server(_drop, transport, "127.0.0.1", 0, state_dir=str(tmp_path))
    try:
        assert backlog_of(server.sockets[0].getsockname()[1]) == kernel_cap()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(60)
async def test_command_listeners_ask_for_the_largest_backlog(tmp_path: Path) -> None:
    """The client's SOCKS listener, and the server's shared socket under -workers."""
    async with running("-client", "-transport", "plain", "-state", str(tmp_path / "c")) as client:
        _, port = client.method("CMETHOD", "plain")
        assert backlog_of(port) == kernel_cap()
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", "127.0.0.1:9",
        "-state", str(tmp_path / "s"), "-workers", "2",
    ) as server:  # fmt: skip
        _, port = server.method("SMETHOD", "plain")
        assert backlog_of(port) == kernel_cap()
