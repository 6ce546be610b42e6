"""meek's :class:`~ptdispatch.transports.meek.wakeup.Wakeup`: one nudge ends every wait under way."""

from __future__ import annotations

import asyncio

import pytest

from ptdispatch.transports.meek.wakeup import Wakeup

pytestmark = pytest.mark.timeout(10)


async def test_a_wake_ends_every_wait_under_way() -> None:
    # A second wait used to take the first's place: the first then waited out its whole deadline.
    loop = asyncio.get_running_loop()
    wakeup = Wakeup()
    waits = [asyncio.ensure_future(wakeup.wait(loop, loop.time() + 5)) for _ in range(3)]
    await asyncio.sleep(0.01)
    wakeup.wake()
    done, _ = await asyncio.wait(waits, timeout=1)
    assert len(done) == 3


async def test_a_wait_that_ends_leaves_the_others_wakeable() -> None:
    # Each wait used to clear whichever waiter was current when it ended, its own or not.
    loop = asyncio.get_running_loop()
    wakeup = Wakeup()
    short = asyncio.ensure_future(wakeup.wait(loop, loop.time() + 0.05))
    await asyncio.sleep(0)
    long = asyncio.ensure_future(wakeup.wait(loop, loop.time() + 5))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(wakeup.wait(loop, loop.time() + 5))
    await asyncio.wait_for(short, 1)  # its deadline
    wakeup.wake()
    await asyncio.wait_for(asyncio.gather(long, later), 1)
    long = asyncio.ensure_future(wakeup.wait(loop, loop.time() + 5))  # and the next wait is woken too
    await asyncio.sleep(0)
    wakeup.wake()
    await asyncio.wait_for(long, 1)


async def test_a_nudge_while_nobody_waits_is_not_kept() -> None:
    loop = asyncio.get_running_loop()
    wakeup = Wakeup()
    wakeup.wake()
    started = loop.time()
    await wakeup.wait(loop, loop.time() + 0.05)
    assert loop.time() - started >= 0.04
