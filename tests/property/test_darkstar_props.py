"""What only the DarkStar family (shadow's DarkStar, Starbridge, Replicant) needs beyond the conformance suite.

tests/conformance runs every transport's chunking and garbage properties, these three included
(rows shadow-darkstar, starbridge, replicant, replicant-none): data cut anywhere after a whole
handshake, garbage into a server, into a client and after the handshake.  What it does not cut is
the handshake itself, nor messages longer than one DarkStar frame (16383 bytes of payload): here
the handshake flights (DarkStar's key and confirmation, Starbridge's SMTP toneburst lines,
Replicant's toneburst) are split at the same arbitrary points as messages of up to 20,000 bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptdispatch.transports.base import Engine
from tests.chunking import split
from tests.unit.test_darkstar_pairs import make_client, make_server

_DIR = Path(tempfile.mkdtemp(prefix="darkstar-props-"))
SERVERS = {name: make_server(name, _DIR / name) for name in ("shadow", "Starbridge", "Replicant")}
NAMES = st.sampled_from(sorted(SERVERS))


def _feed(engine: Engine, pieces: list[bytes]) -> bytes:
    return b"".join(engine.receive_data(p) for p in pieces)


def _run(c: Engine, s: Engine, cuts: list[int]) -> None:
    """Handshake with every flight split at ``cuts``."""
    c.initiate()
    s.initiate()
    for _ in range(8):
        to_s, to_c = c.data_to_send(), s.data_to_send()
        if to_s:
            assert _feed(s, split(to_s, cuts)) == b""
        if to_c:
            assert _feed(c, split(to_c, cuts)) == b""
        if c.established and s.established and not to_s and not to_c:
            return
    raise AssertionError("no handshake")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=NAMES,
    messages=st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
)
def test_cut_handshakes_and_long_messages_give_the_same_plaintext(
    name: str, messages: list[bytes], cuts: list[int]
) -> None:
    server = SERVERS[name]
    c, s = make_client(name, server).new_engine(None), server.new_engine()
    _run(c, s, cuts)
    for m in messages:
        c.send_data(m)
    assert _feed(s, split(c.data_to_send(), cuts)) == b"".join(messages)
    for m in messages:
        s.send_data(m)
    assert _feed(c, split(s.data_to_send(), cuts)) == b"".join(messages)
