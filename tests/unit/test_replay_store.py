"""The shared-memory replay store: exact, bounded, expiring, shared across fork, and cheap."""

from __future__ import annotations

import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.replay import SeenFilter, SharedReplayStore, build
from ptdispatch.transports.obfs4.replay import StoreReplayFilter
from ptdispatch.transports.shadow.replay import StoreSaltFilter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STORE = SharedReplayStore(capacity=1 << 14)


def shared_size(capacity: int) -> int:
    from ptdispatch.replay import shared

    return shared.HEADER + capacity // shared.SLOTS * shared.BUCKET


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=200, unique=True), st.binary(max_size=8))
def test_exact_no_false_positives(keys: list[bytes], ns_salt: bytes) -> None:
    namespace = b"t" + ns_salt
    fresh = [k + b"/" + os.urandom(8) for k in keys]  # never seen by the shared store before
    for key in fresh:
        assert not STORE.contains(namespace, key)
        assert STORE.check_and_add(namespace, key, 60.0)
    for key in fresh:
        assert STORE.contains(namespace, key)
        assert not STORE.check_and_add(namespace, key, 60.0)


def test_namespaces_are_separate() -> None:
    store = SharedReplayStore(capacity=64)
    assert store.check_and_add(b"obfs4", b"k", 10)
    assert store.check_and_add(b"shadow", b"k", 10)
    assert not store.check_and_add(b"obfs4", b"k", 10)


def test_expiry() -> None:
    clock = FakeClock()
    store = SharedReplayStore(capacity=64, clock=clock)
    assert store.check_and_add(b"n", b"key", 10.0)
    clock.now += 9.9
    assert not store.check_and_add(b"n", b"key", 10.0)
    clock.now += 10.1
    assert not store.contains(b"n", b"key")
    assert store.check_and_add(b"n", b"key", 10.0)  # expired: new again


def test_bounded_memory_evicts_closest_to_expiry() -> None:
    clock = FakeClock()
    store = SharedReplayStore(capacity=64, clock=clock)  # 2 buckets of 32
    size = store.memory_bytes
    for i in range(10_000):
        clock.now += 0.001
        assert store.check_and_add(b"n", i.to_bytes(4, "big"), 3600.0)
    assert store.memory_bytes == size
    assert store.evictions == 10_000 - store.capacity
    assert store.memory_bytes == shared_size(64)
    # The newest keys are all still there.
    assert all(store.contains(b"n", i.to_bytes(4, "big")) for i in range(10_000 - 16, 10_000))


def test_shared_across_fork() -> None:
    store = SharedReplayStore(capacity=1024)
    pid = os.fork()
    if pid == 0:
        ok = store.check_and_add(b"n", b"from the child", 60)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not store.check_and_add(b"n", b"from the child", 60)


def test_lock_released_when_holder_is_killed() -> None:
    import signal

    from ptdispatch.replay import shared

    store = SharedReplayStore(capacity=64)
    pid = os.fork()
    if pid == 0:
        store._acquire()  # then die holding it
        time.sleep(30)
        os._exit(0)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)  # a zombie now (not reaped yet): still counted as dead
    started = time.monotonic()
    assert store.check_and_add(b"n", b"after the kill", 60)
    assert time.monotonic() - started < 1.0 + shared.STALE_AFTER
    os.waitpid(pid, 0)
    assert store.check_and_add(b"n", b"and again", 60)


def test_long_keys_are_digested() -> None:
    store = SharedReplayStore(capacity=64)
    long_key = os.urandom(200)
    assert store.check_and_add(b"n", long_key, 60)
    assert not store.check_and_add(b"n", long_key, 60)
    assert store.check_and_add(b"n", long_key[:-1], 60)


def test_transport_adapters() -> None:
    store = SharedReplayStore(capacity=256)
    one, two = StoreReplayFilter(store), StoreReplayFilter(store)  # two workers' obfs4 servers
    assert not one.test_and_set(0.0, b"mac" * 5)
    assert two.test_and_set(0.0, b"mac" * 5)
    salts_a, salts_b = StoreSaltFilter(store), StoreSaltFilter(store)
    assert salts_a.check_and_add(b"s" * 32)
    assert b"s" * 32 in salts_b
    assert not salts_b.check_and_add(b"s" * 32)
    salts_b.add(b"t" * 32)
    assert not salts_a.check_and_add(b"t" * 32)


def test_seen_filter_for_darkstar() -> None:
    store = SharedReplayStore(capacity=64)
    one, two = SeenFilter(store, b"darkstar", 60), SeenFilter(store, b"darkstar", 60)
    assert not one.seen(b"ephemeral")
    assert two.seen(b"ephemeral")


def test_build_picks_the_store() -> None:
    assert build(1, None, print) is None
    assert isinstance(build(2, None, print), SharedReplayStore)


def test_check_cost_under_20_microseconds() -> None:
    store = SharedReplayStore()
    keys = [os.urandom(16) for _ in range(20_000)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for key in keys:
            store.check_and_add(b"obfs4", key, 3600.0)
        best = min(best, (time.perf_counter() - started) / len(keys))
        keys = [os.urandom(16) for _ in range(20_000)]
    print(f"shared replay check: {best * 1e6:.2f} us")
    assert best < 20e-6


def test_keys_that_differ_in_a_few_bits_spread_over_the_buckets() -> None:
    store = SharedReplayStore(capacity=64)  # 2 buckets: a linear hash (CRC32) sent all of these to one
    for i in range(64):
        assert store.check_and_add(b"obfs4", i.to_bytes(4, "big"), 3600.0)
    assert store.evictions < 16
