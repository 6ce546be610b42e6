"""shadow properties: chunking never matters; garbage and tampering only ever give RemoteProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.net.addr import Address
from ptdispatch.transports.shadow import ShadowClient, ShadowServer, parse_config
from ptdispatch.transports.shadow.ciphers import CIPHERS
from tests.chunking import split

CONFIGS = {name: parse_config({"password": "prop", "cipherName": name}) for name in CIPHERS}
ciphers = st.sampled_from(sorted(CIPHERS))
writes = st.lists(st.binary(min_size=0, max_size=40_000), min_size=0, max_size=6)
DEST = Address("example.net", 443)


def client_stream(cipher: str, messages: list[bytes]) -> bytes:
    client = ShadowClient(CONFIGS[cipher]).new_engine(DEST)
    client.initiate()
    wire = [client.data_to_send()]
    for message in messages:
        client.send_data(message)
        wire.append(client.data_to_send())
    return b"".join(wire)


@settings(max_examples=60, deadline=None)
@given(cipher=ciphers, messages=writes, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_gives_the_same_plaintext(cipher: str, messages: list[bytes], cuts: list[int]) -> None:
    wire = client_stream(cipher, messages)
    server = ShadowServer(CONFIGS[cipher]).new_engine()
    plain = b"".join(server.receive_data(piece) for piece in split(wire, cuts))
    assert plain == b"".join(messages)
    assert server.requested_destination == DEST


@settings(max_examples=40, deadline=None)
@given(cipher=ciphers, messages=writes, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_server_to_client_any_chunking(cipher: str, messages: list[bytes], cuts: list[int]) -> None:
    config = CONFIGS[cipher]
    server = ShadowServer(config).new_engine()
    client = ShadowClient(config).new_engine(DEST)
    client.initiate()
    server.receive_data(client.data_to_send())
    wire = []
    for message in messages:
        server.send_data(message)
        wire.append(server.data_to_send())
    stream = b"".join(wire)
    assert b"".join(client.receive_data(piece) for piece in split(stream, cuts)) == b"".join(messages)


@settings(max_examples=80, deadline=None)
@given(cipher=ciphers, garbage=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0), max_size=5))
def test_random_bytes_only_remote_protocol_error(cipher: str, garbage: bytes, cuts: list[int]) -> None:
    for engine in (ShadowServer(CONFIGS[cipher]).new_engine(), ShadowClient(CONFIGS[cipher]).new_engine(DEST)):
        try:
            for piece in split(garbage, cuts):
                assert engine.receive_data(piece) == b""
        except RemoteProtocolError:
            pass


@settings(max_examples=80, deadline=None)
@given(cipher=ciphers, messages=writes, position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_detected(cipher: str, messages: list[bytes], position: int, bit: int) -> None:
    wire = bytearray(client_stream(cipher, messages))
    wire[position % len(wire)] ^= 1 << bit
    server = ShadowServer(CONFIGS[cipher]).new_engine()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(bytes(wire))


@settings(max_examples=40, deadline=None)
@given(cipher=ciphers, messages=writes, cut=st.integers(min_value=0))
def test_truncated_stream_yields_a_prefix(cipher: str, messages: list[bytes], cut: int) -> None:
    wire = client_stream(cipher, messages)
    server = ShadowServer(CONFIGS[cipher]).new_engine()
    got = server.receive_data(wire[: cut % (len(wire) + 1)])
    assert b"".join(messages).startswith(got)
