"""tor's Extended ORPort authentication cookie file (ext-orport-spec 2.1.2).

The file is exactly 64 bytes: the static header ``"! Extended ORPort Auth Cookie !\\n"`` (32 bytes)
followed by the 32-byte cookie.  tor rewrites it every time it starts.
"""

from __future__ import annotations

import os

from ..errors import ConfigError

COOKIE_HEADER = b"! Extended ORPort Auth Cookie !\n"
COOKIE_LEN = 32
COOKIE_FILE_LEN = len(COOKIE_HEADER) + COOKIE_LEN

#: Read at most this much, so a wrong path to a huge file costs nothing.
_READ_LIMIT = 4096


def parse_cookie_file(data: bytes, *, source: str = "the ExtORPort auth cookie file") -> bytes:
    """Check the header and size of a cookie file's contents and return the 32-byte cookie.

    ``source`` names the file in error messages.  Raises :class:`~ptdispatch.errors.ConfigError`.
    """
    if len(data) != COOKIE_FILE_LEN:
        size = f"more than {_READ_LIMIT} bytes" if len(data) >= _READ_LIMIT else f"{len(data)} bytes"
        raise ConfigError(
            f"{source} is {size}; an ExtORPort auth cookie file is {COOKIE_FILE_LEN} bytes "
            f"({len(COOKIE_HEADER)}-byte header + {COOKIE_LEN}-byte cookie)"
        )
    if not data.startswith(COOKIE_HEADER):
        raise ConfigError(f"{source} does not start with the ExtORPort cookie header {COOKIE_HEADER.decode()!r}")
    return data[len(COOKIE_HEADER) :]


def read_cookie_file(path: str | os.PathLike[str]) -> bytes:
    """Read and validate tor's ExtORPort cookie file; return the 32-byte cookie.

    Raises :class:`~ptdispatch.errors.ConfigError` naming the file when it is missing, unreadable,
    of the wrong size or without the header.
    """
    name = os.fspath(path)
    if not name:
        raise ConfigError("no ExtORPort auth cookie file was given")
    try:
        with open(name, "rb") as handle:
            data = handle.read(_READ_LIMIT)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read the ExtORPort auth cookie file {name!r}: {reason}") from None
    return parse_cookie_file(data, source=f"the ExtORPort auth cookie file {name!r}")
