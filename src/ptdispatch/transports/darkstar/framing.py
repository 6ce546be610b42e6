"""DarkStar framing after the handshake (notes section 2.5)::

    frame = AES-GCM(key, nonce(n), BE16(len)) [18] || AES-GCM(key, nonce(n+1), payload) [len+16]
    nonce(i) = 1a1a1a1a || BE64(i)

One counter per direction, one step per seal; no associated data.  We send at most 16383 payload
bytes per frame (Go readers mask the length with 0x3FFF) and accept up to 65535.

Speed: as in :mod:`ptdispatch.transports.shadow.framing`, frames are sealed and opened with
``encrypt_into``/``decrypt_into`` into the per-thread scratch buffer and copied out once.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import RemoteProtocolError
from ..shadow.framing import _scratch as scratch

MAX_SEND = 0x3FFF
TAG = 16
HEADER = 2 + TAG
OVERHEAD = HEADER + TAG
_PREFIX = b"\x1a\x1a\x1a\x1a"
_COUNTER_LIMIT = 2**64 - 3
_FULL = MAX_SEND.to_bytes(2, "big")


def nonce(counter: int) -> bytes:
    return _PREFIX + counter.to_bytes(8, "big")


class FrameSealer:
    """Our sending direction."""

    __slots__ = ("_counter", "_seal_into")

    def __init__(self, key: bytes) -> None:
        self._seal_into = AESGCM(key).encrypt_into
        self._counter = 0

    def seal(self, data: bytes) -> bytes:
        """Frames carrying ``data`` (nothing for empty input)."""
        total = len(data)
        if not total:
            return b""
        count = -(-total // MAX_SEND)
        counter = self._counter
        if counter + 2 * count > _COUNTER_LIMIT:
            raise OverflowError("DarkStar nonce counter exhausted")
        out = scratch(total + count * OVERHEAD)
        seal_into = self._seal_into
        view = memoryview(data)
        pos = 0
        for start in range(0, total, MAX_SEND):
            chunk = view[start : start + MAX_SEND]
            n = len(chunk)
            length = _FULL if n == MAX_SEND else n.to_bytes(2, "big")
            seal_into(_PREFIX + counter.to_bytes(8, "big"), length, None, out[pos : pos + HEADER])
            pos += HEADER
            seal_into(_PREFIX + (counter + 1).to_bytes(8, "big"), chunk, None, out[pos : pos + n + TAG])
            pos += n + TAG
            counter += 2
        self._counter = counter
        return bytes(out[:pos])


class FrameOpener:
    """The peer's sending direction: feed any chunking of its bytes, get the plaintext back.

    A bad tag, or a counter that would overflow, raises ``RemoteProtocolError``.
    """

    __slots__ = ("_aead", "_buffer", "_counter", "_need", "_open_into")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._open_into = self._aead.decrypt_into
        self._counter = 0
        self._buffer = bytearray()
        self._need = 0  # payload size + tag once a header was read, else 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame, counting a frame whose length was read
        and whose payload was not (nothing is held back then, but the stream is not at a frame's end)."""
        return len(self._buffer) + self._need

    def feed(self, data: bytes) -> bytes:
        view = memoryview(data)
        size = len(view)
        partial = self._buffer
        out = scratch(size + len(partial))
        pos = written = 0
        if partial:  # complete the unit (header or payload) begun in an earlier call
            pos = (self._need or HEADER) - len(partial)
            partial += view[:pos]
            if len(partial) < (self._need or HEADER):
                return b""
            self._buffer = bytearray()
            written = self._unit(memoryview(bytes(partial)), out, 0)
        unit = self._unit
        while size - pos >= (self._need or HEADER):
            start = pos
            pos += self._need or HEADER
            written = unit(view[start:pos], out, written)
        if pos < size:
            self._buffer = bytearray(view[pos:])
        return bytes(out[:written]) if written else b""

    def _unit(self, sealed: memoryview, out: memoryview, written: int) -> int:
        """Open one complete header or payload; return the new output size."""
        if not self._need:
            self._need = int.from_bytes(self._open_header(sealed), "big") + TAG
            return written
        size = self._need - TAG
        self._open_payload(sealed, out[written : written + size])
        self._need = 0
        return written + size

    def _next_nonce(self) -> bytes:
        counter = self._counter
        if counter >= _COUNTER_LIMIT:
            raise RemoteProtocolError("DarkStar nonce counter exhausted")
        self._counter = counter + 1
        return _PREFIX + counter.to_bytes(8, "big")

    def _open_header(self, sealed: memoryview) -> bytes:
        try:
            return self._aead.decrypt(self._next_nonce(), sealed, None)
        except InvalidTag:
            raise RemoteProtocolError("DarkStar frame header failed authentication") from None

    def _open_payload(self, sealed: memoryview, into: memoryview) -> None:
        try:
            self._open_into(self._next_nonce(), sealed, None, into)
        except InvalidTag:
            raise RemoteProtocolError("DarkStar frame payload failed authentication") from None
