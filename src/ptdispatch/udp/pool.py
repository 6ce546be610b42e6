"""The pool of transport connections behind a UDP listener (PT 3.0 section 1.5.4, Tables 1 and 2), sans-IO.

Every transition of both tables lives here; the asyncio layer (:mod:`.client`, :mod:`.server`) only
reports events and carries out the effects this module returns.  Time comes from an injected clock.

Table 1 (client), row by row:

=============================  ==================  ==================  ===============================
Event                          Current state       New state           Effect / method
=============================  ==================  ==================  ===============================
Packet received                no entry            Waiting             dropped (or queued) -> ``NEW``
Packet received                Waiting             Waiting             dropped (or queued)
Packet received                Connected           Connected           sent -> ``SEND``
Connection successful          Waiting             Connected           :meth:`SessionPool.connected`
Connection closed              Connected           removed             :meth:`SessionPool.closed`
Connection failed              Waiting             removed             :meth:`SessionPool.failed`
Write failure                  Connected           removed             :meth:`SessionPool.write_failed`
Timeout since last packet      any                 removed             :meth:`SessionPool.expire`
=============================  ==================  ==================  ===============================

Table 2 (server) is the same without Waiting: sessions enter Connected through
:meth:`SessionPool.add_connected`.  Two additions the tables leave open: the pool has a size limit
(a new entry evicts the least recently used one), and "last packet" counts packets in either
direction (:meth:`SessionPool.touch` for replies), so a session with traffic only from the far side
stays up.  Optionally (``queue_limit`` > 0) up to that many datagrams are held while Waiting and
sent once Connected, instead of dropped.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")


class TimerLike(Protocol):
    """What ``loop.call_at`` returns (an ``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


class State(enum.Enum):
    WAITING = "Waiting"
    CONNECTED = "Connected"


class Outcome(enum.Enum):
    """What :meth:`SessionPool.packet_received` decided for one datagram."""

    NEW = "new"  # a new Waiting entry: dial for it (the packet was dropped or queued)
    DROPPED = "dropped"  # a Waiting entry, queue off or full: the packet is dropped
    QUEUED = "queued"  # a Waiting entry: the packet waits for the connection
    SEND = "send"  # a Connected entry: send the packet on ``session.conn``


class Session(Generic[K, C]):
    """One pool entry: a source address and its transport connection."""

    __slots__ = ("conn", "handle", "key", "last_active", "queue", "removed", "state")

    def __init__(self, key: K, state: State, now: float) -> None:
        self.key = key
        self.state = state
        self.last_active = now
        #: The transport connection, once Connected.
        self.conn: C | None = None
        #: Anything the I/O layer wants to keep with the entry (the dial task).
        self.handle: object = None
        self.queue: list[bytes] = []
        #: Why the entry left the pool (None while it is in).
        self.removed: str | None = None

    def __repr__(self) -> str:
        return f"<Session {self.key!r} {self.state.value}{' removed: ' + self.removed if self.removed else ''}>"


class Received(NamedTuple, Generic[K, C]):
    outcome: Outcome
    session: Session[K, C]
    #: Entries pushed out to make room (close their connections).
    evicted: tuple[Session[K, C], ...]


class SessionPool(Generic[K, C]):
    """Entries by key, kept in least-recently-used order (which is also expiry order)."""

    def __init__(
        self, *, clock: Callable[[], float], idle_timeout: float, max_sessions: int, queue_limit: int = 0
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.queue_limit = queue_limit
        self._entries: collections.OrderedDict[K, Session[K, C]] = collections.OrderedDict()
        #: Datagrams dropped because their entry was Waiting (with no room to queue).
        self.dropped_waiting = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> Session[K, C] | None:
        return self._entries.get(key)

    def sessions(self) -> list[Session[K, C]]:
        return list(self._entries.values())

    # --- Table 1: packets from the application --------------------------------------------------
    def packet_received(self, key: K, datagram: bytes) -> Received[K, C]:
        """A datagram from ``key``: create, hold, drop or send (rows 1-3 of Table 1)."""
        now = self.clock()
        entries = self._entries
        session = entries.get(key)
        if session is not None:
            session.last_active = now
            entries.move_to_end(key)
            if session.state is State.CONNECTED:
                return Received(Outcome.SEND, session, ())
            return Received(self._hold(session, datagram), session, ())
        evicted = self._make_room()
        session = Session(key, State.WAITING, now)
        entries[key] = session
        self._hold(session, datagram)
        return Received(Outcome.NEW, session, evicted)

    def _hold(self, session: Session[K, C], datagram: bytes) -> Outcome:
        if len(session.queue) < self.queue_limit:
            session.queue.append(datagram)
            return Outcome.QUEUED
        self.dropped_waiting += 1
        return Outcome.DROPPED

    def _make_room(self) -> tuple[Session[K, C], ...]:
        evicted: list[Session[K, C]] = []
        while len(self._entries) >= self.max_sessions:
            _, oldest = self._entries.popitem(last=False)
            oldest.removed = "evicted"
            self.evictions += 1
            evicted.append(oldest)
        return tuple(evicted)

    # --- connection events ---------------------------------------------------------------------
    def connected(self, session: Session[K, C], conn: C) -> list[bytes] | None:
        """Connection successful: Waiting -> Connected.  Returns the datagrams held for it, or
        None when the entry is no longer in the pool (expired, evicted): close ``conn`` then."""
        if not self._current(session) or session.state is not State.WAITING:
            return None
        session.state = State.CONNECTED
        session.conn = conn
        held, session.queue = session.queue, []
        return held

    def add_connected(self, key: K, conn: C) -> tuple[Session[K, C], tuple[Session[K, C], ...]]:
        """Table 2: a new transport connection is accepted and is Connected from the start."""
        self.remove(key, "replaced")
        evicted = self._make_room()
        session: Session[K, C] = Session(key, State.CONNECTED, self.clock())
        session.conn = conn
        self._entries[key] = session
        return session, evicted

    def failed(self, session: Session[K, C]) -> bool:
        """Connection failed (Waiting): remove the entry.  False if it was already gone."""
        return self._drop(session, "connection failed")

    def closed(self, session: Session[K, C]) -> bool:
        """Connection closed (by the peer or an error): remove the entry."""
        return self._drop(session, "connection closed")

    def write_failed(self, session: Session[K, C]) -> bool:
        """Write failure sending a packet: remove the entry (the packet is dropped)."""
        return self._drop(session, "write failure")

    def remove(self, key: K, reason: str) -> Session[K, C] | None:
        session = self._entries.pop(key, None)
        if session is not None:
            session.removed = reason
        return session

    def touch(self, session: Session[K, C]) -> None:
        """A packet went the other way (a reply): the entry is in use."""
        if self._current(session):
            session.last_active = self.clock()
            self._entries.move_to_end(session.key)

    def _current(self, session: Session[K, C]) -> bool:
        return session.removed is None and self._entries.get(session.key) is session

    def _drop(self, session: Session[K, C], reason: str) -> bool:
        if not self._current(session):
            return False
        del self._entries[session.key]
        session.removed = reason
        return True

    # --- time ----------------------------------------------------------------------------------
    def expire(self) -> list[Session[K, C]]:
        """Timeout since last packet: remove and return every entry idle for ``idle_timeout``."""
        limit = self.clock() - self.idle_timeout
        out: list[Session[K, C]] = []
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if oldest.last_active > limit:
                break
            del entries[key]
            oldest.removed = "idle timeout"
            out.append(oldest)
        return out

    def next_expiry(self) -> float | None:
        """When :meth:`expire` next has something to do (clock time), or None for an empty pool."""
        if not self._entries:
            return None
        return next(iter(self._entries.values())).last_active + self.idle_timeout

    def clear(self, reason: str = "shutdown") -> list[Session[K, C]]:
        out = list(self._entries.values())
        for session in out:
            session.removed = reason
        self._entries.clear()
        return out


class ExpiryTimer(Generic[K, C]):
    """One event-loop timer for a pool's idle timeouts: it fires at the earliest expiry, hands
    each expired session to ``on_expired``, and re-arms for the next."""

    def __init__(
        self,
        pool: SessionPool[K, C],
        call_at: Callable[[float, Callable[[], None]], TimerLike],
        on_expired: Callable[[Session[K, C]], None],
    ) -> None:
        self._pool = pool
        self._call_at = call_at
        self._on_expired = on_expired
        self._handle: TimerLike | None = None

    def arm(self) -> None:
        """Make sure a timer is pending if any session can expire."""
        if self._handle is None:
            deadline = self._pool.next_expiry()
            if deadline is not None:
                self._handle = self._call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._handle = None
        for session in self._pool.expire():
            self._on_expired(session)
        self.arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
