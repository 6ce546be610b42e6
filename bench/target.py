"""The benchmark's target server (a separate process, so its CPU never mixes with the proxies').

Each connection picks its behaviour with its first byte:

``E``            echo: that byte and everything after it is sent back.
``D`` + u64 N    discard: reply ``R`` at once, swallow N bytes, then reply ``K``.
``X`` + u64 N    echo N bytes: reply ``R`` at once, then echo the next N bytes.

Prints ``PORT <n>`` once listening; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import struct
import sys


class Target(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.mode = b""
        self.left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.mode == b"E":
            self.transport.write(data)
            return
        if self.mode:
            self._counted(data)
            return
        self.head += data
        if self.head[:1] == b"E":
            self.mode = b"E"
            self.transport.write(self.head)
            return
        if len(self.head) < 9:
            return
        self.mode = self.head[:1]
        (self.left,) = struct.unpack("!Q", self.head[1:9])
        rest, self.head = self.head[9:], b""
        self.transport.write(b"R")
        if rest:
            self._counted(rest)

    def _counted(self, data: bytes) -> None:
        assert self.transport is not None
        if self.mode == b"X":
            self.transport.write(data)
        self.left -= len(data)
        if self.left == 0 and self.mode == b"D":
            self.transport.write(b"K")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Target, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
