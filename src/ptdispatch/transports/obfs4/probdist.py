"""obfs4's seeded length / delay distributions (``common/probdist`` in obfs4proxy).

The *shape* of a distribution is derived from a 24-byte seed exactly as obfs4proxy does it
(Go's ``math/rand`` driven by the hash DRBG: a permutation of the possible values, up to 100 of
them kept, uniform random weights, Vose's alias tables), so a client that is sent a server's
seed pads like that server's Go peers would.  Samples are then drawn with the engine's own
randomness, as obfs4proxy draws them from its CSPRNG.
"""

from __future__ import annotations

import bisect
import functools

from ...crypto.drbg import HashDrbg
from ..base import Rng

MAX_VALUES = 100


class GoRand:
    """The parts of Go's ``math/rand.Rand`` that obfs4 uses, over a :class:`HashDrbg` source."""

    __slots__ = ("_src",)

    def __init__(self, source: HashDrbg) -> None:
        self._src = source

    def int63(self) -> int:
        return self._src.int63()

    def int31n(self, n: int) -> int:
        if n & (n - 1) == 0:
            return (self.int63() >> 32) & (n - 1)
        limit = (1 << 31) - 1 - (1 << 31) % n
        v = self.int63() >> 32
        while v > limit:
            v = self.int63() >> 32
        return v % n

    def intn(self, n: int) -> int:
        return self.int31n(n)

    def float64(self) -> float:
        while True:
            f = float(self.int63()) / (1 << 63)
            if f != 1.0:
                return f

    def perm(self, n: int) -> list[int]:
        m = [0] * n
        intn = self.int31n
        for i in range(n):
            j = intn(i + 1)
            m[i] = m[j]
            m[j] = i
        return m


def _alias_tables(weights: list[float]) -> tuple[list[float], list[int]]:
    """Vose's alias method, step for step as obfs4proxy's ``genTables``."""
    n = len(weights)
    total = sum(weights)
    alias = [0] * n
    prob = [0.0] * n
    scaled = [w * float(n) / total for w in weights]
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        lo = small.pop(0)
        g = large.pop(0)
        prob[lo] = scaled[lo]
        alias[lo] = g
        scaled[g] = (scaled[g] + scaled[lo]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    for i in large + small:
        prob[i] = 1.0
    return prob, alias


@functools.lru_cache(maxsize=64)
def distribution(seed: bytes, low: int, high: int, biased: bool = False) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(values, cumulative probabilities)`` of the distribution obfs4proxy builds from ``seed``."""
    rng = GoRand(HashDrbg(seed))
    count = high + 1 - low
    values = rng.perm(count)
    count = max(1, min(count, MAX_VALUES))
    count = rng.intn(count) + 1
    values = values[:count]
    weights: list[float] = []
    if biased:
        culm = 0.0
        for _ in values:
            p = (1.0 - culm) * rng.float64()
            weights.append(p)
            culm += p
    else:
        weights = [rng.float64() for _ in values]
    prob, alias = _alias_tables(weights)
    # Turn the alias tables into plain per-value probabilities (what Sample() realises).
    mass = [p / count for p in prob]
    for i, p in enumerate(prob):
        mass[alias[i]] += (1.0 - p) / count
    cumulative: list[float] = []
    acc = 0.0
    for m in mass:
        acc += m
        cumulative.append(acc)
    return tuple(low + v for v in values), tuple(cumulative)


class Sampler:
    """Draws from a seeded distribution using injected randomness (pooled to keep calls cheap)."""

    __slots__ = ("_cumulative", "_pool", "_pos", "_rng", "_values")

    def __init__(self, seed: bytes, low: int, high: int, rng: Rng) -> None:
        self._rng = rng
        self._pool = b""
        self._pos = 0
        self._values, self._cumulative = distribution(seed, low, high)

    def reset(self, seed: bytes, low: int, high: int) -> None:
        self._values, self._cumulative = distribution(seed, low, high)

    @property
    def values(self) -> tuple[int, ...]:
        return self._values

    def sample(self) -> int:
        pos = self._pos
        if pos + 7 > len(self._pool):
            self._pool = self._rng(512)
            pos = 0
        self._pos = pos + 7
        u = int.from_bytes(self._pool[pos : pos + 7], "big") / 72057594037927936.0  # 2**56
        cumulative = self._cumulative
        idx = bisect.bisect_right(cumulative, u * cumulative[-1])
        values = self._values
        return values[idx if idx < len(values) else -1]
