"""Replay and tampering (issue 13): a recorded obfs4 client handshake, shadow first flight or
DarkStar client hello (shadow cipherName DarkStar), replayed from another source port, gets
silence and no target connection while the original connection keeps working; a shadow
server's own salt reflected back is refused; a bit flip in any byte of a good first flight gets
the same silence."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.errors import RemoteProtocolError
from ptdispatch.net.addr import Address
from ptdispatch.transports.base import Engine
from ptdispatch.transports.darkstar.transport import DarkStarClient, DarkStarServer
from ptdispatch.transports.obfs4 import Obfs4Client, Obfs4Server
from ptdispatch.transports.shadow import ShadowClient, ShadowServer, parse_config
from ptdispatch.transports.shadow.ciphers import CIPHERS

from .harness import (
    DARKSTAR_OPTIONS,
    LATEST_CLOSE,
    SHADOW_OPTIONS,
    T,
    Target,
    all_probes,
    earliest_close,
    probe,
    serving,
)

DEST = Address("example.net", 443)


def _client_engine(name: str, target: Target, rng: Callable[[int], bytes] = os.urandom) -> Engine:
    assert target.server is not None
    if name == "darkstar":  # shadow cipherName DarkStar: what the server publishes, dialing where it listens
        parsed = api.client_transport("shadow", target.server.smethod_args())
        assert isinstance(parsed, DarkStarClient)
        return parsed.engine_for(Address("127.0.0.1", target.port))
    if name == "obfs4":
        parsed = api.client_transport("obfs4", target.server.smethod_args())
        assert isinstance(parsed, Obfs4Client)
        return Obfs4Client(parsed.node_id, parsed.public_key, 0, rng).new_engine(None)
    return ShadowClient(parse_config(SHADOW_OPTIONS), rng=rng).new_engine(DEST)


class Session:
    """A genuine client connection driven by hand, so that its bytes can be recorded and replayed."""

    def __init__(self, engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.engine, self.reader, self.writer = engine, reader, writer
        self.first_flight = b""
        self.first_reply = b""

    @classmethod
    async def open(cls, engine: Engine, port: int) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = cls(engine, reader, writer)
        engine.initiate()
        if engine.established:  # shadow: the first data rides in the first flight
            engine.send_data(b"hello")
        session.first_flight = engine.data_to_send()
        writer.write(session.first_flight)
        if engine.established:
            assert await session._plaintext(5) == b"hello"
        while not engine.established:  # obfs4: the server's reply completes the handshake
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                raise ConnectionError("the server closed during the handshake")
            session.first_reply += chunk
            assert engine.receive_data(chunk) == b""
        return session

    async def exchange(self, data: bytes) -> bytes:
        """Send ``data`` through the engine; return what the echo target sent back."""
        self.engine.send_data(data)
        self.writer.write(self.engine.data_to_send())
        return await self._plaintext(len(data))

    async def _plaintext(self, size: int) -> bytes:
        got = b""
        while len(got) < size:
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            if not chunk:
                raise ConnectionError("closed")
            if not self.first_reply:
                self.first_reply = chunk
            got += self.engine.receive_data(chunk)
        return got

    def close(self) -> None:
        self.writer.transport.abort()


def _silent(seen_ending: str, received: bytes, after_last_byte: float, what: str, earliest: float = 0.3 * T) -> None:
    assert received == b"", f"{what}: got {len(received)} bytes back"
    assert seen_ending == "eof", f"{what}: ended by {seen_ending}"
    assert after_last_byte >= earliest, f"{what}: closed {after_last_byte:.2f} s after its last byte"


@pytest.mark.parametrize("name", ["obfs4", "shadow", "darkstar"])
@pytest.mark.timeout(60)
async def test_replayed_first_flight_gets_silence(name: str, tmp_path: Path) -> None:
    async with serving(name, tmp_path) as target:
        original = await Session.open(_client_engine(name, target), target.port)
        assert await original.exchange(b"ping") == b"ping"
        assert target.connections == 1
        seen = await probe(target.port, original.first_flight, wait=LATEST_CLOSE[name] + 5)  # another source port
        _silent(seen.ending, seen.received, seen.after_last_byte, f"{name} replay", earliest_close(name))
        assert target.connections == 1, "the replay reached the target"
        assert await original.exchange(b"still here") == b"still here"  # the original is unaffected
        original.close()


@pytest.mark.timeout(60)
async def test_shadow_reverse_replay_is_refused(tmp_path: Path) -> None:
    """The server's own reply (its salt first) reflected back at it, as outline-ss-server tests."""
    async with serving("shadow", tmp_path) as target:
        original = await Session.open(_client_engine("shadow", target), target.port)
        assert original.first_reply
        seen = await probe(target.port, original.first_reply, wait=LATEST_CLOSE["shadow"] + 5)
        _silent(seen.ending, seen.received, seen.after_last_byte, "reflected server flight")
        assert target.connections == 1
        assert await original.exchange(b"ok") == b"ok"
        original.close()


def _small_padding(n: int) -> bytes:
    """os.urandom, except that obfs4's 8-byte padding-length draw gives the minimum (a short flight)."""
    return bytes(8) if n == 8 else os.urandom(n)


def _flights(tmp_path: Path) -> list[tuple[str, Callable[[], Engine], bytes]]:
    """(label, new server engine, good first flight) for obfs4 and every shadow cipher."""
    out: list[tuple[str, Callable[[], Engine], bytes]] = []
    obfs4 = api.server_transport("obfs4", {}, tmp_path)
    assert isinstance(obfs4, Obfs4Server)
    client = _client_engine("obfs4", Target(server=obfs4), _small_padding)
    client.initiate()
    out.append(("obfs4", obfs4.new_engine, client.data_to_send()))
    for cipher in CIPHERS:
        config = parse_config({"password": "flip", "cipherName": cipher})
        shadow = ShadowClient(config).new_engine(DEST)
        shadow.initiate()
        shadow.send_data(b"GET / HTTP/1.1\r\n\r\n")
        out.append((f"shadow {cipher}", ShadowServer(config).new_engine, shadow.data_to_send()))
    darkstar = api.server_transport("shadow", DARKSTAR_OPTIONS, tmp_path)
    assert isinstance(darkstar, DarkStarServer)
    hello = DarkStarClient(darkstar.key.public, None).engine_for(None)
    hello.initiate()
    out.append(("DarkStar", darkstar.new_engine, hello.data_to_send()))
    return out


def test_bit_flip_in_any_byte_gets_silence(tmp_path: Path) -> None:
    """Every byte of a good first flight, one bit flipped: no output, never established."""
    for label, new_engine, flight in _flights(tmp_path):
        good = new_engine()
        good.receive_data(flight)
        assert good.established, label  # the unflipped flight is accepted
        for pos in range(len(flight)):
            flipped = bytearray(flight)
            flipped[pos] ^= 1 << (pos % 8)
            engine = new_engine()
            try:
                engine.receive_data(bytes(flipped))
            except RemoteProtocolError as exc:
                assert exc.linger > 0, f"{label}: flip at {pos} closes at once"
            assert not engine.established, f"{label}: flip at byte {pos} was accepted"
            assert engine.data_to_send() == b"", f"{label}: flip at byte {pos} got a reply"


@pytest.mark.parametrize("name", ["obfs4", "shadow", "darkstar"])
@pytest.mark.timeout(60)
async def test_bit_flips_over_sockets_get_silence(name: str, tmp_path: Path) -> None:
    async with serving(name, tmp_path) as target:
        engine = _client_engine(name, target, _small_padding)
        engine.initiate()
        if engine.established:
            engine.send_data(b"hello")
        flight = engine.data_to_send()
        positions = sorted({*range(0, len(flight), max(1, len(flight) // 24)), len(flight) - 1})
        flipped = []
        for pos in positions:
            data = bytearray(flight)
            data[pos] ^= 0x80
            flipped.append(bytes(data))
        seen = await all_probes(target.port, flipped, wait=LATEST_CLOSE[name] + 5)
        for pos, s in zip(positions, seen, strict=True):
            _silent(s.ending, s.received, s.after_last_byte, f"{name} flip at byte {pos}", earliest_close(name))
        assert target.connections == 0


def test_truncated_first_flight_gets_silence(tmp_path: Path) -> None:
    """Every prefix of a good first flight (outline-ss-server's "client bytes truncated"): silence;
    the server waits for the rest (and then times out), it does not fail at a byte count."""
    for label, new_engine, flight in _flights(tmp_path):
        for cut in range(len(flight)):
            engine = new_engine()
            assert engine.receive_data(flight[:cut]) == b"", f"{label}: prefix of {cut} bytes gave data"
            assert engine.data_to_send() == b"", f"{label}: prefix of {cut} bytes got a reply"
            assert not engine.established, f"{label}: prefix of {cut} bytes was accepted"
