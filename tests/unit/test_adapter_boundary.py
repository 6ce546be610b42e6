"""The adapter's error boundary: a bug in an engine costs one connection, lingers like a failed
handshake, reaches ``on_error`` as an ``InternalError`` once, and is logged at ERROR."""

from __future__ import annotations

import asyncio
import time

from ptdispatch import api
from ptdispatch.errors import InternalError
from ptdispatch.net.addr import Address
from ptdispatch.transports.base import Engine, EngineClientTransport, EngineServerTransport, Timeouts

LINGER = 0.4


class BuggyEngine(Engine):
    """A minimal engine written against the old interface, with a bug on its first bytes."""

    def __init__(self) -> None:
        self._out: list[bytes] = []

    @property
    def established(self) -> bool:
        return False

    def receive_data(self, data: bytes) -> bytes:
        raise KeyError("a bug")

    def send_data(self, data: bytes) -> None:
        self._out.append(data)

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out


class BuggyServer(EngineServerTransport):
    timeouts = Timeouts(handshake=5.0, linger=LINGER)

    def new_engine(self) -> Engine:
        return BuggyEngine()


class BuggyClient(EngineClientTransport):
    def new_engine(self, destination: Address | None) -> Engine:
        return BuggyEngine()


async def test_engine_bug_lingers_and_reports_internal_error() -> None:
    errors: list[Exception] = []
    server = await api.listen(BuggyServer(), "127.0.0.1", 0, asyncio.Protocol, on_error=errors.append)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.monotonic()
        writer.write(b"probe")
        assert await asyncio.wait_for(reader.read(-1), 5) == b""  # silence, then the close
        elapsed = time.monotonic() - began
        writer.close()
        assert elapsed >= LINGER * 0.9
        assert len(errors) == 1
        assert isinstance(errors[0], InternalError)
        assert isinstance(errors[0].__cause__, KeyError)
        assert "KeyError" in str(errors[0]) and "receive_data" in str(errors[0])
    finally:
        server.close()
        await server.wait_closed()


async def test_client_engine_bug_is_an_internal_error() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            await asyncio.wait_for(api.connect(BuggyClient(), ("127.0.0.1", port), asyncio.Protocol), 5)
        except InternalError as exc:
            assert isinstance(exc.__cause__, KeyError)
        else:
            raise AssertionError("the dial should fail")
    finally:
        server.close()
        await server.wait_closed()


def test_server_method_logs_an_internal_error_at_error_level() -> None:
    import io

    from ptdispatch.backends import ServerMethod
    from ptdispatch.config import LogLevel
    from ptdispatch.errors import RemoteProtocolError
    from ptdispatch.ipc.reporter import Reporter
    from ptdispatch.logs import EventLog
    from ptdispatch.net.tracker import ConnectionTracker

    out = io.StringIO()
    log = EventLog(Reporter(out=out, err=io.StringIO(), level=LogLevel.DEBUG))
    method = ServerMethod("buggy", BuggyServer(), Address("127.0.0.1", 1), log, ConnectionTracker())
    try:
        raise ValueError("oops")
    except ValueError as exc:
        method.handshake_failed(InternalError.wrap(exc))
    method.handshake_failed(RemoteProtocolError("bad tag"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("LOG ERROR buggy: internal error: ValueError: oops")
    assert lines[1] == "LOG INFO buggy: handshake failed: bad tag"


class MinimalEngine(Engine):
    """An engine written against the old interface: no start/get_timer/receive_eof of its own."""

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self.done = False

    @property
    def established(self) -> bool:
        return self.done

    def receive_data(self, data: bytes) -> bytes:
        self.done = True
        return data

    def send_data(self, data: bytes) -> None:
        self._out.append(data)

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out


def test_minimal_engine_gets_the_default_deadline_and_eof_check() -> None:
    from ptdispatch.errors import HandshakeTimeout, RemoteProtocolError

    engine = MinimalEngine()
    assert engine.get_timer() is None  # not started: no deadline
    engine.start(100.0, Timeouts(handshake=5.0, linger=2.0))
    assert engine.get_timer() == 105.0
    engine.handle_timer(104.0)  # early: nothing happens
    try:
        engine.handle_timer(105.0)
    except HandshakeTimeout as exc:
        assert exc.linger == 2.0 and "5 s" in str(exc)
    else:
        raise AssertionError("the deadline passed")
    try:
        MinimalEngine().receive_eof()
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("EOF during the handshake is an error")
    done = MinimalEngine()
    done.start(0.0, Timeouts())
    done.receive_data(b"x")
    assert done.get_timer() is None
    done.receive_eof()  # an ordinary end of stream
    assert done.buffered_size() == 0 and done.failure_linger() == 0.0
