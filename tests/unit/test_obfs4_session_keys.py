"""obfs4 session keys made one ahead in the event loop's spare time, one pool per thread."""

from __future__ import annotations

import asyncio
import os
import random
import threading

from ptdispatch.crypto import elligator2
from ptdispatch.transports.obfs4.handshake import SessionKey, SessionKeys, os_session_keys


def test_without_a_loop_keys_are_made_on_demand() -> None:
    keys = SessionKeys(os.urandom)
    keys.refill_soon()  # no running loop: nothing is queued
    first, second = keys.take(), keys.take()
    assert isinstance(first, SessionKey) and first.public != second.public


async def test_refill_runs_after_what_the_callback_queued() -> None:
    drawn: list[int] = []

    def rng(n: int) -> bytes:
        drawn.append(n)
        return os.urandom(n)

    keys = SessionKeys(rng)
    loop = asyncio.get_running_loop()
    keys.refill_soon()
    replied_after: list[int] = []
    loop.call_soon(lambda: replied_after.append(len(drawn)))  # the reply, queued after the refill request
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert replied_after == [0]  # the reply went out before any key was made
    made = len(drawn)
    assert made > 0  # then the next key was made, in spare time
    ready = keys.take()
    assert len(drawn) == made  # taken ready-made
    assert elligator2.representative_to_public(ready.representative) == ready.public
    assert keys.take().public != ready.public
    assert len(drawn) > made  # used once: the next one is made on demand


def test_only_the_os_gets_a_pool_and_each_thread_its_own() -> None:
    assert os_session_keys(random.Random(1).randbytes) is None
    mine = os_session_keys(os.urandom)
    assert mine is os_session_keys(os.urandom)
    other: list[SessionKeys | None] = []
    thread = threading.Thread(target=lambda: other.append(os_session_keys(os.urandom)))
    thread.start()
    thread.join()
    assert other[0] is not None and other[0] is not mine
