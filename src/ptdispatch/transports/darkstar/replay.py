"""The server's replay filter on client ephemeral keys."""

from __future__ import annotations

from ..shadow.replay import SaltFilter


class ReplayFilter:
    """Client ephemeral X coordinates seen recently, in this process.

    :meth:`seen` is the whole interface, so a store shared between processes can take its place.
    The server calls it only for hellos whose confirmation code verified, so garbage cannot push
    genuine entries out.
    """

    __slots__ = ("_keys",)

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._keys = SaltFilter(capacity)

    def seen(self, key: bytes) -> bool:
        """Remember ``key``; ``True`` if it was already known (a replayed hello)."""
        return not self._keys.check_and_add(key)
