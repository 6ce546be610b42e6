"""The one boolean vocabulary for flags, options and our environment variables (any letter case).

Values the specs define themselves (``TOR_PT_EXIT_ON_STDIN_CLOSE``: exactly ``0`` or ``1``) keep
their own, stricter rules.
"""

from __future__ import annotations

TRUE = ("1", "true", "t", "yes")
FALSE = ("0", "false", "f", "no")
WORDS = "1/true/yes or 0/false/no"
"""How a message names the vocabulary."""


def parse_bool(value: object) -> bool | None:
    """``True``/``False`` for a JSON boolean, 0/1 or a word of the vocabulary; ``None`` otherwise."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str | int):
        return None
    text = str(value).lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    return None
