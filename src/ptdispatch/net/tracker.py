"""Open connections: tracked so that shutdown can wait for them, and logged when they close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from .. import metrics
from ..config import LogLevel
from ..logs import EventLog
from .relay import Splice


class Tracked(Protocol):
    """Something open that shutdown waits for and then cuts: a relay, a UDP session."""

    def abort(self) -> None: ...


class ConnectionTracker:
    """Open relays and UDP sessions, so that shutdown can wait for them and then cut what is left."""

    def __init__(self) -> None:
        self._open: set[Tracked] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, item: Tracked) -> None:
        self._open.add(item)
        self._idle.clear()

    def discard(self, item: Tracked) -> None:
        self._open.discard(item)
        if not self._open:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every relay is closed; False if ``timeout`` came first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def abort_all(self) -> None:
        for item in list(self._open):
            item.abort()


def closed_logger(
    log: EventLog, tracker: ConnectionTracker, label: str, *, role: str = "server"
) -> Callable[[Splice, Exception | None], None]:
    """An ``on_done`` callback for the splices of one listener: untrack each and log its byte
    counts (made once per listener; :func:`track_opened` counts each connection in)."""

    def done(splice: Splice, error: Exception | None) -> None:
        tracker.discard(splice)
        metrics.closed(label, role, error, splice.bytes_a_to_b, splice.bytes_b_to_a)
        if log.enabled(LogLevel.INFO):
            how = f" ({log.reason(error, named=True)})" if error else ""
            log.info(
                f"{label}: connection closed, {splice.bytes_a_to_b} bytes in, {splice.bytes_b_to_a} bytes out{how}"
            )

    return done


def track_opened(tracker: ConnectionTracker, splice: Splice, label: str, *, role: str = "server") -> None:
    """A new connection: track it (for shutdown) and count it as opened in the metrics."""
    tracker.add(splice)
    metrics.opened(label, role)
