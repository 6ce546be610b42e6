"""-replayStore redis://: against a real redis-server on loopback (started and stopped here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ptdispatch.replay import SharedReplayStore
from ptdispatch.replay.redis_store import RedisReplayStore
from tests.peers.redis import RedisServer, redis_server

pytestmark = pytest.mark.interop


def node(url: str, warnings: list[str], retry_after: float = 5.0) -> RedisReplayStore:
    """One fleet node's store: its own shared-memory layer, Redis shared with the others."""
    return RedisReplayStore(url, SharedReplayStore(capacity=4096), warn=warnings.append, retry_after=retry_after)


def test_two_nodes_share_replay_state(tmp_path: Path) -> None:
    warnings: list[str] = []
    with redis_server(tmp_path) as redis:
        one, two = node(redis.url, warnings), node(redis.url, warnings)
        key = os.urandom(16)
        assert one.check_and_add(b"obfs4", key, 60)
        assert not two.check_and_add(b"obfs4", key, 60)  # seen on the other node
        assert not one.check_and_add(b"obfs4", key, 60)  # and locally
        assert two.check_and_add(b"shadow", key, 60)  # namespaces stay apart
    assert warnings == []


def test_expiry_is_redis_ttl(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        one, two = node(redis.url, []), node(redis.url, [])
        assert one.check_and_add(b"n", b"short", 0.2)
        time.sleep(0.4)
        assert two.check_and_add(b"n", b"short", 0.2)


def test_redis_down_then_back(tmp_path: Path) -> None:
    warnings: list[str] = []
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        one = node(redis.url, warnings, retry_after=0.3)
        two = node(redis.url, [], retry_after=0.3)
        assert one.check_and_add(b"n", b"before", 60)
        redis.stop()
        started = time.monotonic()
        for i in range(200):  # under load: the local store decides, without waiting on Redis each time
            assert one.check_and_add(b"n", b"during %d" % i, 60)
        assert time.monotonic() - started < 2.0
        assert not one.check_and_add(b"n", b"during 7", 60)  # local replays still refused
        assert len(warnings) == 1 and "unreachable" in warnings[0] and not one.up
        redis.start()  # same port, empty
        time.sleep(0.4)
        assert one.check_and_add(b"n", b"after", 60)
        assert one.up and len(warnings) == 2 and "back" in warnings[1]
        assert not two.check_and_add(b"n", b"after", 60)  # shared again
    finally:
        redis.stop()


def test_check_cost_under_200_microseconds(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        store = node(redis.url, [])
        store.check_and_add(b"n", b"warm-up", 60)
        best = float("inf")
        for _ in range(3):
            keys = [os.urandom(16) for _ in range(2000)]
            started = time.perf_counter()
            for key in keys:
                store.check_and_add(b"obfs4", key, 60)
            best = min(best, (time.perf_counter() - started) / len(keys))
        print(f"redis replay check on loopback: {best * 1e6:.1f} us")
        assert best < 200e-6
