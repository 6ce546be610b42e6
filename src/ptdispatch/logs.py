"""LOG lines for the parent: a thin facade over the Reporter, with client addresses scrubbed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from .config import LogLevel
from .errors import ClosedEmpty, InternalError
from .ipc.reporter import Reporter
from .net.addr import format_hostport


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

    def failure(self, label: str, what: str, exc: BaseException) -> None:
        """A failed connection: a bug (``InternalError``) at ERROR, anything else (the peer's or
        the network's fault) at INFO as ``label: what: exc``; a peer that sent nothing at DEBUG."""
        if isinstance(exc, InternalError):
            self.error(f"{label}: {exc}")
        elif isinstance(exc, ClosedEmpty):  # a load balancer's check every few seconds: not news
            if self.enabled(LogLevel.DEBUG):
                self.debug(f"{label}: {what}: {exc}")
        elif self.enabled(LogLevel.INFO):
            self.info(f"{label}: {what}: {type(exc).__name__}: {exc}" if not str(exc) else f"{label}: {what}: {exc}")

    def peer(self, transport: asyncio.BaseTransport) -> str:
        """The remote address of ``transport`` for a log line: ``[scrubbed]`` unless asked."""
        if not self.show_addresses:
            return "[scrubbed]"
        name = transport.get_extra_info("peername")
        if isinstance(name, tuple) and len(name) >= 2:
            return format_hostport(str(name[0]), int(name[1]))
        return "[unknown]"


_LEVELS = ((logging.ERROR, LogLevel.ERROR), (logging.WARNING, LogLevel.WARN), (logging.INFO, LogLevel.INFO))
LIBRARY_LOGGER = "ptdispatch"
"""The library's own loggers (``ptdispatch.meek``...): what they say reaches the parent as LOG lines."""


class LibraryLogHandler(logging.Handler):
    """Python logging records of the library as LOG lines (used as a library, it just logs)."""

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = next((ours for theirs, ours in _LEVELS if record.levelno >= theirs), LogLevel.DEBUG)
        if not self._log.enabled(level):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a log call: logging's own report, on stderr
            self.handleError(record)
            return
        self._log.reporter.log(level, message)


@contextlib.contextmanager
def library_logs(log: EventLog) -> Iterator[None]:
    """Forward the library's log records to ``log`` while the dispatcher runs."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    handler = LibraryLogHandler(log)
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if log.enabled(LogLevel.DEBUG) else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
