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

__all__ = ["ReplayStore", "SharedReplayStore", "build"]


def build(workers: int, url: str | None, warn: Callable[[str], None]) -> ReplayStore | None:
    """The store the server transports share: None (each keeps its own filter) for one worker
    without ``-replayStore``; shared memory for several workers; Redis (with the shared-memory store
    as its local layer and fallback) when ``url`` is given.  Call before the workers are forked."""
    if workers <= 1 and url is None:
        return None
    local = SharedReplayStore()
    if url is None:
        return local
    from .redis_store import RedisReplayStore

    return RedisReplayStore(url, local, warn=warn)
