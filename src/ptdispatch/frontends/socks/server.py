"""The asyncio SOCKS5 frontend: run the sans-IO handshake, dial through the transport, splice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ...config import LogLevel
from ...errors import failed_dial
from ...net.addr import Address
from ...net.relay import Splice
from ..dialer import ClientMethod, reply_for
from . import socks4
from .protocol import NEED_DATA, Failure, Reply, Request, Socks5Server, reply

HANDSHAKE_TIMEOUT = 30.0
"""Seconds a client has to complete the SOCKS5 handshake (greeting, arguments, request)."""
ARGS_TIMEOUT = 10.0
"""Seconds a client has to deliver a 0x09 parameter block once the method is chosen (reply 0x11);
never past the handshake's own deadline."""


class Socks5Frontend(asyncio.Protocol):
    """One accepted SOCKS5 client connection (or SOCKS4/4a, chosen by the first byte, 0x04)."""

    def __init__(self, method: ClientMethod) -> None:
        self.method = method
        self.core: Socks5Server | socks4.Socks4Server = Socks5Server()
        self._reply: Callable[[Reply], bytes] = reply
        self._first = True
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # loop time the whole handshake must be over by
        self._in_block = False  # the timer is the 0x09 parameter block's
        self._task: asyncio.Task[None] | None = None
        self._early: asyncio.Task[None] | None = None  # a dial started before the CONNECT request
        self._early_result: tuple[Splice | None, Exception | None] | None = None  # what it made
        self._request: Request | None = None  # a CONNECT waiting for the early dial

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + HANDSHAKE_TIMEOUT
        self._timer = loop.call_at(self._deadline, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self._first and data:
            self._first = False
            if data[0] == socks4.VERSION:
                self.core, self._reply = socks4.Socks4Server(), socks4.reply
        event = self.core.receive_data(data)
        self._flush()
        if event is NEED_DATA:
            if self.core.awaiting_json_block != self._in_block and self._timer is not None:
                self._block_timer()
            if self._early is None and self.method.spec.dials_without_destination:
                core = self.core
                if isinstance(core, Socks5Server) and core.awaiting_request:
                    self._early = asyncio.get_running_loop().create_task(self._dial_early(core.args))
            return
        self._cancel_timer()
        if isinstance(event, Failure):
            self.method.log.debug(f"{self.method.name}: SOCKS handshake failed: {event.message}")
            self._cancel_early()
            self._close()
        elif isinstance(event, Request):
            assert self.transport is not None
            self.transport.pause_reading()
            if self._early is None:
                self._task = asyncio.get_running_loop().create_task(self._connect(event))
            else:  # the early dial's task answers (no second task: one event-loop turn less)
                self._request = event
                if self._early_result is not None:
                    self._answer_early()

    def eof_received(self) -> bool:
        if self._task is None and self._request is None:
            self._close()
        return True  # keep the write side open until the dial finishes

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.transport = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif self._task is None:
            self._cancel_early()

    async def _dial(self, args: dict[str, object], address: Address | None) -> Splice:
        """A splice whose far side is dialled through the transport (raises what the dial raised)."""
        method = self.method
        splice = method.new_splice(method.name)
        try:
            await method.dial(method.route(args, address), lambda: splice.b)
        except asyncio.CancelledError:
            splice.fail(ConnectionAbortedError("client went away"))
            raise
        except Exception as exc:
            splice.fail(exc)
            raise
        return splice

    async def _outcome(
        self, args: dict[str, object], address: Address | None
    ) -> tuple[Splice | None, Exception | None]:
        """The dial's splice, or what it raised (cancellation still propagates)."""
        try:
            return await self._dial(args, address), None
        except Exception as exc:
            return None, exc

    async def _dial_early(self, args: dict[str, object]) -> None:
        """The dial started before the CONNECT request; answers it when it is already waiting."""
        self._early_result = await self._outcome(args, None)
        if self._request is not None:
            self._answer_early()

    def _answer_early(self) -> None:
        request, result = self._request, self._early_result
        assert request is not None and result is not None
        self._request = self._early = self._early_result = None  # the connection owns the splice now
        self._answer(request, *result)

    async def _connect(self, request: Request) -> None:
        self._answer(request, *await self._outcome(request.args, request.address))

    def _answer(self, request: Request, splice: Splice | None, error: Exception | None) -> None:
        """The SOCKS reply for the dial's outcome; on success, the splice takes the connection."""
        method, transport = self.method, self.transport
        lost_early = error is None and splice is not None and splice.b.lost
        if lost_early:  # an early dial's connection that ended before the CONNECT request came
            assert splice is not None
            error = splice.error or ConnectionResetError("the transport connection closed before the SOCKS request")
            splice.fail(error)  # the client side never joins: the splice is done
        if error is not None and (lost_early or failed_dial(error)):
            code = reply_for(error)
            method.log.warn(f"{method.name}: {_failed(method, request)}: {method.log.reason(error)}")
            if transport is not None:
                transport.write(self._reply(code))
                transport.close()
            return
        if error is not None:  # a bug must cost one connection, never the process
            method.log.internal_error(method.name, error)
            if transport is not None:
                transport.abort()
            return
        assert splice is not None
        if transport is None:  # the client left while we dialed
            splice.fail(ConnectionAbortedError("client went away"))
            return
        if method.log.enabled(LogLevel.INFO):
            method.log.info(f"{method.name}: connection from {method.log.peer(transport)} established")
        transport.write(self._reply(Reply.SUCCEEDED))
        splice.attach(splice.a, transport, request.leftover)

    def _block_timer(self) -> None:
        """Entering the 0x09 parameter block: it has ARGS_TIMEOUT from now; leaving it: the request
        has the rest of the handshake's.  Armed once per change, not per chunk (a block trickled in a
        byte at a time must not keep the connection), and never past the handshake's deadline."""
        assert self._timer is not None
        self._timer.cancel()
        self._in_block = not self._in_block
        loop = asyncio.get_running_loop()
        when = min(loop.time() + ARGS_TIMEOUT, self._deadline) if self._in_block else self._deadline
        self._timer = loop.call_at(when, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if self.core.awaiting_json_block:
            self.core.fail(Reply.ARGS_TIMEOUT, "no parameter block within the timeout")
            self._flush()
        self.method.log.debug(f"{self.method.name}: SOCKS handshake timed out")
        self._close()

    def _flush(self) -> None:
        out = self.core.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _cancel_early(self) -> None:
        """No CONNECT will use the early dial (or the client left before its answer): stop it, or
        end the connection it made."""
        early, result = self._early, self._early_result
        self._early = self._early_result = self._request = None
        if early is not None and not early.done():
            early.cancel()
        elif result is not None and result[0] is not None:
            result[0].fail(ConnectionAbortedError("no SOCKS request followed"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _failed(method: ClientMethod, request: Request) -> str:
    """``connection to <destination> failed``, the destination ``[scrubbed]`` unless addresses are shown."""
    return f"connection to {method.log.address(request.address)} failed"
