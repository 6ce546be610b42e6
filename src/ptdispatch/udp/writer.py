"""Frames for one transport connection, joined into one write per event-loop iteration.

A burst of datagrams read in one go (the event loop reads a UDP socket until it is empty) then
costs one engine call and one ``send()`` on the stream instead of one per datagram.
"""

from __future__ import annotations

import asyncio

WRITE_BUFFER_LIMIT = 1 << 20
"""With this much unsent on a transport connection (:class:`BatchWriter`) or on a UDP socket (the
server's to -target, the client's to the applications), further datagrams are dropped rather than
queued.  An event loop's datagram transport keeps what its socket refuses (``EAGAIN``: a link slower
than the stream feeding it) in a queue of its own with no bound, and nothing slows the stream down:
UDP may drop, so it does, as the link itself would."""


class BatchWriter:
    __slots__ = ("_conn", "_loop", "_parts", "_size", "dropped")

    def __init__(self, conn: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop
        self._parts: list[bytes] = []
        self._size = 0
        #: Datagrams dropped because the connection was not keeping up.
        self.dropped = 0

    def add(self, frame: bytes) -> bool:
        """Queue ``frame``; False when the connection is closing (a write failure)."""
        conn = self._conn
        if conn.is_closing():
            return False
        if self._size + conn.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            self.dropped += 1
            return True
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(frame)
        self._size += len(frame)
        return True

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._size = 0
        if not self._conn.is_closing():
            self._conn.write(parts[0] if len(parts) == 1 else b"".join(parts))
