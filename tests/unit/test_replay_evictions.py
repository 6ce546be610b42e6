"""Every replay filter counts, in ``ptdispatch_replay_evictions_total{filter}``, the entries it drops
before they expired to make room: what an operator needs to see that a filter is too small."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from ptdispatch.replay import SharedReplayStore
from ptdispatch.transports.darkstar.replay import ReplayFilter as DarkStarFilter
from ptdispatch.transports.obfs4.replay import ReplayFilter as Obfs4Filter
from ptdispatch.transports.shadow.replay import SaltFilter

NAME = "ptdispatch_replay_evictions_total"


def evictions(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(NAME, {"filter": name}) or 0.0


def test_obfs4_counts_the_live_entries_it_drops_not_the_expired_ones(registry: CollectorRegistry) -> None:
    full = Obfs4Filter(ttl=100.0, max_entries=4)
    for i in range(10):
        assert not full.test_and_set(float(i), bytes([i]))
    assert len(full) == 4
    assert evictions(registry, "obfs4") == 6
    expiring = Obfs4Filter(ttl=1.0, max_entries=4)
    for i in range(10):
        assert not expiring.test_and_set(float(2 * i), bytes([i]))  # each entry expired before the next
    assert evictions(registry, "obfs4") == 6


def test_obfs4_filter_at_its_cap_stays_cheap(registry: CollectorRegistry) -> None:
    """Expiring a whole burst, and evicting at the cap, take time in proportion to what goes, not to
    the filter's size (a plain dict's front deletions took 3 s for the first, 40 µs each for the second)."""
    full = Obfs4Filter(ttl=10.0, max_entries=100 * 1024)
    for i in range(100 * 1024):
        full.test_and_set(0.0, i.to_bytes(8, "big"))
    start = time.perf_counter()
    full.test_and_set(11.0, b"expires all the others")
    for i in range(100 * 1024 - 1):  # fill it again, then 20,000 more: each one evicts
        full.test_and_set(12.0, (i + 10**6).to_bytes(8, "big"))
    for i in range(20_000):
        full.test_and_set(12.0, (i + 10**7).to_bytes(8, "big"))
    assert len(full) == 100 * 1024
    assert time.perf_counter() - start < 2.0  # about 0.15 s here; the dict took over 3 s


def test_salt_filters_count_the_older_set_at_each_turn(registry: CollectorRegistry) -> None:
    salts = SaltFilter(4)
    for i in range(13):  # turns at the 5th (nothing older yet), the 9th and the 13th salt
        assert salts.check_and_add(bytes([i]))
    assert evictions(registry, "shadow") == 8
    for salt in (b"a", b"b", b"c", b"d"):  # our own sent salts fill the same sets: the 4th turns them
        salts.add(salt)
    assert evictions(registry, "shadow") == 12
    keys = DarkStarFilter(capacity=4)
    for i in range(9):
        assert not keys.seen(bytes([i]))
    assert evictions(registry, "darkstar") == 4
    assert evictions(registry, "shadow") == 12


def test_the_shared_store_counts_under_the_namespace_of_the_entry_dropped(registry: CollectorRegistry) -> None:
    store = SharedReplayStore(capacity=64)
    for i in range(1000):
        assert store.check_and_add(b"obfs4", i.to_bytes(4, "big"), 3600.0)
    assert evictions(registry, "obfs4") == store.evictions == 1000 - store.capacity
    for i in range(1000):  # the first salt in each bucket pushes out a live obfs4 entry, then expired salts go
        assert store.check_and_add(b"shadow", i.to_bytes(4, "big"), 0.0)
    assert evictions(registry, "obfs4") == store.evictions == 1000 - store.capacity + 2
    assert evictions(registry, "shadow") == 0
