"""Floods and leaks (issue 13), through the real command: per server transport, 1,000 connections
opened and dropped at once, then 1,000 half-open handshakes left hanging.  The process stays up,
a good connection made during the flood works, and afterwards its open descriptors
(``/proc/PID/fd``) and RSS come back near the baseline.  (10,000 UDP source addresses in
transparent-UDP: tests/e2e/test_udp_e2e.py::test_flood_from_10000_source_ports_stays_bounded.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench.procs import open_fds, rss_kib

import ptdispatch
from tests.peers.dispatcher import Dispatcher, running

from .harness import SHADOW_OPTIONS, TRANSPORTS, server_options, transport_of

FLOODED = (*TRANSPORTS, "meek")

FLOOD = 1000
FD_MARGIN = 8
RSS_MARGIN_KIB = 16 * 1024  # measured: +3.4 to +4.2 MiB (allocator retention)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def server_dispatcher(name: str, tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, dict[str, str]]]:
    """A ``ptdispatch -server`` for ``name`` in front of an echo target; yields it and the client options."""
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[1]
    options = json.dumps(server_options(name))
    transport = transport_of(name)
    try:
        async with running(
            "-server", "-transport", transport, "-bindaddr", f"{transport}-127.0.0.1:0",
            "-target", f"127.0.0.1:{target}", "-state", str(tmp_path), "-options", options,
        ) as disp:  # fmt: skip
            yield disp, client_options(name, disp)
    finally:
        echo.close()


def client_options(name: str, disp: Dispatcher) -> dict[str, str]:
    if name == "shadow":
        return dict(SHADOW_OPTIONS, target="192.0.2.1:1")
    if name == "meek":  # meek-server publishes no url unless told one: it is where we listen
        _, port = disp.method("SMETHOD", "meek")
        return {"url": f"http://127.0.0.1:{port}/"}
    return disp.smethod_args(transport_of(name))


def half_open(name: str) -> bytes:
    """The start of a handshake: 10 random bytes; for meek the start of an HTTP request (random
    bytes are not one: meek-server answers about 1 in 7 of them 400 at once, as Go's net/http)."""
    if name == "meek":
        return b"POST / HTTP/1.1\r\nHost: " + os.urandom(5).hex().encode()
    return os.urandom(10)


async def good_connection(name: str, port: int, options: dict[str, str]) -> None:
    connecting = ptdispatch.open_connection(transport_of(name), ("127.0.0.1", port), options)
    reader, writer = await asyncio.wait_for(connecting, 20)
    try:
        blob = os.urandom(50_000)
        writer.write(blob)
        assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
    finally:
        writer.close()


async def _connect(port: int, payload: bytes) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 20)
        if payload:
            await loop.sock_sendall(sock, payload)
    except (OSError, TimeoutError):
        sock.close()
        return None
    return sock


async def reach(pid: int, fds: int, timeout: float = 20.0) -> int:
    """Wait until the process holds at least ``fds`` descriptors (the whole flood fits in the
    listen backlog, net.core.somaxconn; the server accepts it as its loop gets to it); return the count."""
    deadline = time.monotonic() + timeout
    while (now := open_fds(pid)) < fds and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return now


async def settle(pid: int, fds: int, timeout: float = 20.0) -> int:
    """Wait until the process is back to ``fds`` descriptors (plus a margin); return the count."""
    deadline = time.monotonic() + timeout
    while (now := open_fds(pid)) > fds + FD_MARGIN and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return now


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOODED)
@pytest.mark.timeout(120)
async def test_floods_leave_no_leak(name: str, tmp_path: Path) -> None:
    async with server_dispatcher(name, tmp_path) as (disp, options):
        pid = disp.process.pid
        _, port = disp.method("SMETHOD", transport_of(name))
        await good_connection(name, port, options)  # warm up: first-use allocations are not leaks
        await asyncio.sleep(0.3)
        fds, rss = open_fds(pid), rss_kib(pid)

        # 1,000 connections opened and dropped at once (half of them reset, half closed)
        socks = [s for s in await asyncio.gather(*(_connect(port, b"") for _ in range(FLOOD))) if s]
        assert len(socks) >= 0.9 * FLOOD
        for i, sock in enumerate(socks):
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        await good_connection(name, port, options)

        # 1,000 half-open handshakes left hanging: a few bytes of a handshake, then nothing
        hanging = [s for s in await asyncio.gather(*(_connect(port, half_open(name)) for _ in range(FLOOD))) if s]
        assert len(hanging) >= 0.9 * FLOOD
        await good_connection(name, port, options)  # served during the flood
        assert disp.process.returncode is None
        held = await reach(pid, fds + int(0.9 * len(hanging)))  # accepted and held, not refused
        assert held >= fds + 0.9 * len(hanging), f"{name}: only {held - fds} of {len(hanging)} accepted"
        for sock in hanging:
            sock.close()

        after = await settle(pid, fds)
        assert after <= fds + FD_MARGIN, f"{name}: {after} descriptors open after the flood, {fds} before"
        grown = rss_kib(pid) - rss
        print(f"\n{name}: fds {fds} -> peak {held} -> {after}; RSS {rss} KiB -> +{grown} KiB")
        assert grown < RSS_MARGIN_KIB, f"{name}: RSS grew by {grown} KiB over the floods"
        await good_connection(name, port, options)
        assert disp.process.returncode is None
