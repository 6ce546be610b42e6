"""shadow engines: in-memory client/server pairs, options, and every kind of bad input."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ptdispatch.errors import OptionsError, RemoteProtocolError
from ptdispatch.net.addr import Address
from ptdispatch.transports import registry
from ptdispatch.transports.base import ServerContext
from ptdispatch.transports.shadow import SPEC, ShadowClient, ShadowServer, parse_config
from ptdispatch.transports.shadow.ciphers import CIPHERS, TAG_SIZE, derive_subkey
from ptdispatch.transports.shadow.engine import HANDSHAKE_TIMEOUT, LINGER, ShadowClientEngine, ShadowServerEngine
from ptdispatch.transports.shadow.framing import MAX_PAYLOAD
from ptdispatch.transports.shadow.header import decode_address, encode_address
from ptdispatch.transports.shadow.replay import SaltFilter

ALL_CIPHERS = list(CIPHERS)
DEST = Address("192.0.2.1", 8080)


def pair(
    cipher: str = "chacha20-ietf-poly1305", password: str = "pw", dest: Address = DEST
) -> tuple[ShadowClientEngine, ShadowServerEngine, ShadowServer]:
    config = parse_config({"password": password, "cipherName": cipher})
    server = ShadowServer(config)
    return ShadowClient(config).new_engine(dest), server.new_engine(), server


def opening(client: ShadowClientEngine) -> bytes:
    client.initiate()
    return client.data_to_send()


# --- pairs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ALL_CIPHERS)
@pytest.mark.parametrize("dest", [DEST, Address("2001:db8::5", 443), Address("example.com", 80)])
def test_pair_roundtrip(cipher: str, dest: Address) -> None:
    client, server, _ = pair(cipher, dest=dest)
    assert client.established and not server.established
    assert server.receive_data(opening(client)) == b""
    assert server.established
    assert server.requested_destination == dest
    up = os.urandom(3 * MAX_PAYLOAD + 123)
    client.send_data(up)
    assert server.receive_data(client.data_to_send()) == up
    down = os.urandom(100_000)
    server.send_data(down)
    assert client.receive_data(server.data_to_send()) == down
    for size in (1, 2, MAX_PAYLOAD, MAX_PAYLOAD + 1):
        client.send_data(b"x" * size)
        assert server.receive_data(client.data_to_send()) == b"x" * size


def test_full_chunks_for_bulk_data() -> None:
    client, _, _ = pair()
    opening(client)
    client.send_data(b"a" * (2 * MAX_PAYLOAD))
    wire = client.data_to_send()
    assert len(wire) == 2 * (MAX_PAYLOAD + 2 * TAG_SIZE + 2)


def test_small_writes_share_a_chunk() -> None:
    client, server, _ = pair()
    client.initiate()
    for _ in range(10):
        client.send_data(b"abc")
    wire = client.data_to_send()
    header = encode_address(DEST)
    assert len(wire) == 32 + 2 + 16 + len(header) + 30 + 16  # salt, one chunk: header and all data
    assert server.receive_data(wire) == b"abc" * 10


def test_server_salt_only_with_first_reply() -> None:
    client, server, _ = pair()
    server.receive_data(opening(client))
    assert server.data_to_send() == b""
    server.send_data(b"hi")
    first = server.data_to_send()
    assert len(first) == 32 + 18 + 2 + 16
    server.send_data(b"hi")
    assert len(server.data_to_send()) == 18 + 2 + 16
    assert client.receive_data(first) == b"hi"


def test_nonce_is_little_endian_counter() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    config = parse_config({"password": "pw", "cipherName": "chacha20-ietf-poly1305"})
    salt = bytes(range(32))
    client = ShadowClient(config, rng=lambda n: salt[:n]).new_engine(DEST)
    wire = opening(client)
    aead = ChaCha20Poly1305(derive_subkey(config.master_key, salt))
    header = encode_address(DEST)
    assert wire[:32] == salt
    assert aead.decrypt((0).to_bytes(12, "little"), wire[32:50], None) == len(header).to_bytes(2, "big")
    assert aead.decrypt((1).to_bytes(12, "little"), wire[50:], None) == header


def test_data_waits_for_initiate_then_header_first() -> None:
    client, server, _ = pair()
    client.send_data(b"early")  # send_data before initiate still puts the header first
    assert server.receive_data(client.data_to_send()) == b"early"
    assert server.requested_destination == DEST


# --- options -----------------------------------------------------------------------------------


def test_registered() -> None:
    # That the destination travels in the stream: test_shadow_api.py::test_requested_destination_through_get_extra_info.
    assert registry.lookup("shadow") is SPEC


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("AEAD_CHACHA20_POLY1305", "chacha20-ietf-poly1305"),
        ("aead_aes_256_gcm", "aes-256-gcm"),
        ("AEAD_AES_128_GCM", "aes-128-gcm"),
        ("CHACHA20-IETF-POLY1305", "chacha20-ietf-poly1305"),
        ("AES-192-GCM", "aes-192-gcm"),
        ("XChaCha20-IETF-Poly1305", "xchacha20-ietf-poly1305"),
    ],
)
def test_cipher_spellings(spelling: str, canonical: str) -> None:
    assert parse_config({"password": "pw", "cipherName": spelling}).cipher.name == canonical


@pytest.mark.parametrize("key", ["cipher", "method"])
def test_cipher_key_aliases(key: str) -> None:
    assert parse_config({"password": "pw", key: "aes-128-gcm"}).cipher.name == "aes-128-gcm"


def test_default_cipher() -> None:
    assert parse_config({"password": "pw"}).cipher.name == "chacha20-ietf-poly1305"


def test_unknown_cipher_names_supported_ones() -> None:
    with pytest.raises(OptionsError) as info:
        SPEC.client({"password": "pw", "cipherName": "rc4-md5"})
    message = str(info.value)
    assert "rc4-md5" in message
    for name in ALL_CIPHERS:
        assert name in message
    with pytest.raises(OptionsError):
        SPEC.server({"password": "pw", "cipherName": "aes-256-cfb"}, ServerContext(state_dir=Path(".")))


def test_missing_password_and_key() -> None:
    with pytest.raises(OptionsError, match="password") as info:
        SPEC.client({"cipherName": "aes-256-gcm"})
    assert info.value.missing  # SOCKS per-connection arguments may still supply it
    with pytest.raises(OptionsError, match="password"):
        SPEC.client({"cipherName": "aes-256-gcm", "password": ""})


def test_password_and_key_together_rejected() -> None:
    with pytest.raises(OptionsError, match="not both"):
        SPEC.client({"password": "pw", "key": base64.b64encode(bytes(32)).decode()})


def test_key_option_url_safe_base64_like_ss_libev() -> None:
    raw = bytes(range(250, 256)) + bytes(range(26))  # 0xfa.. gives '-' and '_' in URL-safe base64
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_config({"key": text, "cipherName": "aes-256-gcm"}).master_key == raw
    assert parse_config({"key": base64.b64encode(raw).decode()}).master_key == raw
    # longer keys are cut to size, as ss-libev does
    assert parse_config({"key": text, "cipherName": "aes-128-gcm"}).master_key == raw[:16]


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(bytes(16)).decode()])
def test_key_option_rejects_bad_keys(bad: str) -> None:
    with pytest.raises(OptionsError, match="'key'"):
        SPEC.client({"key": bad, "cipherName": "chacha20-ietf-poly1305"})


def test_client_target_option_used_without_destination() -> None:
    client_transport = SPEC.client({"password": "pw", "target": "example.org:8443"})
    assert isinstance(client_transport, ShadowClient)
    server = ShadowServer(client_transport.config).new_engine()
    engine = client_transport.new_engine(None)
    server.receive_data(opening(engine))
    assert server.requested_destination == Address("example.org", 8443)
    # a per-connection destination wins over the target option
    engine = client_transport.new_engine(Address("10.0.0.1", 1))
    server = ShadowServer(client_transport.config).new_engine()
    server.receive_data(opening(engine))
    assert server.requested_destination == Address("10.0.0.1", 1)


@pytest.mark.parametrize("target", ["no-port", "host:0", "host:99999", "::1:80"])
def test_bad_target_option(target: str) -> None:
    with pytest.raises(OptionsError, match="target"):
        SPEC.client({"password": "pw", "target": target})


def test_no_destination_at_all() -> None:
    client = SPEC.client({"password": "pw"})
    assert isinstance(client, ShadowClient)
    with pytest.raises(OptionsError, match="target"):
        client.new_engine(None)


def test_destination_name_too_long() -> None:
    client = SPEC.client({"password": "pw"})
    assert isinstance(client, ShadowClient)
    with pytest.raises(OptionsError):
        client.new_engine(Address("a" * 256, 80))


# --- address header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "header"),
    [
        (Address("127.0.0.1", 80), b"\x01\x7f\x00\x00\x01\x00\x50"),
        (Address("::1", 443), b"\x04" + bytes(15) + b"\x01\x01\xbb"),
        (Address("[::1]", 443), b"\x04" + bytes(15) + b"\x01\x01\xbb"),
        (Address("example.com", 8080), b"\x03\x0bexample.com\x1f\x90"),
        (Address("1.2.3", 1), b"\x03\x051.2.3\x00\x01"),  # not an IPv4 literal: sent as a name
    ],
)
def test_encode_address_bytes(address: Address, header: bytes) -> None:
    assert encode_address(address) == header
    parsed = decode_address(header)
    assert parsed is not None and parsed[1] == len(header)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x7f\x00\x00", b"\x03\x00\x00\x50", b"\x03\x05abc", b"\x04" + bytes(10), b"\x02abcdef", b"\x05\x00"],
)
def test_decode_address_rejects_malformed(data: bytes) -> None:
    assert decode_address(data) is None


# --- bad input -------------------------------------------------------------------------------


def expect_quiet_failure(server: ShadowServerEngine, data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(data)
    assert LINGER[0] <= info.value.linger <= LINGER[1]
    return info.value


@pytest.mark.parametrize("cipher", ALL_CIPHERS)
def test_wrong_password(cipher: str) -> None:
    client, _, _ = pair(cipher, password="right")
    _, server, _ = pair(cipher, password="wrong")
    expect_quiet_failure(server, opening(client))


def test_bad_tag_in_payload_and_length() -> None:
    client, server, _ = pair()
    wire = bytearray(opening(client))
    wire[-1] ^= 1
    expect_quiet_failure(server, bytes(wire))
    client, server, _ = pair()
    wire = bytearray(opening(client))
    wire[33] ^= 0x80
    expect_quiet_failure(server, bytes(wire))


def test_bad_tag_later_in_stream() -> None:
    client, server, _ = pair()
    server.receive_data(opening(client))
    client.send_data(b"x" * 50_000)
    wire = bytearray(client.data_to_send())
    wire[40_000] ^= 4
    expect_quiet_failure(server, bytes(wire))


def forged(length: int, body: bytes = b"", cipher: str = "chacha20-ietf-poly1305") -> tuple[ShadowServerEngine, bytes]:
    """A correctly keyed stream whose first chunk declares ``length`` (possibly illegal)."""
    config = parse_config({"password": "pw", "cipherName": cipher})
    salt = os.urandom(32)
    aead = config.aead_for(salt)
    wire = salt + aead.encrypt(bytes(12), length.to_bytes(2, "big"), None)
    if body:
        wire += aead.encrypt((1).to_bytes(12, "little"), body, None)
    return ShadowServer(config).new_engine(), wire


@pytest.mark.parametrize("length", [0, MAX_PAYLOAD + 1, 0xFFFF])
def test_zero_or_oversized_length(length: int) -> None:
    server, wire = forged(length)
    expect_quiet_failure(server, wire)


@pytest.mark.parametrize(
    "body", [b"\x01\x7f\x00", b"\x03\x09short", b"\x04" + bytes(17), b"\x09abcdefg", b"\x03\x00\x00\x50"]
)
def test_truncated_or_malformed_header(body: bytes) -> None:
    server, wire = forged(len(body), body)
    error = expect_quiet_failure(server, wire)
    assert "header" in str(error)


def test_header_split_across_chunks_is_rejected() -> None:
    # ss-libev needs the whole header in the first chunk; so do we.
    server, wire = forged(3, b"\x01\x7f\x00")
    expect_quiet_failure(server, wire)


def test_random_bytes() -> None:
    _, server, _ = pair()
    expect_quiet_failure(server, os.urandom(200))


def test_short_garbage_waits_without_reply() -> None:
    _, server, _ = pair()
    assert server.receive_data(os.urandom(40)) == b""
    assert server.data_to_send() == b"" and not server.established


def test_replayed_salt_rejected_everything_else_works() -> None:
    client, server, transport = pair()
    wire = opening(client)
    client.send_data(b"secret")
    wire += client.data_to_send()
    assert server.receive_data(wire) == b"secret"
    error = expect_quiet_failure(transport.new_engine(), wire)
    assert "salt" in str(error)
    # a fresh client on the same listener is fine
    fresh = ShadowClient(transport.config).new_engine(DEST)
    other = transport.new_engine()
    other.receive_data(opening(fresh))
    assert other.established


def test_reflected_server_stream_rejected() -> None:
    client, server, transport = pair()
    server.receive_data(opening(client))
    server.send_data(encode_address(DEST) + b"reply")
    reflected = server.data_to_send()
    expect_quiet_failure(transport.new_engine(), reflected)


def test_client_rejects_bad_server_stream() -> None:
    client, server, _ = pair()
    server.receive_data(opening(client))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(os.urandom(100))


def test_garbage_salt_not_remembered() -> None:
    _, _, transport = pair()
    before = len(transport.salts)
    with pytest.raises(RemoteProtocolError):
        transport.new_engine().receive_data(os.urandom(100))
    assert len(transport.salts) == before


def test_random_timeouts_in_range() -> None:
    _, server, _ = pair()
    low, high = HANDSHAKE_TIMEOUT
    assert low <= server.handshake_timeout <= high
    lingers = {ShadowServer(parse_config({"password": "pw"})).new_engine().linger for _ in range(20)}
    assert len(lingers) > 1


# --- replay filter ---------------------------------------------------------------------------


def test_salt_filter_is_bounded_and_remembers_at_least_capacity() -> None:
    salts = SaltFilter(capacity=4)
    for i in range(100):
        assert salts.check_and_add(bytes([i]))
        assert len(salts) <= 8
    for i in range(96, 100):
        assert not salts.check_and_add(bytes([i]))
    assert bytes([0]) not in salts
    with pytest.raises(ValueError):
        SaltFilter(0)


def test_writes_larger_than_the_scratch_buffer() -> None:
    client, server, _ = pair("aes-256-gcm")
    server.receive_data(opening(client))
    blob = os.urandom(5 << 20)
    client.send_data(blob)
    wire = client.data_to_send()
    assert len(wire) == len(blob) + -(-len(blob) // MAX_PAYLOAD) * (2 + 2 * TAG_SIZE)
    assert server.receive_data(wire) == blob


def test_eof_inside_a_chunk_is_a_remote_error() -> None:
    client, server, _ = pair()
    client.initiate()
    client.send_data(b"data")
    out = client.data_to_send()
    server.receive_data(out)
    server.receive_eof()  # between chunks: an ordinary end
    client.send_data(b"more")
    with pytest.raises(RemoteProtocolError, match="inside a chunk"):
        server.receive_data(client.data_to_send()[:-3])
        server.receive_eof()
    client2, server2, _ = pair()
    client2.initiate()
    with pytest.raises(RemoteProtocolError):
        server2.receive_data(client2.data_to_send()[:10])
        server2.receive_eof()  # inside the salt, during the handshake
