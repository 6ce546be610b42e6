"""What every fuzz target shares: the registry, an input reader, chunking, and an engine driver."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports.base import Engine

Target = Callable[[bytes], None]
"""A fuzz target: consumes one input; raises only on a finding."""

TARGETS: dict[str, Target] = {}
"""Every registered target by name (see :mod:`fuzz.targets`, which imports all their modules)."""


def target(name: str) -> Callable[[Target], Target]:
    """Register a function as the fuzz target ``name``."""

    def register(fn: Target) -> Target:
        if name in TARGETS:
            raise ValueError(f"fuzz target {name!r} registered twice")
        TARGETS[name] = fn
        return fn

    return register


class Input:
    """Reads a fuzz input field by field; past its end every read gives zeros / ``b""``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return (self.byte() << 8) | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


_SIZES = (1, 2, 3, 5, 16, 17, 64, 200, 1448, 4096, 1 << 20)


def chunks(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut into pieces whose sizes are drawn (deterministically) from ``seed``: one byte
    at a time, a frame and a half, everything at once..."""
    if seed == 0:
        return [data]
    draw = random.Random(seed)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = draw.choice(_SIZES) if seed & 1 else draw.randint(1, 64)
        out.append(data[pos : pos + size])
        pos += size
    return out


def det_rng(label: bytes = b"") -> Callable[[int], bytes]:
    """A deterministic ``rng(n)`` (SHAKE-256 stream), so that every finding replays the same way."""
    state = [0]

    def rng(n: int) -> bytes:
        state[0] += 1
        return hashlib.shake_256(label + state[0].to_bytes(8, "big")).digest(n) if n else b""

    return rng


def drive(engine: Engine, pieces: list[bytes]) -> None:
    """Run ``engine`` as the adapter does: initiate, then feed each piece and take its output,
    stopping at the first ``RemoteProtocolError`` (the only error an engine may raise)."""
    engine.initiate()
    _take(engine)
    try:
        for piece in pieces:
            engine.receive_data(piece)
            _take(engine)
            if engine.established:
                engine.send_data(b"reply")
                _take(engine)
    except RemoteProtocolError as exc:
        if not exc.linger >= 0:
            raise AssertionError(f"negative linger {exc.linger}") from exc


def _take(engine: Engine) -> None:
    engine.data_to_send()


def engine_target(name: str, new_engine: Callable[[Input], Engine]) -> None:
    """Register ``name``: the input's first byte picks the chunking, ``new_engine(input)`` may read
    more bytes to configure a fresh engine, and the rest is fed to it as the peer's bytes.

    One line registers a new transport's engine, e.g. (in :mod:`fuzz.engines`)::

        engine_target("darkstar-server", lambda inp: DarkStarServer(OPTIONS).new_engine())
    """

    def fuzz_one(data: bytes) -> None:
        inp = Input(data)
        seed = inp.byte()
        engine = new_engine(inp)
        drive(engine, chunks(inp.rest(), seed))

    target(name)(fuzz_one)
