"""Run the real ``ptdispatch`` command in tests and read its protocol lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptdispatch import api

COMMAND = [sys.executable, "-m", "ptdispatch"]


@dataclass
class Dispatcher:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def method(self, keyword: str, name: str) -> tuple[str, int]:
        """Address of the ``CMETHOD``/``SMETHOD`` line for ``name``."""
        for line in self.lines:
            words = line.split(" ")
            if words[0] == keyword and words[1] == name:
                text = words[3] if keyword == "CMETHOD" else words[2]
                host, _, port = text.rpartition(":")
                return host.strip("[]"), int(port)
        raise KeyError(f"no {keyword} {name} in {self.lines}")

    def smethod_args(self, name: str) -> dict[str, str]:
        for line in self.lines:
            words = line.split(" ")
            if words[0] == "SMETHOD" and words[1] == name and len(words) > 3:
                body = words[3].removeprefix("ARGS:")
                return dict(item.split("=", 1) for item in body.split(","))
        return {}

    async def more_lines(self, timeout: float = 5.0) -> list[str]:
        """Read stdout lines until EOF or ``timeout``; returns the new ones."""
        assert self.process.stdout is not None
        new: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while raw := await self.process.stdout.readline():
                    new.append(raw.decode().rstrip("\n"))
        self.lines.extend(new)
        return new


async def run_once(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 15.0, stdin: bytes = b""
) -> tuple[int, list[str], list[str]]:
    """Run ``ptdispatch argv`` expecting it to exit; return (code, stdout lines, stderr lines)."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *argv, env=_env(env), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode().splitlines()


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT_")}
    env.update(extra or {})
    return env


@contextlib.asynccontextmanager
async def running(
    *argv: str,
    env: Mapping[str, str] | None = None,
    done: Sequence[str] = ("CMETHODS DONE", "SMETHODS DONE"),
    timeout: float = 20.0,
    stdin: int | None = asyncio.subprocess.PIPE,
) -> AsyncIterator[Dispatcher]:
    """Start ``ptdispatch argv``, wait for its DONE line, and stop it by PID afterwards."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *argv, env=_env(env), stdin=stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    disp = Dispatcher(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    err = (await proc.stderr.read()).decode() if proc.stderr else ""
                    raise RuntimeError(f"ptdispatch exited early: {disp.lines} {err}")
                line = raw.decode().rstrip("\n")
                disp.lines.append(line)
                if line in done:
                    break
        yield disp
    finally:
        await stop(proc)
        if proc.stderr is not None:
            with contextlib.suppress(Exception):
                disp.errors = (await asyncio.wait_for(proc.stderr.read(), 2)).decode().splitlines()


async def stop(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- an obfs4 server command, and clients for it (operators' tests: metrics, workers, fleets) ---


def obfs4_server(tmp: Path, target: int, *extra: str, level: str = "INFO"):  # type: ignore[no-untyped-def]
    """An obfs4 server command in front of 127.0.0.1:``target`` (the test must read the LOG lines it asks
    for: a full stdout pipe stops the server)."""
    return running(
        "-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0", "-target", f"127.0.0.1:{target}",
        "-state", str(tmp / "state"), "-ipcLogLevel", level, *extra,
    )  # fmt: skip


async def obfs4_roundtrip(server: Dispatcher, size: int = 20_000) -> None:
    reader, writer = await api.open_connection("obfs4", server.method("SMETHOD", "obfs4"), server.smethod_args("obfs4"))
    blob = os.urandom(size)
    writer.write(blob)
    assert await asyncio.wait_for(reader.readexactly(size), 20) == blob
    writer.close()


def client_hello(server: Dispatcher) -> bytes:
    """One obfs4 client handshake, as bytes to send (and to replay)."""
    engine = api.client_transport("obfs4", server.smethod_args("obfs4")).new_engine(None)  # type: ignore[attr-defined]
    engine.initiate()
    return bytes(engine.data_to_send())


async def send_raw(address: tuple[str, int], data: bytes, wait: float = 1.0) -> bytes:
    """Send ``data`` on a fresh connection and return what comes back within ``wait`` seconds."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    got = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        got = await asyncio.wait_for(reader.read(65536), wait)
    writer.transport.abort()
    return got
