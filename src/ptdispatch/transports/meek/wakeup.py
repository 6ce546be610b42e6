"""One coroutine waiting for a nudge or a deadline (meek's poll loop, a session's answer)."""

from __future__ import annotations

import asyncio


class Wakeup:
    """A bare future and a timer per wait: an ``asyncio.Event`` under ``asyncio.timeout`` costs
    several times more, and meek waits at least once for every POST on both sides."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """End the current wait, if any (a nudge while nobody waits is not kept)."""
        if self._waiter is not None:
            _release(self._waiter)

    async def wait(self, loop: asyncio.AbstractEventLoop, until: float | None) -> None:
        """Until :meth:`wake` or the loop time ``until`` (None: no deadline)."""
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(until, _release, waiter) if until is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
