"""obfs2 engines: in-memory client/server pairs, pipelining, bad input, options, the asyncio API."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import ptdispatch
from ptdispatch import api
from ptdispatch.errors import HandshakeTimeout, OptionsError, RemoteProtocolError
from ptdispatch.transports import obfs2
from ptdispatch.transports.base import RoleClient, RoleServer, ServerContext, Timeouts
from ptdispatch.transports.obfs2 import Obfs2Engine


def pump(a: Obfs2Engine, b: Obfs2Engine) -> tuple[bytes, bytes]:
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


def pair() -> tuple[Obfs2Engine, Obfs2Engine]:
    client, server = Obfs2Engine(True), Obfs2Engine(False)
    client.initiate()
    server.initiate()
    return client, server


def test_pair_roundtrip_both_ways() -> None:
    client, server = pair()
    assert not client.established and not server.established
    pump(client, server)
    assert client.established and server.established
    up, down = os.urandom(100_000), os.urandom(70_000)
    client.send_data(up)
    server.send_data(down)
    got_client, got_server = pump(client, server)
    assert got_server == up and got_client == down


def test_ciphertext_is_not_plaintext() -> None:
    client, server = pair()
    pump(client, server)
    client.send_data(b"A" * 64)
    wire = client.data_to_send()
    assert len(wire) == 64 and b"AAAA" not in wire
    assert server.receive_data(wire) == b"A" * 64


def test_data_in_the_same_chunk_as_the_handshake() -> None:
    """The server's reply and its first data arrive as one chunk (and vice versa)."""
    client, server = Obfs2Engine(True), Obfs2Engine(False)
    client.initiate()
    hello = client.data_to_send()
    assert server.receive_data(hello) == b""  # server reads client's handshake first
    assert server.established
    server.send_data(b"server speaks first")
    assert client.receive_data(server.data_to_send()) == b"server speaks first"
    client.send_data(b"and the client answers")
    assert server.receive_data(client.data_to_send()) == b"and the client answers"


def test_data_queued_before_the_handshake_is_sent_after_it() -> None:
    client, server = pair()
    client.send_data(b"early")
    client.send_data(b" bird")
    got_client, got_server = pump(client, server)
    assert got_server == b"early bird" and got_client == b""


def test_server_answers_without_waiting_for_the_client() -> None:
    server = Obfs2Engine(False)
    server.initiate()
    hello = server.data_to_send()
    assert obfs2.SEED_LEN + 8 <= len(hello) <= obfs2.SEED_LEN + 8 + obfs2.MAX_PADDING


def test_byte_at_a_time_handshake() -> None:
    client, server = pair()
    server.send_data(b"x")  # queued until keys exist
    c_hello, s_hello = client.data_to_send(), server.data_to_send()
    for i in range(len(c_hello)):
        assert server.receive_data(c_hello[i : i + 1]) == b""
    out = b"".join(client.receive_data(s_hello[i : i + 1]) for i in range(len(s_hello)))
    out += client.receive_data(server.data_to_send())
    assert out == b"x"


def _scripted(values: list[bytes]) -> Callable[[int], bytes]:
    it = iter(values)

    def rng(n: int) -> bytes:
        value = next(it)
        assert len(value) == n
        return value

    return rng


def _handshake(seed: bytes, label: bytes, magic: int, pad_len: int, pad: bytes = b"") -> bytes:
    secret = hashlib.sha256(label + seed + label).digest()
    enc = Cipher(algorithms.AES(secret[:16]), modes.CTR(secret[16:])).encryptor()
    return seed + enc.update(struct.pack(">II", magic, pad_len) + pad)


def test_handshake_bytes_follow_the_spec_formulas() -> None:
    """SEED || AES-CTR(MAC(pad string, own seed))(magic || padlen || padding)."""
    seed, pad = bytes(range(16)), b"\xaa" * 5
    engine = Obfs2Engine(True, _scripted([seed, b"\x00\x05", pad]))
    engine.initiate()
    assert engine.data_to_send() == _handshake(seed, b"Initiator obfuscation padding", 0x2BF5CA7E, 5, pad)
    server = Obfs2Engine(False, _scripted([seed, b"\x00\x00"]))
    server.initiate()
    assert server.data_to_send() == _handshake(seed, b"Responder obfuscation padding", 0x2BF5CA7E, 0)


def test_padding_length_upper_bound_is_8192() -> None:
    # 8192 is the largest value random_below(8193) can return; the sampler rejects 57351 and up.
    engine = Obfs2Engine(True, _scripted([bytes(16), (57350).to_bytes(2, "big"), bytes(8192)]))
    engine.initiate()
    assert len(engine.data_to_send()) == 16 + 8 + 8192


def test_peer_padding_of_8192_is_accepted_8193_refused() -> None:
    seed = os.urandom(16)
    ok = _handshake(seed, b"Initiator obfuscation padding", obfs2.MAGIC, 8192, bytes(8192))
    server = Obfs2Engine(False)
    assert server.receive_data(ok) == b"" and server.established
    bad = _handshake(seed, b"Initiator obfuscation padding", obfs2.MAGIC, 8193)
    with pytest.raises(RemoteProtocolError, match="padding"):
        Obfs2Engine(False).receive_data(bad)


def test_wrong_magic_is_refused() -> None:
    bad = _handshake(os.urandom(16), b"Initiator obfuscation padding", obfs2.MAGIC ^ 1, 0)
    with pytest.raises(RemoteProtocolError, match="magic"):
        Obfs2Engine(False).receive_data(bad)


def test_a_bad_header_lingers_on_a_server_not_on_a_client() -> None:
    """A server's bad header closes when a timeout would have (nothing told to a prober); a
    client's fails at once."""
    now = time.monotonic()
    bad_from_client = _handshake(os.urandom(16), b"Initiator obfuscation padding", obfs2.MAGIC ^ 1, 0)
    server = Obfs2Engine(False)
    server.start(now, Timeouts(handshake=30.0))
    with pytest.raises(RemoteProtocolError) as failed:
        server.receive_data(bad_from_client)
    assert failed.value.linger > 25.0
    bad_from_server = _handshake(os.urandom(16), b"Responder obfuscation padding", obfs2.MAGIC ^ 1, 0)
    client = Obfs2Engine(True)
    client.start(now, Timeouts(handshake=30.0))
    with pytest.raises(RemoteProtocolError) as failed:
        client.receive_data(bad_from_server)
    assert failed.value.linger == 0.0


def test_own_direction_label_is_refused() -> None:
    """A server's handshake reflected back at it (responder label) does not pass as a client's."""
    server = Obfs2Engine(False)
    server.initiate()
    with pytest.raises(RemoteProtocolError):
        Obfs2Engine(False).receive_data(server.data_to_send())


def test_truncated_handshake_waits_without_error() -> None:
    client = Obfs2Engine(True)
    client.initiate()
    hello = client.data_to_send()
    server = Obfs2Engine(False)
    assert server.receive_data(hello[:-1]) == b""
    assert not server.established


def test_handshake_timeout_matches_obfs4proxy(tmp_path: Path) -> None:
    assert obfs2.SPEC.client({}).timeouts.handshake == 30.0  # type: ignore[attr-defined]
    assert obfs2.SPEC.server({}, ServerContext(state_dir=tmp_path)).timeouts.handshake == 30.0  # type: ignore[attr-defined]


def test_options() -> None:
    client = obfs2.SPEC.client({})
    assert isinstance(client, RoleClient)
    assert isinstance(client.new_engine(None), Obfs2Engine)
    with pytest.raises(OptionsError, match="shared-secret"):
        obfs2.SPEC.client({"shared-secret": "x"})
    with pytest.raises(OptionsError, match="shared-secret"):
        obfs2.SPEC.server({"shared-secret": "x"}, ServerContext(state_dir=Path(".")))


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_api_roundtrip_and_garbage_closes_quietly() -> None:
    short = Timeouts(handshake=0.5)  # also the linger after a failed handshake
    server = await ptdispatch.start_server(_echo, "obfs2", "127.0.0.1", 0, timeouts=short)
    port = server.sockets[0].getsockname()[1]
    try:
        # A prober sending garbage is cut off without a word of obfs2 beyond the server's hello.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(os.urandom(64))
        started = time.monotonic()
        received = await asyncio.wait_for(reader.read(-1), 5)
        assert time.monotonic() - started >= 0.4  # closed by its timeout, not at the failing byte
        assert len(received) <= 16 + 8 + obfs2.MAX_PADDING
        writer.close()
        # ...and the listener keeps working.
        reader, writer = await ptdispatch.open_connection("obfs2", f"127.0.0.1:{port}")
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
    transport = RoleServer(Obfs2Engine, timeouts=Timeouts(handshake=0.3))
    server = await api.listen(transport, "127.0.0.1", 0, asyncio.Protocol, on_error=errors.append)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = asyncio.get_running_loop().time()
        received = await asyncio.wait_for(reader.read(-1), 5)  # returns once the server gives up
        elapsed = asyncio.get_running_loop().time() - began
        writer.close()
        assert 0.25 <= elapsed < 2.0
        assert len(received) <= 16 + 8 + obfs2.MAX_PADDING  # only its own handshake
        assert len(errors) == 1 and isinstance(errors[0], HandshakeTimeout)
        assert "0.3 s" in str(errors[0])
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param(b"\x00" * 40, id="zeros"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", id="truncated"),
    ],
)
async def test_server_reports_only_remote_protocol_errors(probe: bytes) -> None:
    errors: list[Exception] = []
    transport = api.server_transport("obfs2", {}, timeouts=Timeouts(handshake=0.3))  # a bad header lingers this long
    server = await api.listen(transport, "127.0.0.1", 0, asyncio.Protocol, on_error=errors.append)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(probe)
        writer.write_eof()  # a truncated handshake ends in EOF
        await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert errors and all(isinstance(e, RemoteProtocolError) for e in errors)
    finally:
        server.close()
        await server.wait_closed()
