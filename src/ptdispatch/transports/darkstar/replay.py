"""The server's replay filter on client ephemeral keys."""

from __future__ import annotations

from typing import Protocol

from ..shadow.replay import SaltFilter

REPLAY_TTL = 3 * 3600.0
"""How long a shared store (``-workers``, ``-replayStore``) remembers a client's ephemeral key."""


class SeenKeys(Protocol):
    """What the server engine needs: :class:`ReplayFilter`, or ``replay.SeenFilter`` over a shared store."""

    def seen(self, key: bytes) -> bool: ...


class ReplayFilter:
    """Client ephemeral X coordinates seen recently, in this process.

    :meth:`seen` is the whole interface, so a store shared between processes can take its place.
    The server calls it only for hellos whose confirmation code verified, so garbage cannot push
    genuine entries out.
    """

    __slots__ = ("_keys",)

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._keys = SaltFilter(capacity, name="darkstar")

    def seen(self, key: bytes) -> bool:
        """Remember ``key``; ``True`` if it was already known (a replayed hello)."""
        return not self._keys.check_and_add(key)
