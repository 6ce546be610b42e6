"""The only writer to stdout: protocol lines to the parent, each flushed at once.

PT 3.0 puts error lines (``*-ERROR``) on stderr; Tor's PT 1.0 reads everything from stdout.
The streams are given by whoever builds the reporter (the front doors pass the process's own,
tests pass buffers).
"""

from __future__ import annotations

from typing import TextIO

from ..config import LogLevel
from .args import escape

_PT1_SEVERITY = {
    LogLevel.ERROR: "error",
    LogLevel.WARN: "warning",
    LogLevel.INFO: "info",
    LogLevel.DEBUG: "debug",
}


def _clean(text: str) -> str:
    """A line argument may not contain NUL or newlines."""
    return text.replace("\x00", " ").replace("\r", " ").replace("\n", " ")


class Reporter:
    """Writes VERSION/CMETHOD/SMETHOD/.../LOG lines."""

    def __init__(
        self,
        *,
        out: TextIO,
        err: TextIO,
        level: LogLevel = LogLevel.NONE,
        pt_version: str = "3.0",
    ) -> None:
        self._out = out
        self._err = err
        self.level = level
        self.pt_version = pt_version

    def line(self, keyword: str, *args: str) -> None:
        """A protocol line on stdout."""
        self._write(self._out, keyword, args)

    def error(self, keyword: str, *args: str) -> None:
        """An error line: stderr under PT 3.0, stdout under PT 1.0 (where tor reads it)."""
        self._write(self._out if self.pt_version == "1" else self._err, keyword, args)

    def note(self, message: str) -> None:
        """A line for a person reading stderr (not a protocol line): ``ptdispatch: message``."""
        self._write(self._err, "ptdispatch:", (message,))

    def log(self, level: LogLevel, message: str) -> None:
        """A LOG line if ``level`` is at or above the configured -ipcLogLevel."""
        if level == LogLevel.NONE or level > self.level:
            return
        if self.pt_version == "1":
            escaped = escape(_clean(message), '"')
            self.line("LOG", f"SEVERITY={_PT1_SEVERITY[level]}", f'MESSAGE="{escaped}"')
        else:
            self.line("LOG", level.name, message)

    def enabled(self, level: LogLevel) -> bool:
        return level != LogLevel.NONE and level <= self.level

    def _write(self, stream: TextIO, keyword: str, args: tuple[str, ...]) -> None:
        text = " ".join((keyword, *(_clean(a) for a in args)))
        try:
            stream.write(text + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the parent went away; nothing useful to do
