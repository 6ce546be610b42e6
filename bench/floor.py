"""The least a Python pair can do per connection: the benchmark's reference floor, not a transport.

``python bench/floor.py client <server port>`` accepts SOCKS5 (no authentication, CONNECT only,
no checks), connects to the server and replies once connected; ``python bench/floor.py server
<target port>`` accepts and forwards to the target.  No encryption, no options, no error handling:
what is left is uvloop, the sockets and a few Python callbacks per connection.  Its connect+echo
latency bounds what any Python relay pair on this machine can reach (the shadow row of ss-libev
is C with no interpreter at all).

Prints ``PORT <n>`` once listening; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

SOCKS_OK = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


class Onward(asyncio.Protocol):
    """The dialed side: relays back to the accepted side."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.front.transport.write(data)

    def eof_received(self) -> bool:
        self.front.half_closed()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.transport.close()


class Front(asyncio.Protocol):
    """The accepted side: optional SOCKS5 exchange, dial, then relay."""

    def __init__(self, port: int, socks: bool) -> None:
        self.port = port
        self.stage = 0 if socks else 2  # 0 greeting, 1 request, 2 relaying
        self.onward: Onward | None = None
        self.held: list[bytes] = []
        self.eofs = 0
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.stage == 2:
            self.task = asyncio.ensure_future(self.dial(reply=False))

    def data_received(self, data: bytes) -> None:
        if self.stage == 0:
            self.stage = 1
            self.transport.write(b"\x05\x00")
        elif self.stage == 1:
            self.stage = 2
            self.task = asyncio.ensure_future(self.dial(reply=True))
        elif self.onward is None or self.onward.transport is None:
            self.held.append(data)
        else:
            self.onward.transport.write(data)

    def eof_received(self) -> bool:
        if self.onward is not None and self.onward.transport is not None:
            self.onward.transport.write_eof()
        self.half_closed()
        return True

    def half_closed(self) -> None:
        self.eofs += 1
        if self.eofs == 2:  # both ways done: close, never leave a shut-down transport to the GC
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.onward is not None and self.onward.transport is not None:
            self.onward.transport.close()

    async def dial(self, *, reply: bool) -> None:
        loop = asyncio.get_running_loop()
        _, self.onward = await loop.create_connection(lambda: Onward(self), "127.0.0.1", self.port)
        if reply:
            self.transport.write(SOCKS_OK)
        if self.held and self.onward.transport is not None:
            self.onward.transport.write(b"".join(self.held))
            self.held.clear()


async def serve(role: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Front(port, socks=role == "client"), "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
