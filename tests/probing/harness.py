"""What an active prober sees of our servers: a test harness over real loopback sockets.

Each server transport runs in this process (its timeouts shrunk through its configuration:
:data:`SHRUNK`) behind an echo application that counts the connections it was handed
(the "target").  A probe connects, writes its bytes, and reads until the server closes:
:class:`Seen` records what came back, how the connection ended (FIN, RST, or still open) and when.

A new server transport joins every probing, replay and flood test by
adding its name to :data:`TRANSPORTS`, its unprompted bytes to :data:`OWN_FLIGHT`, its latest close
to :data:`LATEST_CLOSE`, its server options to :func:`server_options`; its timeouts shrink through
``ServerContext.timeouts`` (:func:`make_server`), for every transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ptdispatch import api
from ptdispatch.api import get_spec
from ptdispatch.transports import obfs2, obfs3, starburst
from ptdispatch.transports.base import ServerContext, ServerTransport, Timeouts

TRANSPORTS = ("obfs2", "obfs3", "obfs4", "shadow", "darkstar", "Starbridge")
"""The silent servers (meek answers HTTP: tests/probing/test_meek_probing.py).  ``darkstar`` is
``shadow`` with cipherName DarkStar (see :data:`TRANSPORT_OF`)."""
SHADOW_OPTIONS = {"password": "probe-test", "cipherName": "aes-256-gcm"}
DARKSTAR_OPTIONS = {"cipherName": "DarkStar"}
TRANSPORT_OF = {"darkstar": "shadow"}
"""Test names that are not transport names: the transport they run."""
T = 1.0
"""The shrunk handshake timeout (seconds); every close bound below is in terms of it."""
OWN_FLIGHT = {
    "obfs2": 16 + 8 + obfs2.MAX_PADDING,
    "obfs3": 192 + obfs3.PAD_MAX,
    "obfs4": 0,
    "shadow": 0,
    "darkstar": 0,
    "Starbridge": len(starburst.BANNER),
}
"""Bytes a server sends unprompted (obfs2 and obfs3 servers speak first: their own handshake;
Starbridge's Starburst speaks the SMTP banner first by design, then nothing more to a prober)."""
LATEST_CLOSE = {"obfs2": 2 * T, "obfs3": 2 * T, "obfs4": 3 * T, "shadow": 4 * T, "darkstar": 4 * T, "Starbridge": 5 * T}
"""When each server must have closed a failed connection, at the latest, counted from the probe's last byte."""
EARLIEST_CLOSE = {
    "obfs2": 2 * T,
    "obfs3": 2 * T,
    "obfs4": T,
    "shadow": 2 * T,
    "darkstar": T / 2 + T / 6,
    "Starbridge": T / 2 + T / 6,
}
"""The soonest a failed connection may close, counted from its start, whether the probe met the handshake timeout
or failed (every server closes a failed handshake at one time from the connection's start): the shortest
handshake timeout + the shortest linger.  obfs2/obfs3: T + T; obfs4: T + its close delay; shadow: T + T;
DarkStar (Starbridge too): T/2 + T/6."""


def earliest_close(name: str) -> float:
    """:data:`EARLIEST_CLOSE` less 0.3 T of slack (the prober's clock starts before its connect, so
    it cannot start after the server's connection; a close at a byte count would come milliseconds
    after the probe's last byte, far below this)."""
    return EARLIEST_CLOSE[name] - 0.3 * T


def transport_of(name: str) -> str:
    return TRANSPORT_OF.get(name, name)


SHRUNK = Timeouts(handshake=T, linger=T)
"""Every server's ``ServerContext.timeouts``: obfs2/obfs3 wait T; obfs4 waits T, then its seeded
close delay and jitter scaled to under T and T/2; shadow draws each connection's from [T, 2T];
DarkStar draws a handshake timeout in [T/2, T] and a linger in [T/6, T]; Starburst gives each
listening step T."""


def make_server(name: str, state_dir: Path) -> ServerTransport:
    """Server transport ``name`` with shrunk timeouts (see :data:`SHRUNK`)."""
    ctx = ServerContext(state_dir=state_dir, timeouts=SHRUNK)
    server = get_spec(transport_of(name)).make_server(server_options(name), ctx)
    return server


def server_options(name: str) -> dict[str, object]:
    return dict({"shadow": SHADOW_OPTIONS, "darkstar": DARKSTAR_OPTIONS}.get(name, {}))


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
    server: ServerTransport | None = None


@contextlib.asynccontextmanager
async def serving(name: str, state_dir: Path) -> AsyncIterator[Target]:
    """Run server transport ``name`` on 127.0.0.1 with an echo target."""
    target = Target()
    target.server = make_server(name, state_dir)
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
    after_connect: float  # seconds from the start of the connect to the ending
    after_last_byte: float  # seconds from our last byte to the ending


async def probe(port: int, payload: bytes, *, wait: float, pieces: int = 1) -> Seen:
    """Connect, send ``payload`` (in ``pieces`` writes), then read until the server ends it or ``wait`` passes."""
    # The clock starts before the connect: the server's connection cannot start earlier, whereas a
    # time read once the connect returns runs late when hundreds of probes share this event loop
    # (a close at the server's earliest time then looked early, by up to the loop's lag).
    connected = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
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
