"""Events the dispatcher reports to its parent as LOG lines, with client addresses scrubbed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .config import LogLevel
from .ipc.reporter import Reporter
from .net.addr import format_hostport
from .net.relay import Splice


class EventLog:
    """A thin front for :class:`Reporter` LOG lines."""

    def __init__(self, reporter: Reporter, *, show_addresses: bool = False) -> None:
        self.reporter = reporter
        self.show_addresses = show_addresses

    def enabled(self, level: LogLevel) -> bool:
        """Whether a line at ``level`` would be sent (to skip building one that would not)."""
        return self.reporter.enabled(level)

    def error(self, message: str) -> None:
        self.reporter.log(LogLevel.ERROR, message)

    def warn(self, message: str) -> None:
        self.reporter.log(LogLevel.WARN, message)

    def info(self, message: str) -> None:
        self.reporter.log(LogLevel.INFO, message)

    def debug(self, message: str) -> None:
        self.reporter.log(LogLevel.DEBUG, message)

    def peer(self, transport: asyncio.BaseTransport) -> str:
        """The remote address of ``transport`` for a log line: ``[scrubbed]`` unless asked."""
        if not self.show_addresses:
            return "[scrubbed]"
        name = transport.get_extra_info("peername")
        if isinstance(name, tuple) and len(name) >= 2:
            return format_hostport(str(name[0]), int(name[1]))
        return "[unknown]"


class ConnectionTracker:
    """Open relays, so that shutdown can wait for them and then cut what is left."""

    def __init__(self) -> None:
        self._open: set[Splice] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, splice: Splice) -> None:
        self._open.add(splice)
        self._idle.clear()

    def discard(self, splice: Splice) -> None:
        self._open.discard(splice)
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
        for splice in list(self._open):
            splice.abort()


def closed_logger(log: EventLog, tracker: ConnectionTracker, label: str) -> Callable[[Splice, Exception | None], None]:
    """An ``on_done`` callback for a splice: untrack it and log its byte counts."""

    def done(splice: Splice, error: Exception | None) -> None:
        tracker.discard(splice)
        if log.enabled(LogLevel.INFO):
            how = f" ({type(error).__name__}: {error})" if error else ""
            log.info(
                f"{label}: connection closed, {splice.bytes_a_to_b} bytes in, {splice.bytes_b_to_a} bytes out{how}"
            )

    return done
