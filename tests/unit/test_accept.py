"""``net.accept.DialOnAccept``, the accepted side of every server connection (and of transparent-TCP
clients): how a failed dial onward is reported."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from ptdispatch.config import LogLevel
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net import upstream
from ptdispatch.net.accept import Dial, DialOnAccept
from ptdispatch.net.addr import Address
from ptdispatch.net.relay import Splice
from ptdispatch.net.tracker import ConnectionTracker, closed_logger

LOOPS = ["asyncio", "uvloop"]


def _run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    (uvloop.run if loop == "uvloop" else asyncio.run)(main())  # type: ignore[arg-type]


async def _connect_and_read(dial: Dial, log: EventLog) -> bytes:
    """Connect to a listener whose connections dial with ``dial``; what the client reads until the end."""

    def accepted() -> asyncio.Protocol:
        on_done = closed_logger(log, ConnectionTracker(), "obfs4")
        return Splice(on_done, a_factory=lambda splice: DialOnAccept(splice, dial, log, "obfs4")).a

    server = await asyncio.get_running_loop().create_server(accepted, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"hello")
        try:
            got = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            got = b""
        writer.close()
        return got
    finally:
        server.close()


def _log() -> tuple[EventLog, io.StringIO]:
    out = io.StringIO()
    return EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG)), out


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b"], ids=["long-label", "empty-label"])
def test_a_target_name_the_idna_codec_refuses_is_a_failed_dial(loop: str, host: str) -> None:
    """getaddrinfo() raises a bare UnicodeError, not gaierror, for a label over 63 characters or an
    empty one: a failed dial (WARN), like a name that does not resolve, not a bug (ERROR)."""
    log, out = _log()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        return await upstream.create_connection(lambda: splice.b, Address(host, 80), timeout=5)

    async def main() -> None:
        assert await _connect_and_read(dial, log) == b""

    _run(loop, main)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("LOG WARN obfs4: cannot connect onward: ") for line in lines), lines
    assert not any(line.startswith("LOG ERROR") for line in lines), lines


@pytest.mark.parametrize(
    "bug",
    [ValueError("not a dial failure"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")],
    ids=["ValueError", "UnicodeDecodeError"],
)
async def test_a_bug_in_the_dial_is_still_an_internal_error(bug: Exception) -> None:
    """A UnicodeError subclass is a bug (a codec misused), not the IDNA codec's refusal of a name."""
    log, out = _log()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        raise bug

    assert await _connect_and_read(dial, log) == b""
    lines = out.getvalue().splitlines()
    [error] = [line for line in lines if line.startswith("LOG ERROR")]
    assert error.startswith(f"LOG ERROR obfs4: internal error: {type(bug).__name__}: "), error
    assert not any("cannot connect onward" in line for line in lines), lines
