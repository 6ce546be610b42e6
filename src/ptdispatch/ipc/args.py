"""Key/value microformats: SMETHOD ``ARGS:`` and Tor-style per-connection ``k=v;k=v`` arguments."""

from __future__ import annotations

from collections.abc import Mapping


def escape(value: str, specials: str) -> str:
    """Backslash-escape the backslash and every character of ``specials``."""
    out = value.replace("\\", "\\\\")
    for ch in specials:
        out = out.replace(ch, "\\" + ch)
    return out


def format_smethod_args(args: Mapping[str, str]) -> str:
    """``ARGS:k=v,k=v`` with ``=`` and ``,`` (and ``\\``) escaped in keys and values."""
    return "ARGS:" + ",".join(f"{escape(k, '=,')}={escape(v, '=,')}" for k, v in args.items())


def parse_kv_list(text: str, *, separator: str = ";") -> dict[str, str]:
    """Parse ``k=v;k=v`` where ``\\`` escapes the next character (Tor's per-connection args).

    Raises ``ValueError`` for a pair without ``=``, an empty key, or a trailing backslash.
    """
    pairs: dict[str, str] = {}
    key: list[str] = []
    value: list[str] = []
    current = key
    seen_eq = False
    i = 0

    def finish() -> None:
        if not key and not seen_eq and not value:
            return
        if not seen_eq:
            raise ValueError(f"argument {''.join(key)!r} has no '='")
        if not key:
            raise ValueError("an argument has an empty key")
        pairs["".join(key)] = "".join(value)

    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                raise ValueError("argument list ends with a lone backslash")
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "=" and not seen_eq:
            seen_eq = True
            current = value
        elif ch == separator:
            finish()
            key, value, current, seen_eq = [], [], [], False
            current = key
        else:
            current.append(ch)
        i += 1
    finish()
    return pairs
