"""The session pool, row by row through Tables 1 and 2 of PT 3.0 section 1.5, with a fake clock."""

from __future__ import annotations

import pytest

from ptdispatch.udp.pool import Outcome, Session, SessionPool, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Pool = SessionPool[tuple[str, int], str]
A, B, C = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)


def make(clock: Clock, *, idle: float = 60.0, size: int = 1024, queue: int = 0) -> Pool:
    return SessionPool(clock=clock, idle_timeout=idle, max_sessions=size, queue_limit=queue)


def connected_session(pool: Pool, key: tuple[str, int] = A) -> Session[tuple[str, int], str]:
    received = pool.packet_received(key, b"first")
    assert pool.connected(received.session, f"conn-{key[1]}") == []
    return received.session


# --- Table 1 -------------------------------------------------------------------------------------
def test_t1_packet_no_entry_creates_waiting_and_drops() -> None:
    pool = make(Clock())
    received = pool.packet_received(A, b"x")
    assert received.outcome is Outcome.NEW
    assert received.session.state is State.WAITING
    assert received.session.queue == []  # dropped
    assert pool.dropped_waiting == 1
    assert A in pool and len(pool) == 1


def test_t1_packet_while_waiting_is_dropped() -> None:
    pool = make(Clock())
    session = pool.packet_received(A, b"x").session
    received = pool.packet_received(A, b"y")
    assert received.outcome is Outcome.DROPPED
    assert received.session is session and session.state is State.WAITING
    assert pool.dropped_waiting == 2 and len(pool) == 1


def test_t1_packet_when_connected_is_sent() -> None:
    pool = make(Clock())
    session = connected_session(pool)
    received = pool.packet_received(A, b"data")
    assert received.outcome is Outcome.SEND
    assert received.session is session and session.conn == "conn-1"


def test_t1_connection_successful_waiting_to_connected() -> None:
    pool = make(Clock())
    session = pool.packet_received(A, b"x").session
    assert pool.connected(session, "c") == []
    assert session.state is State.CONNECTED and session.conn == "c"
    assert pool.connected(session, "again") is None  # only Waiting can connect


def test_t1_connection_closed_removes() -> None:
    pool = make(Clock())
    session = connected_session(pool)
    assert pool.closed(session)
    assert A not in pool and session.removed == "connection closed"
    assert not pool.closed(session)  # a second report changes nothing


def test_t1_connection_failed_removes_waiting() -> None:
    pool = make(Clock())
    session = pool.packet_received(A, b"x").session
    assert pool.failed(session)
    assert A not in pool and session.removed == "connection failed"
    # The next packet from the same source starts over.
    assert pool.packet_received(A, b"x").outcome is Outcome.NEW


def test_t1_write_failure_removes() -> None:
    pool = make(Clock())
    session = connected_session(pool)
    assert pool.write_failed(session)
    assert A not in pool and session.removed == "write failure"


def test_t1_timeout_since_last_packet_removes_either_state() -> None:
    clock = Clock()
    pool = make(clock, idle=60)
    waiting = pool.packet_received(A, b"x").session
    connected = connected_session(pool, B)
    assert pool.next_expiry() == 1060.0
    clock.now += 59.9
    assert pool.expire() == []
    pool.packet_received(B, b"keepalive")  # B's last packet is now later
    clock.now += 0.1
    assert pool.expire() == [waiting]
    assert waiting.removed == "idle timeout" and A not in pool and B in pool
    assert pool.next_expiry() == pytest.approx(1119.9)
    clock.now += 60
    assert pool.expire() == [connected]
    assert pool.next_expiry() is None and len(pool) == 0


def test_a_reply_counts_as_a_packet() -> None:
    clock = Clock()
    pool = make(clock, idle=10)
    session = connected_session(pool)
    clock.now += 9
    pool.touch(session)
    clock.now += 9
    assert pool.expire() == []
    clock.now += 1
    assert pool.expire() == [session]


def test_stale_session_events_do_not_touch_a_new_entry() -> None:
    pool = make(Clock())
    old = connected_session(pool)
    assert pool.closed(old)
    new = pool.packet_received(A, b"x").session
    assert not pool.closed(old)  # the old connection's late close must not remove the new entry
    assert not pool.failed(old) and not pool.write_failed(old)
    assert pool.connected(old, "late") is None
    assert pool.get(A) is new


def test_connected_after_expiry_tells_the_caller_to_close() -> None:
    clock = Clock()
    pool = make(clock, idle=5)
    session = pool.packet_received(A, b"x").session
    clock.now += 5
    assert pool.expire() == [session]
    assert pool.connected(session, "c") is None


def test_size_limit_evicts_least_recently_used() -> None:
    clock = Clock()
    pool = make(clock, size=2)
    a = connected_session(pool, A)
    b = connected_session(pool, B)
    pool.packet_received(A, b"x")  # A is now more recent than B
    received = pool.packet_received(C, b"x")
    assert received.outcome is Outcome.NEW
    assert received.evicted == (b,) and b.removed == "evicted"
    assert set(s.key for s in pool.sessions()) == {A, C} and a.removed is None
    assert pool.evictions == 1


def test_flood_of_sources_never_exceeds_the_limit() -> None:
    clock = Clock()
    pool = make(clock, size=100)
    evicted = 0
    for port in range(10_000):
        received = pool.packet_received(("127.0.0.1", port), b"x")
        evicted += len(received.evicted)
        assert len(pool) <= 100
        clock.now += 0.001
    assert evicted == 9_900 and len(pool) == 100


def test_queue_while_waiting_option() -> None:
    pool = make(Clock(), queue=2)
    received = pool.packet_received(A, b"1")
    assert received.outcome is Outcome.NEW
    assert pool.packet_received(A, b"2").outcome is Outcome.QUEUED
    assert pool.packet_received(A, b"3").outcome is Outcome.DROPPED
    assert pool.connected(received.session, "c") == [b"1", b"2"]
    assert received.session.queue == []


# --- Table 2 -------------------------------------------------------------------------------------
def test_t2_connections_start_connected() -> None:
    pool = make(Clock())
    session, evicted = pool.add_connected(A, "c")
    assert session.state is State.CONNECTED and evicted == ()
    assert pool.packet_received(A, b"x").outcome is Outcome.SEND


def test_t2_packet_without_connection_is_dropped() -> None:
    # On the server a datagram is only ever read from a session's own socket; once the entry is
    # gone the session object says so and the I/O layer drops the datagram.
    pool = make(Clock())
    session, _ = pool.add_connected(A, "c")
    pool.closed(session)
    assert session.removed is not None and pool.get(A) is None


def test_t2_closed_write_failure_and_timeout_remove() -> None:
    clock = Clock()
    pool = make(clock, idle=120)
    one, _ = pool.add_connected(A, "1")
    two, _ = pool.add_connected(B, "2")
    three, _ = pool.add_connected(C, "3")
    assert pool.closed(one) and pool.write_failed(two)
    clock.now += 120
    assert pool.expire() == [three]
    assert len(pool) == 0


def test_t2_size_limit() -> None:
    pool = make(Clock(), size=1)
    first, _ = pool.add_connected(A, "1")
    _, evicted = pool.add_connected(B, "2")
    assert evicted == (first,)


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        make(Clock(), size=0)
