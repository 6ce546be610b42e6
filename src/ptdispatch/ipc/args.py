"""Tor's backslash escaping, in one place, and the key/value microformats built on it.

Tor escapes a special character by putting ``\\`` before it (``tor_escape_str_for_pt_args``);
``\\`` itself is always special.  The formats: SMETHOD ``ARGS:k=v,k=v``, per-connection SOCKS
arguments ``k=v;k=v``, ``TOR_PT_SERVER_TRANSPORT_OPTIONS`` (``name:k=v;name:k=v``, parsed in
:mod:`.env` with these helpers) and PT 1.0 ``LOG`` messages (``"`` escaped).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping


def escape(value: str, specials: str) -> str:
    """Backslash-escape the backslash and every character of ``specials``."""
    out = value.replace("\\", "\\\\")
    for ch in specials:
        if ch != "\\":
            out = out.replace(ch, "\\" + ch)
    return out


def unescape(text: str) -> str:
    """Drop each escaping backslash (keeping the character it escapes).

    Raises ``ValueError`` ("ends with a lone backslash") when the last backslash escapes nothing.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 >= len(text):
                raise ValueError("ends with a lone backslash")
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def split_escaped(text: str, separator: str) -> Iterator[str]:
    """Split at each ``separator`` not preceded by an escaping backslash (escapes are kept)."""
    start = i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == separator:
            yield text[start:i]
            start = i + 1
        i += 1
    yield text[start:]


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``...: how errors name an entry of a list whose
    text they must not quote (it may hold a secret, or a piece of one)."""
    suffix = "th" if number % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def format_smethod_args(args: Mapping[str, str]) -> str:
    """``ARGS:k=v,k=v`` with ``=`` and ``,`` (and ``\\``) escaped in keys and values."""
    return "ARGS:" + ",".join(f"{escape(k, '=,')}={escape(v, '=,')}" for k, v in args.items())


def connection_args(text: str) -> dict[str, str]:
    """A SOCKS client's per-connection ``k=v;k=v`` arguments, as :func:`parse_kv_list` reads them.

    tor sends the same arguments for every connection to a bridge: the parse is kept for the last
    few distinct texts, and each caller gets its own dict."""
    return dict(_connection_args(text))


@functools.lru_cache(maxsize=64)
def _connection_args(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_kv_list(text).items())


def parse_kv_list(text: str, *, separator: str = ";") -> dict[str, str]:
    """Parse ``k=v;k=v`` where ``\\`` escapes the next character (Tor's per-connection args).

    The first unescaped ``=`` ends the key; empty entries are skipped.  Raises ``ValueError`` for
    a pair without ``=``, an empty key, or a trailing backslash, naming a pair by its position
    (counting empty entries), never by its text.
    """
    pairs: dict[str, str] = {}
    for number, entry in enumerate(split_escaped(text, separator), 1):
        if not entry:
            continue
        parts = list(split_escaped(entry, "="))
        try:
            key, value = unescape(parts[0]), unescape("=".join(parts[1:]))
        except ValueError:
            raise ValueError("argument list ends with a lone backslash") from None
        # Errors name an argument by its position: its text may be a piece of a secret (a password
        # with an unescaped ';'), and they reach the log.
        if len(parts) < 2:
            raise ValueError(f"the {ordinal(number)} argument has no '=' (a ';' in a value is written '\\;')")
        if not key:
            raise ValueError(f"the {ordinal(number)} argument has an empty key")
        pairs[key] = value
    return pairs
