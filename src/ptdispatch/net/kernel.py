"""Bulk relaying inside the kernel: ``splice(2)`` through a pipe, for two plain TCP sockets.

A :class:`~ptdispatch.net.relay.Splice` between two plain TCP transports (the ``plain`` transport's
client and server, transparent TCP over plain) relays in Python at first; once one direction has
carried :data:`SWITCH_AFTER` bytes, ``Splice.to_kernel`` hands both sockets to a :class:`KernelRelay`, so a
long transfer's bytes never reach user space: each readable event moves up to a pipe's worth from
one socket into a pipe and on into the other socket, two system calls and no copy through Python
(socat, the benchmark's reference, reads into and writes from its own buffer).

The switch happens only at a quiet point: both transports' write buffers empty, no half-close yet,
nothing held back.  Both transports are paused and stay open (their sockets are read and written
through duplicated descriptors) until the relay ends; then they are closed, or reset after an
error (a reset or a failure on either socket: both peers see ECONNRESET, never a FIN that would
pass a truncated stream off as complete), which runs the splice's usual end.  Back-pressure is
the pipe: when the receiving socket is full, the sending one is no longer read until the pipe has
drained.  A half-close passes through as ``shutdown(SHUT_WR)`` once the pipe of that direction is
empty.

Pipes come from a small per-process pool and go back to it empty, so an idle connection holds no
pipe: only connections with bytes in flight do.  A process that is not root and has many bulk
connections in flight at once can exceed its pipe budget (``fs.pipe-user-pages-soft``, 64 MiB): its
further pipes keep the default size or get smaller, which costs speed, not bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import importlib
import os
import socket
from collections.abc import Callable

SWITCH_AFTER = 256 * 1024
"""Bytes one direction carries in Python before the connection moves into the kernel (short
exchanges never pay for the switch: two ``dup`` calls and two pollers)."""
PIPE_SIZE = 1 << 20
"""Each pipe's capacity (``F_SETPIPE_SZ``; the default 64 KiB if the system refuses)."""
POOL_LIMIT = 64
"""Empty pipes kept for reuse."""
PIPE_RETRY = 0.1
"""Seconds a direction waits before it tries again for a pipe when no descriptor was left for one."""

_SPLICE: Callable[..., int] | None = getattr(os, "splice", None)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _raw_types() -> tuple[type, ...]:
    """The event loops' own TCP transport classes (uvloop's, asyncio's selector one)."""
    found: list[type] = []
    for module, name in (("uvloop.loop", "TCPTransport"), ("asyncio.selector_events", "_SelectorSocketTransport")):
        with contextlib.suppress(ImportError):
            cls = getattr(importlib.import_module(module), name, None)
            if isinstance(cls, type):
                found.append(cls)
    return tuple(found)


_RAW = _raw_types()


def available() -> bool:
    """This system can splice (Linux)."""
    return _SPLICE is not None


def eligible(transport: asyncio.BaseTransport) -> bool:
    """``transport`` is the event loop's own TCP transport over a socket (not TLS, not an engine's)."""
    if type(transport) not in _RAW or transport.get_extra_info("sslcontext") is not None:
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.type == socket.SOCK_STREAM


class _Pool:
    """Empty pipes, reused: ``(read end, write end)``, both non-blocking."""

    def __init__(self) -> None:
        self._free: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._free)

    def take(self) -> tuple[int, int]:
        if self._free:
            return self._free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # over the user's pipe budget: keep the default size
            fcntl.fcntl(w, _SETPIPE_SZ, PIPE_SIZE)
        return r, w

    def give(self, pipe: tuple[int, int], *, empty: bool) -> None:
        if empty and len(self._free) < POOL_LIMIT:
            self._free.append(pipe)
        else:
            for fd in pipe:
                os.close(fd)


_POOL = _Pool()


def pooled_pipes() -> int:
    """Empty pipes kept for reuse in this process (two descriptors each)."""
    return len(_POOL)


class _Direction:
    """One way of the relay: ``src`` → pipe → ``dst`` (sockets on duplicated descriptors)."""

    __slots__ = ("add", "done", "dst", "pipe", "queued", "relay", "retry", "src", "waiting")

    def __init__(self, relay: KernelRelay, src: socket.socket, dst: socket.socket, add: Callable[[int], None]) -> None:
        self.relay = relay
        self.src = src
        self.dst = dst
        self.add = add  # counts the bytes read
        self.pipe: tuple[int, int] | None = None
        self.queued = 0  # bytes in the pipe
        self.done = False  # EOF read
        self.waiting = False  # the receiver was full: waiting for it to be writable, not reading
        self.retry: asyncio.TimerHandle | None = None  # no descriptor for a pipe: reading again later

    def readable(self) -> None:
        assert _SPLICE is not None
        if self.relay.ended:  # a callback already queued when the relay ended
            return
        try:
            if self.pipe is None:
                try:
                    self.pipe = _POOL.take()
                except OSError as exc:
                    if exc.errno not in (errno.EMFILE, errno.ENFILE):
                        raise
                    self._wait_for_a_pipe()
                    return
            n = _SPLICE(self.src.fileno(), self.pipe[1], PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:  # a reset
            self.relay.fail(exc)
            return
        if n == 0:
            self.done = True
            self.relay.loop.remove_reader(self.src.fileno())
        else:
            self.add(n)
            self.queued += n
        self.drain()
        if self.queued and not self.waiting and not self.relay.ended:
            self.waiting = True  # back-pressure: read no more until the pipe has drained
            self.relay.loop.remove_reader(self.src.fileno())
            self.relay.loop.add_writer(self.dst.fileno(), self.drain)

    def _wait_for_a_pipe(self) -> None:
        """No descriptor left for a pipe (EMFILE, ENFILE): read nothing for :data:`PIPE_RETRY`
        seconds, then try again.  The bytes wait in the socket, and the sender is held back as by a
        slow receiver; the connection is not cut for what is the process's shortage, not its own."""
        loop = self.relay.loop
        loop.remove_reader(self.src.fileno())
        self.retry = loop.call_later(PIPE_RETRY, self._read_again)

    def _read_again(self) -> None:
        self.retry = None
        if not self.relay.ended:
            self.relay.loop.add_reader(self.src.fileno(), self.readable)

    def drain(self) -> None:
        """Move what the pipe holds into the receiver, as far as it takes it."""
        assert _SPLICE is not None
        relay = self.relay
        if relay.ended:
            return
        if self.queued:
            assert self.pipe is not None
            try:
                while self.queued:
                    self.queued -= _SPLICE(self.pipe[0], self.dst.fileno(), self.queued, flags=_FLAGS)
            except BlockingIOError:
                return  # still full: wait for the receiver (see readable)
            except OSError as exc:
                relay.fail(exc)
                return
        if self.pipe is not None:
            _POOL.give(self.pipe, empty=True)
            self.pipe = None
        if self.waiting:
            self.waiting = False
            relay.loop.remove_writer(self.dst.fileno())
            if not self.done:
                relay.loop.add_reader(self.src.fileno(), self.readable)
        if self.done:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)  # the half-close, once every byte is on its way
            relay.direction_done()

    def stop(self) -> None:
        loop = self.relay.loop
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        loop.remove_reader(self.src.fileno())
        if self.waiting:
            loop.remove_writer(self.dst.fileno())
        if self.pipe is not None:
            _POOL.give(self.pipe, empty=not self.queued)
            self.pipe = None


class KernelRelay:
    """Both directions of a splice between transports ``a`` and ``b``, relayed by the kernel.

    ``on_end(error)`` runs once, when both directions have ended (``None``) or on the first error;
    the transports are then closed (reset after an error) by the caller.
    """

    def __init__(
        self,
        a: asyncio.Transport,
        b: asyncio.Transport,
        count_a: Callable[[int], None],
        count_b: Callable[[int], None],
        on_end: Callable[[Exception | None], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.ended = False
        self._on_end = on_end
        sa = _dup(a)  # OSError (no descriptor left): the caller keeps relaying in Python
        try:
            sb = _dup(b)
        except OSError:
            sa.close()
            raise
        a.pause_reading()
        b.pause_reading()
        self._socks = (sa, sb)
        self._ways = (_Direction(self, sa, sb, count_a), _Direction(self, sb, sa, count_b))
        self._open = 2
        for way in self._ways:
            self.loop.add_reader(way.src.fileno(), way.readable)

    def direction_done(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._end(None)

    def fail(self, exc: Exception) -> None:
        self._end(exc)

    def stop(self) -> None:
        """Stop relaying (the splice is being closed or aborted from outside)."""
        if not self.ended:
            self.ended = True
            self._release()

    def _end(self, error: Exception | None) -> None:
        if self.ended:
            return
        self.ended = True
        self._release()
        self._on_end(error)

    def _release(self) -> None:
        for way in self._ways:
            way.stop()
        for sock in self._socks:
            sock.close()


def _dup(transport: asyncio.Transport) -> socket.socket:
    """A socket object on a duplicate of ``transport``'s descriptor (the transport keeps its own)."""
    fd = transport.get_extra_info("socket").fileno()
    sock = socket.socket(fileno=os.dup(fd))
    sock.setblocking(False)
    return sock
