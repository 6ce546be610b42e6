"""The meek client's pool of idle keep-alive connections: reuse, bounds and idle expiry."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

import pytest

from ptdispatch.net.upstream import DIRECT
from ptdispatch.transports.meek import http
from ptdispatch.transports.meek.options import ClientOptions, MeekUrl


class FakeConnection:
    """What the pool looks at: ``reusable``, ``alive`` and ``close``."""

    def __init__(self) -> None:
        self.reusable = True
        self.alive = True
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.alive = False


OPTIONS = ClientOptions(MeekUrl.parse("http://127.0.0.1:1/"))


def _put(pool: http.ConnectionPool, conn: FakeConnection) -> None:
    pool.put(OPTIONS, DIRECT, conn)  # type: ignore[arg-type]  # a stand-in for HttpClientConnection


async def _get(pool: http.ConnectionPool) -> object:
    return await pool.get(OPTIONS, DIRECT)


def _pool(monkeypatch: pytest.MonkeyPatch, idle_timeout: float = 30.0) -> http.ConnectionPool:
    monkeypatch.setattr(http, "IDLE_TIMEOUT", idle_timeout)

    async def never(options: ClientOptions, dialer: object) -> object:
        raise AssertionError("no new connection expected")

    monkeypatch.setattr(http.HttpClientConnection, "open", never)
    return http.ConnectionPool()


async def test_the_most_recent_idle_connection_is_reused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(monkeypatch)
    older, newer = FakeConnection(), FakeConnection()
    _put(pool, older)
    _put(pool, newer)
    assert await _get(pool) is newer
    assert await _get(pool) is older


async def test_dead_unreusable_and_surplus_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(monkeypatch)
    kept = [FakeConnection() for _ in range(http.MAX_IDLE)]
    for conn in kept:
        _put(pool, conn)
    surplus, spent = FakeConnection(), FakeConnection()
    spent.reusable = False
    _put(pool, surplus)
    _put(pool, spent)
    assert surplus.closed and spent.closed and not any(conn.closed for conn in kept)
    kept[-1].alive = False  # the server closed it while idle
    assert await _get(pool) is kept[-2]
    assert kept[-1].closed


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_idle_connections_expire_and_are_never_handed_out_late(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(monkeypatch, idle_timeout=0.3)
    first, second = FakeConnection(), FakeConnection()
    _put(pool, first)
    await asyncio.sleep(0.15)
    _put(pool, second)
    await _until(lambda: first.closed)  # swept at its expiry...
    assert not second.closed  # ...while the second still has 0.15 s
    await _until(lambda: second.closed)  # the sweep came back for it
    await _until(lambda: not pool._keeping)  # nothing idle: its task ends
    assert not pool._idle
    third = FakeConnection()
    pool._idle[(OPTIONS, DIRECT)] = [(third, time.monotonic() - 1)]  # type: ignore[list-item]
    with pytest.raises(AssertionError, match="no new connection expected"):
        await _get(pool)  # an expired one is closed, not handed out, even before a sweep
    assert third.closed


def test_a_finished_event_loop_is_not_kept_alive_by_its_pool() -> None:
    async def use() -> None:
        _put(http.pool(), FakeConnection())

    with asyncio.Runner() as runner:  # as asyncio.run: the pool's task is cancelled before the loop closes
        runner.run(use())
        gone = weakref.ref(runner.get_loop())
    del runner
    gc.collect()
    assert gone() is None  # the pools are kept by loop in a weak-key table: the pool must not hold its loop


def test_idle_connections_are_closed_when_asyncio_run_ends() -> None:
    # Left to the garbage collector, they would warn (ResourceWarning: unclosed transport) and
    # hold their sockets until then.
    idle = FakeConnection()
    pool = http.ConnectionPool()

    async def use() -> None:
        _put(pool, idle)
        await asyncio.sleep(0)

    asyncio.run(use())
    assert idle.closed and not pool._idle and not pool._keeping
