"""The one interface every replay store offers."""

from __future__ import annotations

from typing import Protocol


class ReplayStore(Protocol):
    """Keys (client handshake MACs, salts, ephemeral keys) seen within their time to live.

    ``namespace`` keeps transports apart (``b"obfs4"``, ``b"shadow"``, ``b"darkstar"``); it is at
    most 16 bytes.  Implementations are exact: a key never seen is never reported as seen.
    """

    def check_and_add(self, namespace: bytes, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; ``True`` when it is new, ``False`` for a replay."""
        ...

    def contains(self, namespace: bytes, key: bytes) -> bool:
        """Whether ``key`` is recorded (a cheap pre-check; :meth:`check_and_add` decides)."""
        ...
