"""Section 1.3: stdin close, signals, parent death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peers.dispatcher import COMMAND, running


async def test_exit_on_stdin_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-exit-on-stdin-close", "-state", str(tmp_path)) as disp:
        assert disp.process.stdin is not None
        disp.process.stdin.close()
        assert await asyncio.wait_for(disp.process.wait(), 10) == 0


async def test_stdin_close_without_flag_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-state", str(tmp_path)) as disp:
        assert disp.process.stdin is not None
        disp.process.stdin.close()
        await asyncio.sleep(1.5)
        assert disp.process.returncode is None


async def test_runs_with_stdin_from_dev_null(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-state", str(tmp_path), stdin=subprocess.DEVNULL) as disp:
        await asyncio.sleep(1.5)
        assert disp.process.returncode is None


async def test_exit_flag_zero_ignores_stdin_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-exit-on-stdin-close", "0", "-state", str(tmp_path)) as disp:
        assert disp.process.stdin is not None
        disp.process.stdin.close()
        await asyncio.sleep(1.5)
        assert disp.process.returncode is None


async def test_sigterm_and_sigint_exit_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for signum in (signal.SIGTERM, signal.SIGINT):
        async with running("-transport", "plain", "-state", str(tmp_path)) as disp:
            disp.process.send_signal(signum)
            assert await asyncio.wait_for(disp.process.wait(), 10) == 0


async def test_open_connection_finishes_during_grace_then_exit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(_slow_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    opts = f'{{"serverAddress": "127.0.0.1:{port}"}}'
    async with running(
        "-transport", "plain", "-mode", "transparent-TCP", "-options", opts, "-state", str(tmp_path)
    ) as disp:  # fmt: skip
        host, lport = disp.method("CMETHOD", "plain")
        reader, writer = await asyncio.open_connection(host, lport)
        writer.write(b"ping")
        await writer.drain()
        await asyncio.sleep(0.2)
        disp.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"  # delivered after the stop began
        writer.close()
        assert await asyncio.wait_for(disp.process.wait(), 10) == 0
        # the listener is gone
        try:
            await asyncio.open_connection(host, lport)
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("listener still accepting after stop")
    server.close()


async def _slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    await asyncio.sleep(0.3)
    writer.write(data)
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A target that holds the connection open and never answers."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass
    writer.close()


@pytest.mark.parametrize("how", ["SIGTERM", "stdin"])
async def test_prompt_exit_with_open_connections(tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    """Stop listening at once; exit 0 within 2 s although connections stay open (short drain, then cut)."""
    target = await asyncio.start_server(_silent, "127.0.0.1", 0)
    opts = f'{{"serverAddress": "127.0.0.1:{target.sockets[0].getsockname()[1]}"}}'
    async with running(
        "-transport", "plain", "-mode", "transparent-TCP", "-options", opts, "-exit-on-stdin-close",
        "-state", str(tmp_path),
    ) as disp:  # fmt: skip
        host, lport = disp.method("CMETHOD", "plain")
        writers = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, lport)
            writer.write(b"hello")
            await writer.drain()
            writers.append((reader, writer))
        await asyncio.sleep(0.3)  # the relays are up
        started = time.monotonic()
        if how == "SIGTERM":
            disp.process.send_signal(signal.SIGTERM)
        else:
            assert disp.process.stdin is not None
            disp.process.stdin.close()
        await asyncio.sleep(0.2)
        assert disp.process.returncode is None  # still draining the open connections...
        with pytest.raises(ConnectionRefusedError):  # ...but no longer listening
            await asyncio.open_connection(host, lport)
        assert await asyncio.wait_for(disp.process.wait(), 5) == 0
        assert time.monotonic() - started < 2.0
        for reader, writer in writers:  # the open connections were closed, not left hanging
            assert await asyncio.wait_for(reader.read(100), 2) == b""
            writer.close()
    target.close()


def test_exits_when_parent_dies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # sh starts the dispatcher in the background, prints its PID, lives one more second, and exits.
    script = '"$@" </dev/null >/dev/null 2>&1 & echo $!; exec sleep 1'
    out = subprocess.run(
        ["sh", "-c", script, "sh", *COMMAND, "-transport", "plain", "-state", str(tmp_path)],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    pid = int(out.stdout.strip())
    assert _alive(pid)  # the parent is gone, the dispatcher is noticing
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("dispatcher kept running after its parent exited")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_no_traceback_on_stdout_for_bad_input() -> None:
    proc = subprocess.run(
        [*COMMAND, "-transport", "plain", "-options", "\xff{"], capture_output=True, timeout=20, check=False
    )
    assert proc.returncode == 64
    assert proc.stdout.decode().splitlines() == ["VERSION 3.0"]
    assert sys.platform != "win32"


def _open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


async def test_raises_its_open_files_soft_limit_to_the_hard_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Started with the usual soft limit of 1024, it serves more than 500 relayed connections (two
    descriptors each), as obfs4proxy does (Go's runtime raises the soft limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit on open files is {hard}: nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # inherited by the child
    try:
        async with running("-transport", "plain", "-state", str(tmp_path)) as disp:
            child_soft, child_hard = _open_files_limits(disp.process.pid)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (child_soft, child_hard) == (hard, hard)
