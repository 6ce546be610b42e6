"""The server's replay filter: client handshake MACs seen in the last three hours."""

from __future__ import annotations

from collections import OrderedDict

from ... import metrics
from ...replay.base import ReplayStore

REPLAY_TTL = 3 * 3600.0
MAX_ENTRIES = 100 * 1024


class ReplayFilter:
    """``test_and_set`` answers whether a key was seen within ``ttl`` seconds, and records it.

    Entries are kept in insertion order, so expiry pops from the front; the filter is capped at
    ``max_entries`` (oldest dropped first, counted in ``ptdispatch_replay_evictions_total``), as
    obfs4proxy caps its own.  An ``OrderedDict``, not a ``dict``: deleting from the front of a dict
    leaves holes that every later look at its first entry walks (about 40 µs a handshake at the cap,
    and seconds for one check that expires a whole burst), where ``popitem(last=False)`` is O(1).
    """

    __slots__ = ("_entries", "_max", "_ttl")

    def __init__(self, ttl: float = REPLAY_TTL, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._ttl = ttl
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def test_and_set(self, now: float, key: bytes) -> bool:
        entries = self._entries
        self._expire(now)
        if key in entries:
            return True
        if len(entries) >= self._max:
            entries.popitem(last=False)  # not expired (those went above): a replay of it would pass
            metrics.replay_evicted("obfs4")
        entries[key] = now
        return False

    def _expire(self, now: float) -> None:
        entries = self._entries
        limit = now - self._ttl
        while entries:
            seen = next(iter(entries.values()))
            if seen >= limit:
                break
            entries.popitem(last=False)


class StoreReplayFilter(ReplayFilter):
    """The same check against a :class:`~ptdispatch.replay.base.ReplayStore` shared by every worker
    (and every node, with Redis); the store keeps its own time, so ``now`` is not used."""

    __slots__ = ("_store",)

    def __init__(self, store: ReplayStore, ttl: float = REPLAY_TTL) -> None:
        super().__init__(ttl)
        self._store = store

    def test_and_set(self, now: float, key: bytes) -> bool:
        return not self._store.check_and_add(b"obfs4", key, self._ttl)
