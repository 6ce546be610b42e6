"""Properties of the DarkStar, Starbridge and Replicant engines: chunking never matters; garbage
only raises RemoteProtocolError."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.base import Engine
from tests.unit.test_darkstar_pairs import make_client, make_server

_DIR = Path(tempfile.mkdtemp(prefix="darkstar-props-"))
SERVERS = {name: make_server(name, _DIR / name) for name in ("shadow", "Starbridge", "Replicant")}
NAMES = st.sampled_from(sorted(SERVERS))


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


def _run(c: Engine, s: Engine, cuts: list[int]) -> None:
    """Handshake with every flight split at ``cuts``."""
    c.initiate()
    s.initiate()
    for _ in range(8):
        to_s, to_c = c.data_to_send(), s.data_to_send()
        if to_s:
            assert _feed(s, _split(to_s, cuts)) == b""
        if to_c:
            assert _feed(c, _split(to_c, cuts)) == b""
        if c.established and s.established and not to_s and not to_c:
            return
    raise AssertionError("no handshake")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=NAMES,
    messages=st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
)
def test_any_chunking_gives_the_same_plaintext(name: str, messages: list[bytes], cuts: list[int]) -> None:
    server = SERVERS[name]
    c, s = make_client(name, server).new_engine(None), server.new_engine()
    _run(c, s, cuts)
    for m in messages:
        c.send_data(m)
    assert _feed(s, _split(c.data_to_send(), cuts)) == b"".join(messages)
    for m in messages:
        s.send_data(m)
    assert _feed(c, _split(s.data_to_send(), cuts)) == b"".join(messages)


@settings(max_examples=150, deadline=None)
@given(name=NAMES, chunks=st.lists(st.binary(max_size=3000), max_size=6))
def test_garbage_into_server_only_raises_remote_error(name: str, chunks: list[bytes]) -> None:
    engine = SERVERS[name].new_engine()
    engine.initiate()
    try:
        for chunk in chunks:
            engine.receive_data(chunk)
        engine.receive_data(os.urandom(1000))
    except RemoteProtocolError as exc:
        assert exc.linger > 0
    else:
        assert not engine.established


@settings(max_examples=100, deadline=None)
@given(name=NAMES, chunks=st.lists(st.binary(max_size=3000), min_size=1, max_size=6), to_server=st.booleans())
def test_garbage_after_handshake_only_raises_remote_error(name: str, chunks: list[bytes], to_server: bool) -> None:
    server = SERVERS[name]
    c, s = make_client(name, server).new_engine(None), server.new_engine()
    _run(c, s, [])
    target = s if to_server else c
    try:
        for chunk in chunks:
            assert target.receive_data(chunk) == b""
    except RemoteProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(name=NAMES, garbage=st.binary(min_size=1, max_size=9000))
def test_garbage_into_client_only_raises_remote_error(name: str, garbage: bytes) -> None:
    c = make_client(name, SERVERS[name]).new_engine(None)
    c.initiate()
    with contextlib.suppress(RemoteProtocolError):
        c.receive_data(garbage)
