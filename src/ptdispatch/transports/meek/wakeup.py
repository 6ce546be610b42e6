"""A coroutine waiting for a nudge or a deadline (meek's poll loop, a session's answer)."""

from __future__ import annotations

import asyncio


class Wakeup:
    """A bare future and a timer per wait: an ``asyncio.Event`` under ``asyncio.timeout`` costs
    several times more, and meek waits at least once for every POST on both sides.

    One coroutine waits at a time as meek uses it (a session's requests are answered one at a time,
    the client's poll loop is alone).  Should several wait at once, a nudge still ends every wait
    under way, and a wait that ends takes only itself out: the later ones are kept apart, so the
    usual single wait pays for them with no more than an empty list's test."""

    __slots__ = ("_others", "_waiter")

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._others: list[asyncio.Future[None]] = []  # the waits under way besides ``_waiter``

    def wake(self) -> None:
        """End the waits under way, if any (a nudge while nobody waits is not kept)."""
        if self._waiter is not None:
            _release(self._waiter)
            if self._others:
                for other in self._others:
                    _release(other)

    async def wait(self, loop: asyncio.AbstractEventLoop, until: float | None) -> None:
        """Until :meth:`wake` or the loop time ``until`` (None: no deadline)."""
        waiter = loop.create_future()
        if self._waiter is None:
            self._waiter = waiter
        else:
            self._others.append(waiter)
        timer = loop.call_at(until, _release, waiter) if until is not None else None
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = self._others.pop(0) if self._others else None
            else:
                self._others.remove(waiter)
            if timer is not None:
                timer.cancel()


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
