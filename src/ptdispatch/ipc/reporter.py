"""The only writer to stdout: protocol lines to the parent, each flushed at once.

PT 3.0 puts error lines (``*-ERROR``) on stderr; Tor's PT 1.0 reads everything from stdout.
The streams are given by whoever builds the reporter (the front doors pass the process's own,
tests pass buffers).
"""

from __future__ import annotations

import io
import os
import select
import stat
from typing import TextIO

from ..config import LogLevel
from .args import escape

_PT1_SEVERITY = {
    LogLevel.ERROR: "error",
    LogLevel.WARN: "warning",
    LogLevel.INFO: "info",
    LogLevel.DEBUG: "debug",
}


MAX_LOG = 2000
"""Bytes (UTF-8) of a LOG message kept, cut on a character boundary: a LOG line stays under PIPE_BUF
(4096 bytes) even with PT 1.0's escaping doubling every byte, so writing it to a pipe with room
never blocks.  Counted in bytes, not characters: 2000 four-byte characters are an 8000-byte line."""


def _pipe(stream: TextIO) -> int | None:
    """The descriptor of ``stream`` when it is a pipe (whose reader may stop reading), else None."""
    try:
        fd = stream.fileno()
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _cut(message: str) -> str:
    """``message`` cut to :data:`MAX_LOG` bytes of UTF-8, without splitting a character."""
    if len(message) <= MAX_LOG // 4:  # fits even at four bytes a character: most messages
        return message
    raw = message.encode("utf-8", "surrogatepass")  # a lone surrogate is written (or refused) later, as before
    if len(raw) <= MAX_LOG:
        return message
    end = MAX_LOG
    while raw[end] & 0xC0 == 0x80:  # the first byte left out continues a character: leave that one out too
        end -= 1
    return raw[:end].decode("utf-8", "surrogatepass")


def _clean(text: str) -> str:
    """A line argument may not contain NUL or newlines."""
    return text.replace("\x00", " ").replace("\r", " ").replace("\n", " ")


class Reporter:
    """Writes VERSION/CMETHOD/SMETHOD/.../LOG lines.

    LOG lines never block the process: when stdout is a pipe the parent has stopped reading (it
    is full), a LOG line is dropped and counted, and the count is reported in a WARN line once
    there is room again.  Other lines (the start-up protocol) are written whatever it takes.
    """

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
        self._out_pipe = _pipe(out)
        #: LOG lines dropped since the last one written (the parent was not reading).
        self.dropped = 0

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
        self.forward_log(self._log_args(level, message))

    def forward_log(self, args: str) -> None:
        """Write ``LOG args`` (built by :meth:`log`, here or in a worker), or drop it while the
        parent is not reading."""
        if self._out_pipe is not None and not select.select([], [self._out_pipe], [], 0)[1]:
            self.dropped += 1
            return
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            note = f"{dropped} LOG line(s) dropped: the parent was not reading stdout"
            self.line("LOG", self._log_args(LogLevel.WARN, note))
        self.line("LOG", args)

    def _log_args(self, level: LogLevel, message: str) -> str:
        message = _clean(_cut(message))
        if self.pt_version == "1":
            quoted = escape(message, '"')
            return f'SEVERITY={_PT1_SEVERITY[level]} MESSAGE="{quoted}"'
        return f"{level.name} {message}"

    def enabled(self, level: LogLevel) -> bool:
        return level != LogLevel.NONE and level <= self.level

    def _write(self, stream: TextIO, keyword: str, args: tuple[str, ...]) -> None:
        text = " ".join((keyword, *(_clean(a) for a in args)))
        try:
            stream.write(text + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the parent went away; nothing useful to do
