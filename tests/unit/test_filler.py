"""The padding filler: a ChaCha20 keystream, used only when the engines draw from the OS."""

from __future__ import annotations

import os
import random

import pytest

from ptdispatch.crypto import filler
from ptdispatch.transports.obfs2 import HEADER_LEN, SEED_LEN, Obfs2Engine


def test_filler_lengths_and_no_repeats() -> None:
    pad = filler.Filler()
    assert pad(0) == b""
    chunks = [pad(n) for n in (1, 100, 8192, 20000)]
    assert [len(c) for c in chunks] == [1, 100, 8192, 20000]
    assert len({c[:1] + c[-1:] for c in chunks[1:]}) > 1  # a running stream, not the same bytes again
    assert pad(64) != pad(64)


def test_filler_rekeys_from_the_os_when_its_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    keys: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        keys.append(n)
        return real(n)

    monkeypatch.setattr(filler, "REKEY_BYTES", 1000)
    monkeypatch.setattr("ptdispatch.crypto.filler.os.urandom", urandom)
    pad = filler.Filler()
    assert keys == [32, 16]  # a ChaCha20 key and nonce from the OS
    pad(600)
    pad(400)  # exactly the budget: the same keystream
    assert keys == [32, 16]
    pad(1)  # one byte more: a fresh key first
    assert keys == [32, 16, 32, 16]


def test_pad_source_only_replaces_the_os() -> None:
    seeded = random.Random(1).randbytes
    assert filler.pad_source(seeded) is seeded
    assert filler.pad_source(os.urandom) is filler.padding


def test_obfs2_handshake_is_the_same_size_with_either_source() -> None:
    for rng in (os.urandom, random.Random(7).randbytes):
        engine = Obfs2Engine(True, rng)
        engine.initiate()
        out = engine.data_to_send()
        assert SEED_LEN + HEADER_LEN <= len(out) <= SEED_LEN + HEADER_LEN + 8192
