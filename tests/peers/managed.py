"""Run a real PT 1.0 managed proxy (obfs4proxy) on loopback, as tor would, and read its lines."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ManagedProxy:
    """A started managed proxy: its process and the METHOD lines it printed."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    methods: dict[str, tuple[str, int, dict[str, str]]] = field(default_factory=dict)

    def address(self, transport: str) -> tuple[str, int]:
        host, port, _ = self.methods[transport]
        return host, port

    def args(self, transport: str) -> dict[str, str]:
        return self.methods[transport][2]


def _split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _parse_args(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    body = text.removeprefix("ARGS:")
    for item in body.split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            out[key] = value
    return out


@contextlib.asynccontextmanager
async def run_managed(
    binary: str,
    env: Mapping[str, str],
    *,
    state_dir: Path,
    timeout: float = 20.0,
) -> AsyncIterator[ManagedProxy]:
    """Start ``binary`` with the given TOR_PT_* ``env``; wait for CMETHODS/SMETHODS DONE."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": str(state_dir),
        "TOR_PT_EXIT_ON_STDIN_CLOSE": "1",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        binary,
        env=full_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    managed = ManagedProxy(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"{binary} exited early: {managed.lines} {err!r}")
                line = raw.decode().rstrip("\n")
                managed.lines.append(line)
                words = line.split(" ")
                if words[0] == "CMETHOD" and len(words) >= 4:
                    host, port = _split_hostport(words[3])
                    managed.methods[words[1]] = (host, port, {})
                elif words[0] == "SMETHOD" and len(words) >= 3:
                    host, port = _split_hostport(words[2])
                    extra = next((w for w in words[3:] if w.startswith("ARGS:")), "")
                    managed.methods[words[1]] = (host, port, _parse_args(extra))
                elif words[0] in ("CMETHODS", "SMETHODS") and words[1:] == ["DONE"]:
                    break
                elif words[0].endswith("-ERROR"):
                    raise RuntimeError(f"{binary}: {line}")
        yield managed
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF (then half-close back); for asyncio.start_server or ptdispatch.start_server."""
    try:
        while data := await reader.read(1 << 18):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def echo_server() -> tuple[asyncio.Server, int]:
    """A loopback TCP echo server (the usual target); returns it and its port."""
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
    """Write ``size`` random bytes (in the background) and check the echo is identical."""
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()
    got = hashlib.sha256()

    async def send() -> None:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            sent.update(piece)
            writer.write(piece)
            await writer.drain()
            left -= len(piece)

    sender = asyncio.create_task(send())
    received = 0
    while received < size:
        data = await reader.read(1 << 20)
        assert data, f"connection closed after {received} of {size} bytes"
        got.update(data)
        received += len(data)
    await sender
    assert received == size and got.digest() == sent.digest()
    await close_stream(reader, writer)


async def close_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, wait for the peer's close, then close: nothing is left for the GC to finalize."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)
    except (ConnectionError, TimeoutError):
        pass
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
