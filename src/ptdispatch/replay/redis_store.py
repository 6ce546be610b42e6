"""``-replayStore redis://HOST:PORT/DB``: replay state shared by every node of a fleet.

Each check goes first to the local shared-memory store (a replay within this machine is refused
without a round trip), then to Redis as ``SET key 1 NX PX ttl``: the key is new only if Redis did not
have it.  While Redis is unreachable the local store alone decides: one WARN line says so (and the
``ptdispatch_replay_store_up`` gauge drops to 0); Redis is tried again every ``retry_after``
seconds, and an INFO line says when it is back.  The checks are synchronous (the engines are
sans-IO), so timeouts are short: a lost Redis costs at most one ``timeout`` per ``retry_after``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..metrics import replay_store_up
from .base import ReplayStore

PREFIX = b"ptdispatch:"


class RedisReplayStore:
    """Redis behind a local store; see the module docstring."""

    def __init__(
        self,
        url: str,
        local: ReplayStore,
        *,
        warn: Callable[[str], None],
        info: Callable[[str], None] | None = None,
        retry_after: float = 5.0,
        timeout: float = 0.25,
    ) -> None:
        self.url = url
        self.local = local
        self._warn = warn
        self._info = info or warn
        self._retry_after = retry_after
        self._timeout = timeout
        self._pool: Any = None
        self._conn: Any = None
        self._pid = 0
        self._down_until = 0.0
        self.up = True

    def _connection(self) -> Any:
        """One connection held per process (a pool's round trip per check costs 3x more)."""
        if self._conn is None or self._pid != os.getpid():
            import redis

            if self._pool is None:
                self._pool = redis.ConnectionPool.from_url(
                    self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
                )
            self._conn = self._pool.get_connection()  # the pool starts afresh after a fork
            self._pid = os.getpid()
        return self._conn

    def _set_nx(self, key: bytes, ttl: float) -> bool:
        conn = self._connection()
        try:
            conn.send_packed_command(conn.pack_command("SET", key, b"1", "NX", "PX", max(1, int(ttl * 1000))))
            return conn.read_response() is not None
        except BaseException:
            conn.disconnect()
            raise

    def contains(self, namespace: bytes, key: bytes) -> bool:
        return self.local.contains(namespace, key)

    def check_and_add(self, namespace: bytes, key: bytes, ttl: float) -> bool:
        if not self.local.check_and_add(namespace, key, ttl):
            return False
        if not self.up and time.monotonic() < self._down_until:
            return True
        import redis

        try:
            fresh = self._set_nx(PREFIX + namespace + b":" + key, ttl)
        except (redis.RedisError, OSError) as exc:
            self._went_down(exc)
            return True
        if not self.up:
            self.up = True
            self._info(f"replay store: Redis at {self._where()} is back; replay state is shared again")
            replay_store_up(True)
        return fresh

    def _went_down(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self._retry_after
        if self.up:
            self.up = False
            self._warn(
                f"replay store: Redis at {self._where()} is unreachable ({type(exc).__name__}: {exc}); "
                "serving with this machine's replay store only until it is back"
            )
            replay_store_up(False)

    def _where(self) -> str:
        """The URL for a log line, without what may hold a password: no ``user:password@``, no query
        (``?password=`` is another way to give one), no fragment."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
