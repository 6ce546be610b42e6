"""A parent that stops reading stdout does not stall the server: LOG lines are dropped (and
counted once it reads again), connections go on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.peers.managed import echo_server

pytestmark = pytest.mark.timeout(60)

CONNECTIONS = 1500  # an INFO line each (about 70 bytes): well past a 64 KiB pipe


async def echo_once(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    writer.close()
    await writer.wait_closed()


async def test_a_parent_that_stops_reading_stdout_does_not_stall_the_server(tmp_path: Path) -> None:
    echo, target = await echo_server()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptdispatch", "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0",
         "-target", f"127.0.0.1:{target}", "-state", str(tmp_path), "-ipcLogLevel", "INFO"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = 0
        while (line := proc.stdout.readline().decode()) != "SMETHODS DONE\n":
            assert line, "the server exited"
            if line.startswith("SMETHOD plain "):
                port = int(line.split()[2].rsplit(":", 1)[1])
        # From here on nobody reads stdout: the pipe fills after about 900 connections.
        for _ in range(CONNECTIONS):
            await echo_once(port)
        assert proc.poll() is None
        rest: list[bytes] = []
        reader = threading.Thread(target=lambda: rest.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        await asyncio.sleep(0.2)
        await echo_once(port)  # its close is logged after the count of dropped lines
        await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
        echo.close()
    await asyncio.to_thread(reader.join, 10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    text = b"".join(rest).decode()
    assert "LOG line(s) dropped: the parent was not reading stdout" in text, text[-2000:]
