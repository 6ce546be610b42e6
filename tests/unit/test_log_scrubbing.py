"""Addresses in failure lines: ``[scrubbed]`` unless -unsafeLogging (EventLog's show_addresses),
also where they come in through an exception's text; errno and strerror stay."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import Any

import pytest

from ptdispatch.config import LogLevel
from ptdispatch.errors import InternalError
from ptdispatch.frontends import dialer
from ptdispatch.frontends.socks import server as socks_server
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog, library_logs, scrub
from ptdispatch.net import upstream
from ptdispatch.net.accept import Dial, DialOnAccept
from ptdispatch.net.addr import Address
from ptdispatch.net.relay import Splice
from ptdispatch.net.tracker import ConnectionTracker, closed_logger
from ptdispatch.net.upstream import OutboundBind, UpstreamProxy
from ptdispatch.transports import registry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Errno 111] Connect call failed ('127.0.0.2', 1)", "[Errno 111] Connect call failed ([scrubbed])"),
        ("Connect call failed ('::1', 9, 0, 0)", "Connect call failed ([scrubbed])"),
        ("connect to 127.0.0.3:51047 timed out", "connect to [scrubbed] timed out"),
        (
            "Could not connect to proxy 1.2.3.4:1080 [Connection refused]",
            "Could not connect to proxy [scrubbed] [Connection refused]",
        ),
        ("to [2001:db8::1]:443, [::1] and fe80::1%eth0", "to [scrubbed], [scrubbed] and [scrubbed]"),
        ("from ::ffff:10.0.0.1 to 2001:db8::7.", "from [scrubbed] to [scrubbed]."),
        ("at 10.1.2.3. fe80::1: refused", "at [scrubbed]. [scrubbed]: refused"),
        # not addresses: left as they are
        ("[Errno -2] Name or service not known", "[Errno -2] Name or service not known"),
        ("at 12:30:45, version 1.2.3.4.5, aa:bb:cc:dd:ee:ff", "at 12:30:45, version 1.2.3.4.5, aa:bb:cc:dd:ee:ff"),
        ("[scrubbed]", "[scrubbed]"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def _log(shown: bool) -> tuple[EventLog, io.StringIO]:
    out = io.StringIO()
    return EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG), show_addresses=shown), out


@pytest.mark.parametrize("shown", [False, True])
def test_reason_scrubs_unless_addresses_are_shown(shown: bool) -> None:
    log, _ = _log(shown)
    exc = ConnectionRefusedError(111, "Connect call failed ('127.0.0.2', 1)")
    assert log.reason(exc) == (
        "[Errno 111] Connect call failed ('127.0.0.2', 1)" if shown else "[Errno 111] Connect call failed ([scrubbed])"
    )
    assert log.reason(ConnectionResetError()) == "ConnectionResetError"  # no text: its type
    shown_as = "127.0.0.2:1" if shown else "[scrubbed]"
    assert log.reason(OSError("to 127.0.0.2:1"), named=True) == f"OSError: to {shown_as}"


@pytest.mark.parametrize("shown", [False, True])
def test_failure_lines_go_through_the_scrubber(shown: bool) -> None:
    log, out = _log(shown)
    log.failure("obfs4", "handshake failed", ConnectionRefusedError(111, "Connect call failed ('127.0.0.2', 1)"))
    assert ("127.0.0.2" in out.getvalue()) is shown
    assert "[Errno 111] Connect call failed" in out.getvalue()


class _Stalling:
    """An event loop whose connects never complete (everything else is the real loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_connection(self, *args: object, **kwargs: object) -> Any:
        await asyncio.sleep(3600)


async def _refused_port() -> int:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def _connect_through_socks(method: dialer.ClientMethod, request: bytes) -> bytes:
    srv = await asyncio.get_running_loop().create_server(lambda: socks_server.Socks5Frontend(method), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        writer.write(b"\x05\x01\x00")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
        writer.write(request)
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return reply
    finally:
        srv.close()


def _method(log: EventLog, **fields: Any) -> dialer.ClientMethod:
    spec = registry.lookup("plain")
    assert spec is not None
    method = dialer.ClientMethod("plain", spec, {}, None, log, ConnectionTracker(), **fields)
    method.check_options(per_connection_allowed=True)
    return method


def _ipv4_request(host: str, port: int) -> bytes:
    return b"\x05\x01\x00\x01" + bytes(int(part) for part in host.split(".")) + port.to_bytes(2, "big")


def _name_request(name: bytes, port: int) -> bytes:
    return b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
@pytest.mark.parametrize("bind", [None, OutboundBind(v4="127.0.0.1")], ids=["direct", "bound"])
async def test_a_refused_connect(shown: bool, bind: OutboundBind | None) -> None:
    """Both the event loop's create_connection (direct) and its sock_connect (with an outbound bind
    address) quote the address as ``('127.0.0.1', port)``."""
    log, out = _log(shown)
    port = await _refused_port()
    reply = await _connect_through_socks(_method(log, outbound=bind), _ipv4_request("127.0.0.1", port))
    assert reply[:2] == b"\x05\x05"  # connection refused
    line = next(line for line in out.getvalue().splitlines() if line.startswith("LOG WARN"))
    if shown:
        assert line.startswith(f"LOG WARN plain: connection to 127.0.0.1:{port} failed: [Errno 111] ")
        assert f"('127.0.0.1', {port})" in line
    else:
        assert line == "LOG WARN plain: connection to [scrubbed] failed: [Errno 111] Connect call failed ([scrubbed])"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
async def test_a_connect_timeout(shown: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[..., Any] = upstream._direct
    monkeypatch.setattr(upstream, "_direct", lambda loop, *args: real(_Stalling(loop), *args))
    log, out = _log(shown)
    reply = await _connect_through_socks(_method(log, connect_timeout=0.1), _ipv4_request("127.0.0.3", 4444))
    assert reply[:2] == b"\x05\x06"  # TTL expired: the timeout
    destination = "127.0.0.3:4444" if shown else "[scrubbed]"
    assert (
        f"LOG WARN plain: connection to {destination} failed: the TCP connect timed out" in out.getvalue().splitlines()
    )
    assert ("127.0.0.3" in out.getvalue()) is shown


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
async def test_a_bad_host_name(shown: bool) -> None:
    """An HTTP proxy's CONNECT line cannot carry a name with a space: refused without quoting it."""
    proxy = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    try:
        log, out = _log(shown)
        method = _method(log)
        method.proxy = UpstreamProxy("http", "127.0.0.1", proxy.sockets[0].getsockname()[1])
        reply = await _connect_through_socks(method, _name_request(b"my secret host.example", 443))
    finally:
        proxy.close()
    assert reply[:2] == b"\x05\x04"  # host unreachable
    destination = "my secret host.example:443" if shown else "[scrubbed]"
    line = f"LOG WARN plain: connection to {destination} failed: the destination is not a host name"
    assert line in out.getvalue().splitlines()
    assert ("secret" in out.getvalue()) is shown


@pytest.mark.parametrize("shown", [False, True])
def test_the_close_line_scrubs_the_error(shown: bool) -> None:
    log, out = _log(shown)
    tracker = ConnectionTracker()
    splice = Splice()
    tracker.add(splice)
    closed_logger(log, tracker, "obfs4")(splice, ConnectionRefusedError(111, "Connect call failed ('127.0.0.2', 1)"))
    assert ("127.0.0.2" in out.getvalue()) is shown
    assert "(ConnectionRefusedError: [Errno 111] Connect call failed (" in out.getvalue()


async def _connect_failing_onward(log: EventLog, dial: Dial) -> None:
    """Connect to a listener whose connections dial onward with ``dial``, which fails: the
    connection is reset (a failed dial onward resets the accepted side)."""

    def accepted() -> asyncio.Protocol:
        on_done = closed_logger(log, ConnectionTracker(), "obfs4")
        return Splice(on_done, a_factory=lambda splice: DialOnAccept(splice, dial, log, "obfs4")).a

    server = await asyncio.get_running_loop().create_server(accepted, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        server.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
async def test_cannot_connect_onward(shown: bool) -> None:
    """The server side's dial to its target (or tor's ExtORPort) fails: the line scrubs the error."""
    log, out = _log(shown)
    port = await _refused_port()

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        return await upstream.create_connection(lambda: splice.b, Address("127.0.0.1", port), timeout=5)

    await _connect_failing_onward(log, dial)
    line = next(line for line in out.getvalue().splitlines() if "cannot connect onward" in line)
    assert line.startswith("LOG WARN obfs4: cannot connect onward: [Errno 111] ")
    assert ("127.0.0.1" in line) is shown


# --- internal errors: a bug's message is an exception's text too --------------------------------

_BUG = "peer ('192.0.2.7', 443) and [2001:db8::5]:80"
"""A bug's message quoting a socket address tuple (an IPv4 one) and a bracketed IPv6 address."""


def _check_bug_line(line: str, shown: bool, label: str) -> None:
    assert line.startswith(f"LOG ERROR {label}: internal error: ValueError: peer ")
    if shown:
        assert _BUG in line
    else:
        assert "peer ([scrubbed]) and [scrubbed]" in line
        assert "192.0.2.7" not in line and "2001:db8" not in line


@pytest.mark.parametrize("shown", [False, True])
def test_internal_error_lines_scrub_the_bugs_text(shown: bool) -> None:
    log, out = _log(shown)
    try:
        raise ValueError(_BUG)
    except ValueError as exc:
        log.internal_error("obfs4", exc)  # the SOCKS frontend's and the accept path's
        log.failure("obfs4", "handshake failed", InternalError.wrap(exc))  # an engine's, through the adapter
    log.internal_error(None, f"Fatal error on transport: {_BUG}")  # the event loop's, without an exception
    first, second, third = out.getvalue().splitlines()
    _check_bug_line(first, shown, "obfs4")
    assert "(in test_internal_error_lines_scrub_the_bugs_text, test_log_scrubbing.py:" in first  # where: kept
    _check_bug_line(second, shown, "obfs4")
    assert third == "LOG ERROR internal error: Fatal error on transport: " + (
        _BUG if shown else "peer ([scrubbed]) and [scrubbed]"
    )


@pytest.mark.parametrize("shown", [False, True])
def test_library_lines_are_scrubbed(shown: bool) -> None:
    """Optimizer logs a child's bug through Python logging, as the library does: the dispatcher's
    handler scrubs it like its own lines."""
    log, out = _log(shown)
    with library_logs(log):
        logging.getLogger("ptdispatch.optimizer").error("%s: %s", "optimizer", f"internal error: ValueError: {_BUG}")
    [line] = out.getvalue().splitlines()
    _check_bug_line(line, shown, "optimizer")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
async def test_a_bug_in_the_socks_dial(shown: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    async def buggy(*args: object) -> Any:
        raise ValueError(_BUG)

    monkeypatch.setattr(upstream, "_direct", buggy)
    log, out = _log(shown)
    await _connect_through_socks(_method(log), _ipv4_request("127.0.0.3", 4444))
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("LOG ERROR")]
    _check_bug_line(line, shown, "plain")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shown", [False, True])
async def test_a_bug_in_the_dial_onward(shown: bool) -> None:
    """The server side's dial to its target raises something that is not a failed dial."""
    log, out = _log(shown)

    async def dial(splice: Splice, accepted: asyncio.Transport) -> object:
        raise ValueError(_BUG)

    await _connect_failing_onward(log, dial)
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("LOG ERROR")]
    _check_bug_line(line, shown, "obfs4")
