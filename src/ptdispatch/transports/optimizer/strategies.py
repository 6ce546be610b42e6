"""Optimizer's strategies: in which order to try the child transports for one connection.

A strategy sees only child indices.  :meth:`Strategy.order` is asked once per connection and
returns every index, the preferred first (the rest are the failover order);
:meth:`Strategy.report` hears how each attempt went.  One strategy object lives as long as its
Optimizer client, so what it learns lasts for the life of the process.

These follow what the README of Optimizer-go describes, not what its v3.0.2 code does (see the
operator-foundation notes, section 6): ``random`` is random, ``rotate`` starts at the first child,
``track`` and ``minimizeDialDuration`` remember across connections.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` unless a test injects another)."""

RETRY_AFTER = 60.0
"""``track``: seconds a child whose last dial failed is passed over before it is preferred again."""
REMEASURE_AFTER = 300.0
"""``minimizeDialDuration``: seconds after which a child's measurement is stale and it is tried first
once, to measure it again (a failed child is retried the same way)."""
SMOOTHING = 0.5
"""``minimizeDialDuration``: weight of a new measurement against the previous estimate."""


class Strategy(ABC):
    """Chooses the order of ``count`` children for each connection."""

    def __init__(self, count: int, *, clock: Clock = time.monotonic) -> None:
        if count < 1:
            raise ValueError("a strategy needs at least one child")
        self.count = count
        self._clock = clock

    @abstractmethod
    def order(self) -> list[int]:
        """Every child index once: the one to try first, then the failover order."""

    def report(self, index: int, ok: bool, seconds: float) -> None:  # noqa: B027 - optional hook
        """A dial through child ``index`` succeeded or failed after ``seconds``."""


class First(Strategy):
    """Always the first child; the others only when it fails, in their order."""

    def order(self) -> list[int]:
        return list(range(self.count))


class Random(Strategy):
    """A uniformly random child each connection (failover in random order too)."""

    def __init__(self, count: int, *, clock: Clock = time.monotonic, rng: random.Random | None = None) -> None:
        super().__init__(count, clock=clock)
        self._rng = rng if rng is not None else random.SystemRandom()

    def order(self) -> list[int]:
        return self._rng.sample(range(self.count), self.count)


class Rotate(Strategy):
    """Round robin from the first child: connection k starts at child k mod n."""

    def __init__(self, count: int, *, clock: Clock = time.monotonic) -> None:
        super().__init__(count, clock=clock)
        self._next = 0

    def order(self) -> list[int]:
        start, self._next = self._next, (self._next + 1) % self.count
        return [(start + i) % self.count for i in range(self.count)]


class Track(Strategy):
    """The first child whose last dial did not fail; children that failed within
    :data:`RETRY_AFTER` seconds come last (oldest failure first), so they are still tried before
    a connection is given up."""

    def __init__(self, count: int, *, clock: Clock = time.monotonic, retry_after: float = RETRY_AFTER) -> None:
        super().__init__(count, clock=clock)
        self.retry_after = retry_after
        self._failed_at: dict[int, float] = {}

    def order(self) -> list[int]:
        now = self._clock()
        benched = {i: at for i, at in self._failed_at.items() if now - at < self.retry_after}
        usable = [i for i in range(self.count) if i not in benched]
        return usable + sorted(benched, key=lambda i: (benched[i], i))

    def report(self, index: int, ok: bool, seconds: float) -> None:
        if ok:
            self._failed_at.pop(index, None)
        else:
            self._failed_at[index] = self._clock()


class MinimizeDialDuration(Strategy):
    """Each child once (in order) to measure it, then the fastest measured dial first.

    A dial time is measured on every attempt (smoothed with :data:`SMOOTHING`); a failed dial
    counts as infinitely slow.  A child not measured for :data:`REMEASURE_AFTER` seconds goes
    first once more, so a child that recovered or got faster is noticed.
    """

    def __init__(self, count: int, *, clock: Clock = time.monotonic, remeasure_after: float = REMEASURE_AFTER) -> None:
        super().__init__(count, clock=clock)
        self.remeasure_after = remeasure_after
        self._seconds: dict[int, float] = {}
        self._measured_at: dict[int, float] = {}

    def order(self) -> list[int]:
        now = self._clock()
        unmeasured = [i for i in range(self.count) if i not in self._seconds]
        stale = sorted(
            (i for i, at in self._measured_at.items() if now - at >= self.remeasure_after),
            key=lambda i: (self._measured_at[i], i),
        )
        ranked = sorted((i for i in self._seconds if i not in stale), key=lambda i: (self._seconds[i], i))
        return unmeasured + stale + ranked

    def report(self, index: int, ok: bool, seconds: float) -> None:
        previous = self._seconds.get(index, math.inf)
        if not ok:
            estimate = math.inf
        elif math.isinf(previous):
            estimate = seconds
        else:
            estimate = SMOOTHING * seconds + (1 - SMOOTHING) * previous
        self._seconds[index] = estimate
        self._measured_at[index] = self._clock()

    def estimate(self, index: int) -> float | None:
        """The current dial-time estimate of child ``index`` (None: never measured)."""
        return self._seconds.get(index)


STRATEGIES: dict[str, type[Strategy]] = {
    "first": First,
    "random": Random,
    "rotate": Rotate,
    "track": Track,
    "minimizeDialDuration": MinimizeDialDuration,
}
"""Strategy names as Optimizer-go spells them (we match them in any letter case)."""


def lookup(name: str) -> type[Strategy] | None:
    folded = name.lower()
    return next((cls for key, cls in STRATEGIES.items() if key.lower() == folded), None)
