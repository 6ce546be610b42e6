"""A loopback test double of tor's Extended ORPort that checks every byte it receives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ptdispatch.net.addr import Address

COOKIE = bytes(range(32))
NONCE = b"N" * 32
OKAY = b"\x10\x00\x00\x00"
DENY = b"\x10\x01\x00\x00"


def nonce_rng(n: int) -> bytes:
    assert n == 32
    return NONCE


def mac(key: bytes, label: bytes, cn: bytes, sn: bytes) -> bytes:
    return hmac.new(key, b"ExtORPort authentication " + label + b" hash" + cn + sn, hashlib.sha256).digest()


@dataclass
class FakeTor:
    """Speaks tor's side of ext-orport-spec strictly and records everything the client sent."""

    cookie: bytes = COOKIE
    auth_types: bytes = b"\x01\x00"
    server_cookie: bytes | None = None  # the cookie used for ServerHash (differs: "wrong cookie")
    status: bytes | None = None  # forced auth status byte
    reply: bytes = OKAY
    after_reply: bytes = b""
    close_at: str | None = None  # "start", "nonce", "hash", "commands": close instead of answering
    raw: bytes | None = None  # send only these bytes, then close
    check_quiet_after_done: bool = False
    received: bytearray = field(default_factory=bytearray)
    server_nonce: bytes = field(default_factory=lambda: os.urandom(32))
    problems: list[str] = field(default_factory=list)
    commands: list[tuple[int, bytes]] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def _read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        data = await reader.readexactly(n)
        self.received += data
        return data

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.problems.append(f"client went away: {exc!r}")
        finally:
            writer.close()
            self.finished.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.raw is not None or self.close_at == "start":
            writer.write(self.raw or b"")
            await writer.drain()
            return
        writer.write(self.auth_types)
        if await self._read(reader, 1) != b"\x01":
            self.problems.append("client did not choose SAFE_COOKIE")
            return
        cn = await self._read(reader, 32)
        if self.close_at == "nonce":
            return
        sn = self.server_nonce
        writer.write(mac(self.server_cookie or self.cookie, b"server-to-client", cn, sn) + sn)
        got = await self._read(reader, 32)
        if self.close_at == "hash":
            return
        ok = hmac.compare_digest(got, mac(self.cookie, b"client-to-server", cn, sn))
        writer.write(self.status if self.status is not None else (b"\x01" if ok else b"\x00"))
        if not ok or self.status not in (None, b"\x01"):
            return
        await self._read_commands(reader)
        if self.close_at == "commands":
            return
        if self.check_quiet_after_done:
            with contextlib.suppress(TimeoutError):
                extra = await asyncio.wait_for(reader.read(1), 0.05)
                self.problems.append(f"client sent {extra!r} after DONE, before OKAY")
        writer.write(self.reply + self.after_reply)
        await writer.drain()
        while data := await reader.read(65536):  # the OR stream: echo it
            writer.write(data)
            await writer.drain()

    async def _read_commands(self, reader: asyncio.StreamReader) -> None:
        while True:
            command, length = struct.unpack(">HH", await self._read(reader, 4))
            self.commands.append((command, await self._read(reader, length)))
            if command == 0:
                return


@contextlib.asynccontextmanager
async def fake_tor(tor: FakeTor, host: str = "127.0.0.1") -> AsyncIterator[Address]:
    server = await asyncio.start_server(tor.handle, host, 0)
    try:
        yield Address(host, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
