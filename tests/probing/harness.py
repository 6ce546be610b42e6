"""What an active prober sees of our servers: a test harness over real loopback sockets.

Each server transport runs in this process (so that its timeouts can be shrunk; see
:func:`shrink_timeouts`) behind an echo application that counts the connections it was handed
(the "target").  A probe connects, writes its bytes, and reads until the server closes:
:class:`Seen` records what came back, how the connection ended (FIN, RST, or still open) and when.

A new server transport (meek, DarkStar, Starbridge) joins every probing, replay and flood test by
adding its name to :data:`TRANSPORTS`, its unprompted bytes to :data:`OWN_FLIGHT`, its latest close
to :data:`LATEST_CLOSE`, its server options to :func:`server_options`, and its timeouts to
:func:`shrink_timeouts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.transports import obfs2, obfs3
from ptdispatch.transports.obfs4 import engine as obfs4_engine
from ptdispatch.transports.shadow.engine import ShadowServerEngine

TRANSPORTS = ("obfs2", "obfs3", "obfs4", "shadow")
SHADOW_OPTIONS = {"password": "probe-test", "cipherName": "aes-256-gcm"}
T = 1.0
"""The shrunk handshake timeout (seconds); every close bound below is in terms of it."""
OWN_FLIGHT = {"obfs2": 16 + 8 + obfs2.MAX_PADDING, "obfs3": 192 + obfs3.PAD_MAX, "obfs4": 0, "shadow": 0}
"""Bytes a server sends unprompted (obfs2 and obfs3 servers speak first: their own handshake)."""
LATEST_CLOSE = {"obfs2": 2 * T, "obfs3": 2 * T, "obfs4": 3 * T, "shadow": 4 * T}
"""When each server must have closed a failed connection, at the latest, counted from the probe's last byte."""


def shrink_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handshake timeouts and close delays of seconds instead of minutes.

    These exist only as module constants and class attributes today (obfs2/obfs3
    ``handshake_timeout``, obfs4 ``SERVER_HANDSHAKE_TIMEOUT``/``MAX_CLOSE_DELAY``/``MAX_CLOSE_JITTER``,
    shadow ``HANDSHAKE_TIMEOUT``/``LINGER``), so tests patch them; per-server configuration is coming.
    """
    monkeypatch.setattr(obfs2.Obfs2Engine, "handshake_timeout", T)
    monkeypatch.setattr(obfs3.Obfs3Engine, "handshake_timeout", T)
    monkeypatch.setattr(obfs4_engine.ServerEngine, "handshake_timeout", T)
    monkeypatch.setattr(obfs4_engine, "SERVER_HANDSHAKE_TIMEOUT", T)
    monkeypatch.setattr(obfs4_engine, "MAX_CLOSE_DELAY", 2)  # the per-server delay: 0 or 1 s
    monkeypatch.setattr(obfs4_engine, "MAX_CLOSE_JITTER", T)
    monkeypatch.setattr(ShadowServerEngine, "HANDSHAKE_TIMEOUT", (T, 2 * T))
    monkeypatch.setattr(ShadowServerEngine, "LINGER", (T, 2 * T))


def server_options(name: str) -> dict[str, object]:
    return dict(SHADOW_OPTIONS) if name == "shadow" else {}


class Echo(asyncio.Protocol):
    """The target: echoes, and counts the connections that reached it."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._target.connections += 1
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@dataclass
class Target:
    connections: int = 0
    port: int = 0
    server: api.ServerTransport | None = None


@contextlib.asynccontextmanager
async def serving(name: str, state_dir: Path) -> AsyncIterator[Target]:
    """Run server transport ``name`` on 127.0.0.1 with an echo target."""
    target = Target()
    target.server = api.server_transport(name, server_options(name), state_dir)
    listener = await api.listen(target.server, "127.0.0.1", 0, lambda: Echo(target))
    target.port = listener.sockets[0].getsockname()[1]
    try:
        yield target
    finally:
        listener.close()


@dataclass
class Seen:
    """What one probe saw."""

    sent: int
    received: bytes
    ending: str  # "eof", "rst" or "open"
    after_connect: float  # seconds from connect to the ending
    after_last_byte: float  # seconds from our last byte to the ending


async def probe(port: int, payload: bytes, *, wait: float, pieces: int = 1) -> Seen:
    """Connect, send ``payload`` (in ``pieces`` writes), then read until the server ends it or ``wait`` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connected = time.monotonic()
    step = -(-len(payload) // pieces) if payload else 0
    for i in range(0, len(payload), step or 1):
        writer.write(payload[i : i + step])
        await writer.drain()
    last = time.monotonic()
    received = bytearray()
    ending = "open"
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
        ending = "eof"
    except ConnectionResetError:
        ending = "rst"
    except TimeoutError:
        pass
    now = time.monotonic()
    writer.transport.abort()
    return Seen(len(payload), bytes(received), ending, now - connected, now - last)


def probe_lengths() -> list[int]:
    """Every length from 0 to 221 (the largest random probe the GFW sends), then 1, 8 and 64 KiB."""
    return [*range(222), 1024, 8192, 65536]


def random_payloads() -> list[bytes]:
    return [os.urandom(n) for n in probe_lengths()]


async def all_probes(port: int, payloads: list[bytes], *, wait: float) -> list[Seen]:
    """Run every probe at once (bounded wall time): a few hundred concurrent connections."""
    return list(await asyncio.gather(*(probe(port, p, wait=wait) for p in payloads)))
