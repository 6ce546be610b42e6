"""Small typed readers for raw option mappings, raising ``OptionsError`` that names the key."""

from __future__ import annotations

import re

from ..boolean import WORDS, parse_bool
from ..errors import OptionsError
from .base import RawOptions

_INTEGER = re.compile(r"-?[0-9]{1,20}")


def get_str(raw: RawOptions, transport: str, *keys: str, default: str | None = None) -> str | None:
    """The first of ``keys`` present, as a string (numbers are accepted and turned into text)."""
    for key in keys:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise OptionsError(transport, f"option {key!r} must be a string, not {type(value).__name__}")
            text = str(value)
            if not text.isascii() and not _is_unicode(text):
                raise OptionsError(transport, f"option {key!r} is not valid Unicode (it holds a lone surrogate)")
            return text
    return default


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates (JSON "\\udc80", or undecodable command-line bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_str(raw: RawOptions, transport: str, *keys: str) -> str:
    value = get_str(raw, transport, *keys)
    if value is None or value == "":
        raise OptionsError(transport, f"missing option {keys[0]!r}", missing=True)
    return value


def get_int(raw: RawOptions, transport: str, *keys: str, default: int, low: int, high: int) -> int:
    """An integer given as a JSON number or a decimal string, within ``[low, high]``."""
    for key in keys:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool):
            raise OptionsError(transport, f"option {key!r} must be a number from {low} to {high}")
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value.strip())
        if not isinstance(value, int) or not low <= value <= high:
            raise OptionsError(transport, f"option {key!r} must be a number from {low} to {high}, not {value!r}")
        return value
    return default


def get_float(raw: RawOptions, transport: str, key: str, *, default: float, low: float, high: float) -> float:
    if key not in raw:
        return default
    value = raw[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise OptionsError(transport, f"option {key!r} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OptionsError(transport, f"option {key!r} must be a number from {low} to {high}, not {value!r}")
    return float(value)


def get_bool(raw: RawOptions, transport: str, key: str, *, default: bool = False) -> bool:
    """A JSON boolean, 0/1, or a word of :mod:`ptdispatch.boolean`'s vocabulary."""
    if key not in raw:
        return default
    value = parse_bool(raw[key])
    if value is None:
        raise OptionsError(transport, f"option {key!r} must be true or false ({WORDS}), not {raw[key]!r}")
    return value
