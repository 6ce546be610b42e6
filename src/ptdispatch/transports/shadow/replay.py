"""A bounded salt replay filter, in the manner of shadowsocks-libev's ``ppbloom``.

ss-libev keeps two Bloom filters of fixed capacity and starts afresh with the older one when the
newer fills up ("ping-pong").  We do the same with two exact sets: a salt is remembered for at least
``capacity`` further salts and at most ``2 * capacity``, so memory is bounded (about 100 bytes per
salt: 2**16 capacity is ~13 MB at worst) and there are no false positives.
"""

from __future__ import annotations

from ... import metrics
from ...replay.base import ReplayStore

DEFAULT_CAPACITY = 1 << 16


class SaltFilter:
    """Salts seen recently (received ones and our own sent ones, as ss-libev does).  ``name`` labels
    the salts the older set drops at each turn in ``ptdispatch_replay_evictions_total``."""

    __slots__ = ("_capacity", "_current", "_name", "_previous")

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, name: str = "shadow") -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._name = name
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()

    def __contains__(self, salt: object) -> bool:
        return salt in self._current or salt in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def add(self, salt: bytes) -> None:
        if len(self._current) >= self._capacity:
            self._turn()
        self._current.add(salt)

    def check_and_add(self, salt: bytes) -> bool:
        """Remember ``salt``; ``False`` if it was already known (a replay)."""
        current = self._current
        if salt in current or salt in self._previous:
            return False
        if len(current) >= self._capacity:
            self._turn()
            self._current.add(salt)
        else:
            current.add(salt)
        return True

    def _turn(self) -> None:
        """The newer set is full: it becomes the older one, and the older one's salts are forgotten."""
        metrics.replay_evicted(self._name, len(self._previous))
        self._previous, self._current = self._current, set()


SALT_TTL = 3600.0
"""How long a shared store remembers a salt (the in-process filter counts salts instead)."""


class StoreSaltFilter(SaltFilter):
    """The same filter over a :class:`~ptdispatch.replay.base.ReplayStore` shared by every worker."""

    __slots__ = ("_store", "_ttl")

    def __init__(self, store: ReplayStore, ttl: float = SALT_TTL) -> None:
        super().__init__()
        self._store = store
        self._ttl = ttl

    def __contains__(self, salt: object) -> bool:
        return isinstance(salt, bytes) and self._store.contains(b"shadow", salt)

    def add(self, salt: bytes) -> None:
        self._store.check_and_add(b"shadow", salt, self._ttl)

    def check_and_add(self, salt: bytes) -> bool:
        return self._store.check_and_add(b"shadow", salt, self._ttl)
