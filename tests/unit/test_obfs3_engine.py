"""obfs3 engines: in-memory client/server pairs, magic scanning limits, bad input, the asyncio API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import ptdispatch
from ptdispatch import api
from ptdispatch.crypto import uniformdh
from ptdispatch.errors import HandshakeTimeout, RemoteProtocolError
from ptdispatch.transports import obfs3
from ptdispatch.transports.base import RoleServer, ServerContext, Timeouts
from ptdispatch.transports.obfs3 import Obfs3Engine


def pump(a: Obfs3Engine, b: Obfs3Engine) -> tuple[bytes, bytes]:
    """Move bytes both ways until quiet; return the plaintext each side received."""
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return b"".join(got_a), b"".join(got_b)
        if out_a:
            got_b.append(b.receive_data(out_a))
        if out_b:
            got_a.append(a.receive_data(out_b))


def pair() -> tuple[Obfs3Engine, Obfs3Engine]:
    client, server = Obfs3Engine(True), Obfs3Engine(False)
    client.initiate()
    server.initiate()
    return client, server


def test_pair_roundtrip_both_ways() -> None:
    client, server = pair()
    pump(client, server)
    assert client.established and server.established
    up, down = os.urandom(200_000), os.urandom(10)
    client.send_data(up)
    server.send_data(down)
    got_client, got_server = pump(client, server)
    assert got_server == up and got_client == down
    client.send_data(b"more")
    assert pump(client, server) == (b"", b"more")


def test_established_on_the_peer_key_before_any_magic() -> None:
    """obfs4proxy sends its magic only with its first data: the handshake cannot wait for it."""
    client, server = pair()
    c_hello = client.data_to_send()
    assert server.receive_data(c_hello[: uniformdh.SIZE]) == b""
    assert server.established
    assert server.receive_data(c_hello[uniformdh.SIZE :]) == b""  # padding: still scanning


def test_bytes_after_the_key_start_a_deadline_for_the_magic() -> None:
    """Any 192 bytes are a key: once more bytes follow it, the magic must come within the
    handshake timeout (obfs4proxy waits for ever); a key alone sets no deadline."""
    now = [100.0]
    server = Obfs3Engine(False, clock=lambda: now[0])
    server.start(now[0], Timeouts(handshake=5.0, linger=7.0))
    assert server.receive_data(os.urandom(uniformdh.SIZE)) == b""
    assert server.established and server.get_timer() is None  # an idle client is not a prober
    now[0] = 160.0
    assert server.receive_data(os.urandom(100)) == b""  # padding, no magic
    assert server.get_timer() == 165.0
    server.handle_timer(164.9)  # not yet
    with pytest.raises(HandshakeTimeout, match="no peer magic within 5 s"):
        server.handle_timer(165.0)


def test_the_magic_clears_its_deadline() -> None:
    now = [0.0]
    client, server = Obfs3Engine(True, clock=lambda: now[0]), Obfs3Engine(False, clock=lambda: now[0])
    for engine in (client, server):
        engine.start(0.0, Timeouts(handshake=5.0))
        engine.initiate()
    pump(client, server)
    client.send_data(b"hello")
    sent = client.data_to_send()
    cut = len(sent) - len(b"hello") - 16  # inside the magic, whatever the padding's length
    assert server.receive_data(sent[:cut]) == b""  # padding and half the magic
    assert server.get_timer() == 5.0
    assert server.receive_data(sent[cut:]) == b"hello"
    assert server.get_timer() is None


def test_handshake_and_data_in_one_chunk() -> None:
    client, server = pair()
    client.receive_data(server.data_to_send())
    client.send_data(b"GET / HTTP/1.0\r\n\r\n")
    assert server.receive_data(client.data_to_send()) == b"GET / HTTP/1.0\r\n\r\n"


def test_data_queued_before_the_handshake() -> None:
    client, server = pair()
    client.send_data(b"early")
    server.send_data(b"late")
    assert pump(client, server) == (b"late", b"early")


def test_hello_sizes() -> None:
    for initiator in (True, False):
        engine = Obfs3Engine(initiator)
        engine.initiate()
        assert uniformdh.SIZE <= len(engine.data_to_send()) <= uniformdh.SIZE + 4097


def _peer_stream(pre_magic: int) -> tuple[Obfs3Engine, bytes, bytes]:
    """A server engine, the client's public key, and the client's data stream with
    ``pre_magic`` bytes of padding before the magic."""
    client, server = pair()
    client.receive_data(server.data_to_send())
    pub = client.data_to_send()[: uniformdh.SIZE]
    magic = client._tx_magic
    client.send_data(b"payload")
    first = client.data_to_send()
    magic_at = first.index(magic)
    body = first[magic_at:]
    return server, pub, os.urandom(pre_magic) + body


def test_magic_may_start_at_8194_but_not_8195() -> None:
    server, pub, stream = _peer_stream(8194)
    assert server.receive_data(pub + stream) == b"payload"
    server, pub, stream = _peer_stream(8195)
    with pytest.raises(RemoteProtocolError, match="magic"):
        server.receive_data(pub + stream)


def test_no_magic_within_the_limit_fails_only_at_the_limit() -> None:
    server, pub, _ = _peer_stream(0)
    server.receive_data(pub)
    junk = os.urandom(obfs3.SCAN_LIMIT)
    assert server.receive_data(junk[:-1]) == b""
    with pytest.raises(RemoteProtocolError):
        server.receive_data(junk[-1:])


def test_a_client_tells_its_application_at_once() -> None:
    """No magic from the server within the limit: the client fails with no linger (lingering hides a
    server from probers; a client that lingered kept its application waiting 30 s for the error)."""
    client, _ = pair()
    client.start(time.monotonic(), Timeouts(handshake=30.0))
    _, pub, _ = _peer_stream(0)
    client.receive_data(pub)
    with pytest.raises(RemoteProtocolError) as failed:
        client.receive_data(os.urandom(obfs3.SCAN_LIMIT))
    assert failed.value.linger == 0.0
    assert client.failure_linger() == 0.0


def test_magic_split_across_chunks() -> None:
    server, pub, stream = _peer_stream(100)
    out = server.receive_data(pub)
    for i in range(0, len(stream), 7):
        out += server.receive_data(stream[i : i + 7])
    assert out == b"payload"


def test_wire_bytes_follow_the_spec_formulas() -> None:
    """Keys and magic are HMAC-SHA256(shared, label); data is AES-128-CTR after the magic."""
    client, server = pair()
    s_hello = server.data_to_send()
    client.receive_data(s_hello)
    c_hello = client.data_to_send()
    client.send_data(b"hello obfs3")
    first = client.data_to_send()
    # Recompute the secret from the server's point of view with the UniformDH module.
    shared = server._key.exchange(c_hello[: uniformdh.SIZE])  # type: ignore[union-attr]
    magic = hmac.digest(shared, b"Initiator magic", hashlib.sha256)
    secret = hmac.digest(shared, b"Initiator obfuscated data", hashlib.sha256)
    at = first.index(magic)
    assert at <= 4097  # random padding before the magic
    dec = Cipher(algorithms.AES(secret[:16]), modes.CTR(secret[16:])).decryptor()
    assert dec.update(first[at + 32 :]) == b"hello obfs3"


def test_handshake_timeout_matches_obfs4proxy(tmp_path: Path) -> None:
    assert obfs3.SPEC.client({}).timeouts.handshake == 30.0  # type: ignore[attr-defined]
    assert obfs3.SPEC.server({}, ServerContext(state_dir=tmp_path)).timeouts.handshake == 30.0  # type: ignore[attr-defined]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_api_roundtrip_and_garbage_closes_quietly() -> None:
    short = Timeouts(handshake=0.5)  # also the linger after a failed handshake
    server = await ptdispatch.start_server(_echo, "obfs3", "127.0.0.1", 0, timeouts=short)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(os.urandom(uniformdh.SIZE + obfs3.SCAN_LIMIT))
        started = time.monotonic()
        received = await asyncio.wait_for(reader.read(-1), 5)
        assert time.monotonic() - started >= 0.4  # closed by its timeout, not at the failing byte
        assert len(received) <= uniformdh.SIZE + 4097  # its hello, nothing more
        writer.close()
        reader, writer = await ptdispatch.open_connection("obfs3", f"127.0.0.1:{port}")
        blob = os.urandom(1 << 20)
        writer.write(blob)
        assert await asyncio.wait_for(reader.readexactly(len(blob)), 10) == blob
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_silent_peer_times_out() -> None:
    """The server gives a silent peer its configured handshake timeout, then reports a
    HandshakeTimeout and closes without a byte."""
    errors: list[Exception] = []
    transport = RoleServer(Obfs3Engine, timeouts=Timeouts(handshake=0.3))
    server = await api.listen(transport, "127.0.0.1", 0, asyncio.Protocol, on_error=errors.append)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(os.urandom(100))  # less than a public key
        began = asyncio.get_running_loop().time()
        received = await asyncio.wait_for(reader.read(-1), 5)  # returns once the server gives up
        elapsed = asyncio.get_running_loop().time() - began
        writer.close()
        assert 0.25 <= elapsed < 2.0
        assert len(received) <= 192 + obfs3.PAD_MAX  # only its own handshake
        assert len(errors) == 1 and isinstance(errors[0], HandshakeTimeout)
        assert "0.3 s" in str(errors[0])
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("probe", "fails"),
    [
        pytest.param(b"\x00" * 40, True, id="short"),
        # Once the peer's key is in, the connection is established; EOF then is an ordinary close.
        pytest.param(os.urandom(uniformdh.SIZE + 100), False, id="key-then-eof"),
        pytest.param(os.urandom(uniformdh.SIZE + obfs3.SCAN_LIMIT), True, id="no-magic"),
    ],
)
async def test_server_reports_only_remote_protocol_errors(probe: bytes, fails: bool) -> None:
    errors: list[Exception] = []
    transport = api.server_transport("obfs3", {}, timeouts=Timeouts(handshake=0.3))  # a missing magic lingers this long
    server = await api.listen(transport, "127.0.0.1", 0, asyncio.Protocol, on_error=errors.append)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(probe)
        writer.write_eof()
        await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert all(isinstance(e, RemoteProtocolError) for e in errors)
        assert bool(errors) == fails
    finally:
        server.close()
        await server.wait_closed()
