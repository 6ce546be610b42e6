"""Direct dials: the connect timeout (a timer cancelling the task) behaves as asyncio.timeout did."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.net.upstream import create_connection

#: ``object`` as the protocol factory, typed as one: the fake loop (``_Stalled``) only calls it.
OBJECT = cast("Callable[[], asyncio.BaseProtocol]", object)


class _Stalled:
    """A loop whose connections never complete (or complete at once with ``ready``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ready: bool = False) -> None:
        self._loop = loop
        self._ready = ready

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback, *args)

    async def create_connection(self, factory: Any, host: str, port: int) -> tuple[Any, Any]:
        if not self._ready:
            await asyncio.sleep(3600)
        return "transport", factory()


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    real = asyncio.get_running_loop

    def fake() -> Any:
        return _Stalled(real())

    monkeypatch.setattr("ptdispatch.net.upstream.asyncio.get_running_loop", fake)


@pytest.mark.timeout(10)
async def test_a_stalled_connect_times_out(stalled: None) -> None:
    with pytest.raises(TimeoutError, match=r"^the TCP connect timed out$"):
        await create_connection(OBJECT, Address("127.0.0.1", 9), timeout=0.05)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # nothing is left to cancel us


@pytest.mark.timeout(10)
async def test_a_cancel_from_outside_stays_a_cancel(stalled: None) -> None:
    dial = asyncio.ensure_future(create_connection(OBJECT, Address("127.0.0.1", 9), timeout=30))
    await asyncio.sleep(0.01)
    dial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dial


@pytest.mark.timeout(10)
async def test_a_quick_connect_leaves_no_timer_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    real = asyncio.get_running_loop
    monkeypatch.setattr("ptdispatch.net.upstream.asyncio.get_running_loop", lambda: _Stalled(real(), ready=True))
    transport, protocol = await create_connection(OBJECT, Address("127.0.0.1", 9), timeout=0.05)
    assert cast(object, transport) == "transport" and type(protocol) is object
    await asyncio.sleep(0.1)  # past the timeout: the timer was cancelled, nothing cancels us


@pytest.mark.timeout(10)
async def test_a_real_refused_connect_is_an_oserror() -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await create_connection(asyncio.Protocol, Address("127.0.0.1", port), timeout=5)
