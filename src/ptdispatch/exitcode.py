"""The process exit codes, one enum for both front doors (sysexits.h names; PT 3.0's values)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    #: Graceful stop (stdin closed with -exit-on-stdin-close, SIGTERM, SIGINT, parent gone); -h; -version.
    OK = 0
    #: A second SIGTERM/SIGINT during the graceful stop: leave at once, cutting open connections.
    INTERRUPTED = 1
    #: ``ENV-ERROR``: a bad or missing flag or environment variable.
    USAGE = 64
    #: ``PROXY-ERROR``: the upstream proxy (-proxy, TOR_PT_PROXY) is malformed or unsupported.
    UNAVAILABLE = 69
    #: ``-generateConfig`` could not write its files.
    CANTCREAT = 73
    #: ``VERSION-ERROR``: no protocol version in common with the parent.
    CONFIG = 78

    @property
    def meaning(self) -> str:
        """One line for the help text and the man page."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "stopped gracefully (stdin closed with -exit-on-stdin-close, SIGTERM, SIGINT, parent gone)",
    ExitCode.INTERRUPTED: "a second SIGTERM or SIGINT during the graceful stop: left at once",
    ExitCode.USAGE: "ENV-ERROR: a bad or missing flag (or TOR_PT_* variable)",
    ExitCode.UNAVAILABLE: "PROXY-ERROR: the upstream proxy (-proxy, TOR_PT_PROXY) cannot be used",
    ExitCode.CANTCREAT: "-generateConfig could not write its config files",
    ExitCode.CONFIG: "VERSION-ERROR: no protocol version in common with the parent",
}
