"""Replay stores shared by every worker process (and, through Redis, by every node of a fleet).

A transport's server keeps the handshakes or salts it has seen so that a replayed connection is
refused.  In one process that is an in-memory filter of its own (obfs4's ``ReplayFilter``, shadow's
``SaltFilter``).  Under ``-workers N`` or ``-replayStore`` the server gets a :class:`ReplayStore`
through :class:`~ptdispatch.transports.base.ServerContext` instead; see :func:`build`.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import ReplayStore
from .shared import SharedReplayStore

__all__ = ["ReplayStore", "SeenFilter", "SharedReplayStore", "build"]


class SeenFilter:
    """A ``seen(key)`` filter over a shared store, for a transport whose own filter has that shape
    (DarkStar's ephemeral keys): ``SeenFilter(ctx.replay, b"darkstar", ttl)`` when
    ``ServerContext.replay`` is given, the transport's in-process filter otherwise."""

    __slots__ = ("_namespace", "_store", "_ttl")

    def __init__(self, store: ReplayStore, namespace: bytes, ttl: float) -> None:
        self._store = store
        self._namespace = namespace
        self._ttl = ttl

    def seen(self, key: bytes) -> bool:
        """Remember ``key``; ``True`` if it was already known (a replay)."""
        return not self._store.check_and_add(self._namespace, key, self._ttl)


def build(
    workers: int, url: str | None, warn: Callable[[str], None], info: Callable[[str], None]
) -> ReplayStore | None:
    """The store the server transports share: None (each keeps its own filter) for one worker
    without ``-replayStore``; shared memory for several workers; Redis (with the shared-memory store
    as its local layer and fallback) when ``url`` is given.  Call before the workers are forked.
    ``warn`` and ``info`` log a line at that level (Redis lost, Redis back)."""
    if workers <= 1 and url is None:
        return None
    local = SharedReplayStore()
    if url is None:
        return local
    from .redis_store import RedisReplayStore

    return RedisReplayStore(url, local, warn=warn, info=info)
