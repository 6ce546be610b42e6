"""LOG lines for the parent: a thin facade over the Reporter, with client addresses scrubbed."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterator

from .config import LogLevel
from .errors import ClosedEmpty, InternalError
from .errors import internal_error as describe_bug
from .ipc.reporter import Reporter
from .net.addr import Address, format_hostport

SCRUBBED = "[scrubbed]"

_ADDRESS = re.compile(
    r"\('[^'\n]*'(?:\s*,\s*\d+){1,3}\)"  # a socket address tuple: ('127.0.0.1', 80), ('::1', 80, 0, 0)
    r"|\[(?P<bracketed>[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?)\](?::\d+)?"  # [v6] or [v6]:port
    r"|(?<![\w:.])(?P<v6>(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f.]*(?:%[\w.-]+)?)"  # a bare IPv6 address
    r"|(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]*\w)"  # IPv4, with or without a port
)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def _scrub_one(match: re.Match[str]) -> str:
    if match.group(0).startswith("("):
        return f"({SCRUBBED})"
    if (bracketed := match.group("bracketed")) is not None:
        return SCRUBBED if _is_ipv6(bracketed) else match.group(0)
    if (v6 := match.group("v6")) is not None:
        if _is_ipv6(v6):
            return SCRUBBED
        core = v6.rstrip(".:")  # the end of a sentence ("... to ::1.") or of a label ("::1: refused")
        return SCRUBBED + v6[len(core) :] if core and _is_ipv6(core) else v6  # not an address: a time...
    return SCRUBBED


def scrub(text: str) -> str:
    """``text`` with its IP addresses (v4 or v6, with or without a port, bracketed, or Python's
    ``('ip', port)`` socket address tuples, which become ``([scrubbed])``) written as ``[scrubbed]``:
    the rest, errno and strerror, stays.  Host names are not recognised: keep them out of messages."""
    return _ADDRESS.sub(_scrub_one, text)


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

    def reason(self, exc: BaseException, *, named: bool = False) -> str:
        """``exc`` for a log line, every exception a line shows goes through here: its text (its
        type's name when it has none; both with ``named``), with the IP addresses in it written as
        ``[scrubbed]`` unless addresses are shown (-unsafeLogging).  Errno and strerror stay."""
        text = str(exc)
        if not text:
            return type(exc).__name__
        if named:
            text = f"{type(exc).__name__}: {text}"
        return self.shown(text)

    def shown(self, text: str) -> str:
        """``text`` as a log line may show it: its IP addresses ``[scrubbed]`` unless addresses are
        shown (-unsafeLogging).  For text that comes from elsewhere (an exception, a library's line)."""
        return text if self.show_addresses else scrub(text)

    def internal_error(self, label: str | None, bug: BaseException | str) -> None:
        """A bug, at ERROR: ``label: internal error: Type: message (where)``, or the event loop's
        description of one that came without an exception.  Every internal-error line is written
        here: a bug's message is an exception's text like any other, and an ``OSError`` or a repr
        in it quotes a socket address (the peer's, often), so it is scrubbed like :meth:`reason`'s;
        its type, errno and where it was raised stay."""
        text = self.shown(describe_bug(bug) if isinstance(bug, BaseException) else f"internal error: {bug}")
        self.error(f"{label}: {text}" if label else text)

    def failure(self, label: str, what: str, exc: BaseException) -> None:
        """A failed connection: a bug (``InternalError``) at ERROR, anything else (the peer's or
        the network's fault) at INFO as ``label: what: exc``; a peer that sent nothing at DEBUG."""
        if isinstance(exc, InternalError):
            self.internal_error(label, exc)
        elif isinstance(exc, ClosedEmpty):  # a load balancer's check every few seconds: not news
            if self.enabled(LogLevel.DEBUG):
                self.debug(f"{label}: {what}: {self.reason(exc)}")
        elif self.enabled(LogLevel.INFO):
            self.info(f"{label}: {what}: {self.reason(exc)}")

    def address(self, address: Address) -> str:
        """``address`` (an IP address or a host name, and a port) for a log line: ``[scrubbed]`` unless asked."""
        return str(address) if self.show_addresses else SCRUBBED

    def peer(self, transport: asyncio.BaseTransport) -> str:
        """The remote address of ``transport`` for a log line: ``[scrubbed]`` unless asked."""
        if not self.show_addresses:
            return SCRUBBED
        name = transport.get_extra_info("peername")
        if isinstance(name, tuple) and len(name) >= 2:
            return format_hostport(str(name[0]), int(name[1]))
        return "[unknown]"


_LEVELS = ((logging.ERROR, LogLevel.ERROR), (logging.WARNING, LogLevel.WARN), (logging.INFO, LogLevel.INFO))
LIBRARY_LOGGER = "ptdispatch"
"""The library's own loggers (``ptdispatch.meek``...): what they say reaches the parent as LOG lines."""


class LibraryLogHandler(logging.Handler):
    """Python logging records of the library as LOG lines (used as a library, it just logs).  The
    library does not know of -unsafeLogging: its lines are scrubbed here, like the dispatcher's."""

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
        self._log.reporter.log(level, self._log.shown(message))


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
