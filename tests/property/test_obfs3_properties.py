"""obfs3 properties: any chunking of the wire gives the same plaintext; garbage gives only
RemoteProtocolError (at the latest once 192 + 8194 + 32 bytes hold no magic)."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.crypto import uniformdh
from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.obfs3 import SCAN_LIMIT, Obfs3Engine


def drbg(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic rng (SHA-256 in counter mode), so an engine can be rebuilt identically."""
    state = {"n": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state["n"] += 1
            out += hashlib.sha256(seed + state["n"].to_bytes(8, "big")).digest()
        return out[:n]

    return rng


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def client_stream(seed: bytes, payloads: list[bytes]) -> bytes:
    client, server = Obfs3Engine(True, drbg(b"c" + seed)), Obfs3Engine(False, drbg(b"s" + seed))
    client.initiate()
    server.initiate()
    wire = client.data_to_send()
    client.receive_data(server.data_to_send())
    for payload in payloads:
        client.send_data(payload)
    return wire + client.data_to_send()


@settings(max_examples=100, deadline=None)
@given(
    seed=st.binary(min_size=1, max_size=8),
    payloads=st.lists(st.binary(min_size=1, max_size=3000), max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=30_000), max_size=40),
)
def test_any_chunking_gives_the_same_plaintext(seed: bytes, payloads: list[bytes], cuts: list[int]) -> None:
    wire = client_stream(seed, payloads)
    server = Obfs3Engine(False, drbg(b"s" + seed))
    server.initiate()
    got = b"".join(server.receive_data(chunk) for chunk in split(wire, cuts))
    assert server.established
    assert got == b"".join(payloads)


@settings(max_examples=100, deadline=None)
@given(
    head=st.binary(max_size=400),
    filler=st.integers(min_value=0, max_value=SCAN_LIMIT + 200),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
    initiator=st.booleans(),
)
def test_garbage_raises_only_remote_protocol_error(head: bytes, filler: int, cuts: list[int], initiator: bool) -> None:
    garbage = head + os.urandom(filler)
    engine = Obfs3Engine(initiator)
    engine.initiate()
    try:
        for chunk in split(garbage, cuts):
            assert engine.receive_data(chunk) == b""  # garbage never yields plaintext
    except RemoteProtocolError:
        assert len(garbage) >= uniformdh.SIZE + SCAN_LIMIT
        return
    assert len(garbage) < uniformdh.SIZE + SCAN_LIMIT
    assert engine.established == (len(garbage) >= uniformdh.SIZE)
