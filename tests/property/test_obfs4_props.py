"""Properties of the obfs4 engines: chunking never matters; garbage only raises RemoteProtocolError."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.base import Engine
from ptdispatch.transports.obfs4 import Obfs4Server
from tests.unit.test_obfs4_pairs import handshake, make_client, make_server, wire

_DIR = Path(tempfile.mkdtemp(prefix="obfs4-props-"))
SERVER: Obfs4Server = make_server(_DIR)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def _feed(engine: Engine, pieces: list[bytes]) -> bytes:
    return b"".join(engine.receive_data(p) for p in pieces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.binary(min_size=1, max_size=4000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
    iat_mode=st.sampled_from([0, 1, 2]),
)
def test_any_chunking_gives_the_same_plaintext(messages: list[bytes], cuts: list[int], iat_mode: int) -> None:
    server = make_server(Path(tempfile.mkdtemp(dir=_DIR)), iat_mode) if iat_mode else SERVER
    c, s = make_client(server, iat_mode).new_engine(None), server.new_engine()
    c.initiate()
    hello = wire(c)
    assert _feed(s, _split(hello, cuts)) == b""
    assert s.established
    for m in messages:
        s.send_data(m)
    reply_and_data = wire(s)
    assert _feed(c, _split(reply_and_data, cuts)) == b"".join(messages)
    for m in messages:
        c.send_data(m)
    assert _feed(s, _split(wire(c), cuts)) == b"".join(messages)


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=6))
def test_garbage_into_server_only_raises_remote_error(chunks: list[bytes]) -> None:
    engine = SERVER.new_engine()
    try:
        for chunk in chunks:
            assert engine.receive_data(chunk) == b""
            assert wire(engine) == b""
    except RemoteProtocolError:
        pass
    try:
        engine.receive_data(os.urandom(9000))
    except RemoteProtocolError as exc:
        assert exc.linger > 0
    else:
        raise AssertionError("8 KiB without a handshake must fail")


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), min_size=1, max_size=6))
def test_garbage_after_handshake_only_raises_remote_error(chunks: list[bytes]) -> None:
    c, s = make_client(SERVER).new_engine(None), SERVER.new_engine()
    handshake(c, s)
    for target in (s, c):
        try:
            for chunk in chunks:
                assert target.receive_data(chunk) == b""
        except RemoteProtocolError:
            pass


@settings(max_examples=80, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=9000))
def test_garbage_into_client_only_raises_remote_error(garbage: bytes) -> None:
    c = make_client(SERVER).new_engine(None)
    c.initiate()
    try:
        assert c.receive_data(garbage) == b""
        assert not c.established
    except RemoteProtocolError:
        pass
