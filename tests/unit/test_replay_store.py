"""The shared-memory replay store: exact, bounded, expiring, shared across fork, and cheap."""

from __future__ import annotations

import os
import time
from types import FrameType

import pytest
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

    return capacity // shared.SLOTS * shared.BUCKET


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

    store = SharedReplayStore(capacity=64)
    pid = os.fork()
    if pid == 0:
        store._acquire()  # then die holding it
        time.sleep(30)
        os._exit(0)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)  # a zombie now (not reaped yet): the kernel dropped its lock as it died
    started = time.monotonic()
    assert store.check_and_add(b"n", b"after the kill", 60)
    assert time.monotonic() - started < 1.0
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
    assert build(1, None, print, print) is None
    assert isinstance(build(2, None, print, print), SharedReplayStore)


def test_redis_back_is_an_info_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis lost is a WARN line; Redis back again an INFO line (build passes both through)."""
    import redis

    from ptdispatch.replay.redis_store import RedisReplayStore

    logged: list[tuple[str, str]] = []
    store = build(
        2, "redis://127.0.0.1:1/0", lambda m: logged.append(("WARN", m)), lambda m: logged.append(("INFO", m))
    )
    assert isinstance(store, RedisReplayStore)
    monkeypatch.setattr(store, "_retry_after", 0.0)
    answers: list[Exception | bool] = [redis.ConnectionError("refused"), True]

    def set_nx(_key: bytes, _ttl: float) -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(store, "_set_nx", set_nx)
    assert store.check_and_add(b"obfs4", b"a", 60.0)
    assert store.check_and_add(b"obfs4", b"b", 60.0)
    assert [level for level, _ in logged] == ["WARN", "INFO"]
    assert "is back" in logged[1][1]


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


def _wait_exit(pid: int, timeout: float) -> int | None:
    """The exit code of child ``pid``, or None (and the child killed) when it runs past ``timeout``."""
    import signal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _check_until_killed_at(store: SharedReplayStore, point: int) -> None:
    """In a forked child: check keys, and SIGKILL ourselves before running line ``point`` (counted
    over the lines the lock's functions run, from the first check on)."""
    import signal
    import sys

    from ptdispatch.replay import shared

    lines = 0

    def trace(frame: FrameType, event: str, _arg: object) -> object:
        nonlocal lines
        code = frame.f_code
        if code.co_filename != shared.__file__ or code.co_name not in ("check_and_add", "_acquire"):
            return None
        if event == "line":
            if lines == point:
                os.kill(os.getpid(), signal.SIGKILL)
            lines += 1
        return trace

    sys.settrace(trace)  # type: ignore[arg-type]
    while True:
        store.check_and_add(b"n", os.urandom(16), 60.0)


def test_a_holder_killed_at_any_point_never_stops_the_others() -> None:
    """SIGKILL a worker checking keys at each line of a check in turn (30 kills: taking the lock,
    inside it, giving it back): a fresh process gets through every time."""
    store = SharedReplayStore(capacity=1 << 12)
    for point in range(30):  # a check runs about 20 lines of these functions: 30 points cover them all
        victim = os.fork()
        if victim == 0:
            _check_until_killed_at(store, point)
        _, status = os.waitpid(victim, 0)
        assert os.WIFSIGNALED(status)
        probe = os.fork()
        if probe == 0:
            os._exit(0 if store.check_and_add(b"n", b"after kill %d" % point, 60.0) else 1)
        assert _wait_exit(probe, 2.0) == 0, f"killed before line {point} of a check: the lock went with it"


def test_one_holder_at_a_time_after_a_holder_dies() -> None:
    """A worker dies inside the critical section; three others then check keys at once: never two of
    them inside together (the clock is read inside the lock, so a clock that notices company tells),
    and none of them gets an error for a lock released under it."""
    import mmap
    import signal

    inside = mmap.mmap(-1, 2)  # [0]: someone is inside; [1]: two were inside at once

    def watching_clock() -> float:
        if inside[0]:
            inside[1] = 1
        inside[0] = 1
        time.sleep(0.0002)
        inside[0] = 0
        return time.monotonic()

    def stuck_clock() -> float:
        os.write(w, b"x")
        time.sleep(60)
        return time.monotonic()

    for trial in range(15):
        store = SharedReplayStore(capacity=64)
        r, w = os.pipe()
        holder = os.fork()
        if holder == 0:
            store._clock = stuck_clock
            store.check_and_add(b"n", b"never finished", 60.0)
            os._exit(0)
        assert os.read(r, 1) == b"x"  # it holds the lock now
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        os.close(w)
        go_r, go_w = os.pipe()
        waiters = []
        for i in range(3):
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                os.read(go_r, 1)  # start together
                store._clock = watching_clock
                try:
                    for j in range(50):
                        store.check_and_add(b"n", b"%d-%d" % (i, j), 60.0)
                except ValueError:
                    os._exit(2)
                os._exit(0)
            waiters.append(pid)
        os.write(go_w, b"xxx")
        for fd in (r, go_r, go_w):
            os.close(fd)
        assert [_wait_exit(pid, 5.0) for pid in waiters] == [0, 0, 0], f"trial {trial}"
        assert not inside[1], f"trial {trial}: two workers inside the lock at once"


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:secret@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=secret",
        "redis://:secret@127.0.0.1:1/0?password=secret#secret",
        "unix:///run/redis.sock?db=0&password=secret",
    ],
)
def test_redis_password_never_logged(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    from ptdispatch.replay.redis_store import RedisReplayStore

    logged: list[str] = []
    store = RedisReplayStore(url, SharedReplayStore(capacity=64), warn=logged.append, info=logged.append)

    def refused(_key: bytes, _ttl: float) -> bool:
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(store, "_set_nx", refused)
    assert store.check_and_add(b"obfs4", b"a", 60.0)
    assert len(logged) == 1 and "secret" not in logged[0], logged
    assert ("127.0.0.1:1/0" if url.startswith("redis") else "/run/redis.sock") in logged[0]
