"""Engine-level properties of every engine transport (sans-IO: no sockets, simulated time).

* any chunking of the wire gives the same plaintext, both ways;
* garbage into a server, a client or either side after the handshake raises only ``RemoteProtocolError``
  (and authenticated frames never yield plaintext from it);
* a stream that ends inside a frame (framed transports) or a handshake is a ``RemoteProtocolError``.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.base import Engine, EngineClientTransport, EngineServerTransport
from tests.chunking import split
from tests.conformance.pairs import PAIRS, TIMEOUTS, pair_ids, shared_server

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def engines(pair_id: str) -> tuple[Engine, Engine]:
    pair = PAIRS[pair_id]
    server = shared_server(pair_id)
    client = pair.client(server)
    if not isinstance(server, EngineServerTransport) or not isinstance(client, EngineClientTransport):
        pytest.skip(f"{pair_id} is not an engine transport")
    c, s = client.new_engine(pair.destination), server.new_engine()
    c.start(0.0, TIMEOUTS)
    s.start(0.0, TIMEOUTS)
    c.initiate()
    s.initiate()
    return c, s


def wire(engine: Engine) -> bytes:
    """Everything the engine writes, running its timer (pacing) on a simulated clock."""
    out = [engine.data_to_send()]
    while engine.buffered_size():
        when = engine.get_timer()
        assert when is not None, "queued output needs a timer"
        engine.handle_timer(when)
        out.append(engine.data_to_send())
    return b"".join(out)


def feed(engine: Engine, pieces: list[bytes]) -> bytes:
    return b"".join(engine.receive_data(p) for p in pieces if p)


def connect(c: Engine, s: Engine) -> None:
    """Exchange handshakes until both sides are established."""
    for _ in range(4):
        s.receive_data(wire(c))
        c.receive_data(wire(s))
        if c.established and s.established:
            return
    raise AssertionError("the handshake did not complete")


@pytest.mark.parametrize("pair_id", pair_ids(engine=True))
@SETTINGS
@given(
    messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=10),
)
def test_any_chunking_gives_the_same_bytes_both_ways(pair_id: str, messages: list[bytes], cuts: list[int]) -> None:
    c, s = engines(pair_id)
    connect(c, s)
    for m in messages:
        c.send_data(m)
    assert feed(s, split(wire(c), cuts)) == b"".join(messages)
    for m in messages:
        s.send_data(m)
    assert feed(c, split(wire(s), cuts)) == b"".join(messages)


@pytest.mark.parametrize("pair_id", pair_ids(where="handshake", engine=True))
@SETTINGS
@given(chunks=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=5))
def test_garbage_raises_only_remote_protocol_error(pair_id: str, chunks: list[bytes]) -> None:
    _, s = engines(pair_id)
    try:
        for chunk in chunks:
            s.receive_data(chunk)
            wire(s)
        s.receive_eof()
    except RemoteProtocolError:
        return
    # Garbage that did not fail must not have been taken for a handshake (the odds are nil).
    assert not s.established


@pytest.mark.parametrize("pair_id", pair_ids(where="framed", engine=True))
@pytest.mark.parametrize("after_length", [False, True], ids=["before-the-last-byte", "right-after-a-length"])
def test_eof_inside_a_frame_is_an_error(pair_id: str, after_length: bool) -> None:
    # Right after a frame's length nothing is held back unread, but the frame's payload is owed.
    header = PAIRS[pair_id].length_header
    assert header, f"{pair_id} is framed: its row must give its length_header"
    c, s = engines(pair_id)
    connect(c, s)
    c.send_data(b"x" * 5000)
    data = wire(c)
    s.receive_data(data[:header] if after_length else data[:-1])
    with pytest.raises(RemoteProtocolError):
        s.receive_eof()


@pytest.mark.parametrize("pair_id", pair_ids(where="handshake", engine=True))
def test_eof_inside_the_handshake_is_an_error(pair_id: str) -> None:
    c, s = engines(pair_id)
    hello = wire(c)
    s.receive_data(hello[:8])  # less than any handshake message
    with pytest.raises(RemoteProtocolError):
        s.receive_eof()


@pytest.mark.parametrize("pair_id", pair_ids(engine=True))
def test_eof_between_frames_is_an_ordinary_end(pair_id: str) -> None:
    c, s = engines(pair_id)
    connect(c, s)
    c.send_data(b"complete")
    assert s.receive_data(wire(c)) == b"complete"
    s.receive_eof()


@pytest.mark.parametrize("pair_id", pair_ids(where="handshake", engine=True))
@SETTINGS
@given(garbage=st.binary(min_size=1, max_size=12_000))
def test_garbage_into_a_client_raises_only_remote_protocol_error(pair_id: str, garbage: bytes) -> None:
    c, _ = engines(pair_id)
    wire(c)
    with contextlib.suppress(RemoteProtocolError):
        c.receive_data(garbage)
        c.receive_eof()


@pytest.mark.parametrize("pair_id", pair_ids(engine=True))
@SETTINGS
@given(chunks=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=4), to_server=st.booleans())
def test_garbage_after_the_handshake_raises_only_remote_protocol_error(
    pair_id: str, chunks: list[bytes], to_server: bool
) -> None:
    """Either side; authenticated frames (``framed``) also never turn garbage into plaintext."""
    c, s = engines(pair_id)
    connect(c, s)
    target = s if to_server else c
    with contextlib.suppress(RemoteProtocolError):
        for chunk in chunks:
            plaintext = target.receive_data(chunk)
            assert not (PAIRS[pair_id].framed and plaintext), f"garbage gave {len(plaintext)} plaintext bytes"
        target.receive_eof()
