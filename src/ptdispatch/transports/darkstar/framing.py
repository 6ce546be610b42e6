"""DarkStar framing after the handshake (notes section 2.5)::

    frame = AES-GCM(key, nonce(n), BE16(len)) [18] || AES-GCM(key, nonce(n+1), payload) [len+16]
    nonce(i) = 1a1a1a1a || BE64(i)

One counter per direction, one step per seal; no associated data.  We send at most 16383 payload
bytes per frame (Go readers mask the length with 0x3FFF) and accept up to 65535.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import RemoteProtocolError

MAX_SEND = 0x3FFF
TAG = 16
HEADER = 2 + TAG
OVERHEAD = HEADER + TAG
_PREFIX = b"\x1a\x1a\x1a\x1a"
_COUNTER_LIMIT = 2**64 - 3


def nonce(counter: int) -> bytes:
    return _PREFIX + counter.to_bytes(8, "big")


class FrameSealer:
    """Our sending direction."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._counter = 0

    def seal(self, data: bytes) -> bytes:
        """Frames carrying ``data`` (nothing for empty input)."""
        if not data:
            return b""
        encrypt = self._aead.encrypt
        out: list[bytes] = []
        view = memoryview(data)
        counter = self._counter
        for start in range(0, len(data), MAX_SEND):
            chunk = view[start : start + MAX_SEND]
            if counter >= _COUNTER_LIMIT:
                raise OverflowError("DarkStar nonce counter exhausted")
            out.append(encrypt(_PREFIX + counter.to_bytes(8, "big"), len(chunk).to_bytes(2, "big"), None))
            out.append(encrypt(_PREFIX + (counter + 1).to_bytes(8, "big"), chunk, None))
            counter += 2
        self._counter = counter
        return b"".join(out)


class FrameOpener:
    """The peer's sending direction: feed any chunking of its bytes, get the plaintext back.

    A bad tag, or a counter that would overflow, raises ``RemoteProtocolError``.
    """

    __slots__ = ("_aead", "_buffer", "_counter", "_need")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._counter = 0
        self._buffer = bytearray()
        self._need = 0  # payload size + tag once a header was read, else 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> bytes:
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
        view = memoryview(data)
        out: list[bytes] = []
        pos = 0
        size = len(data)
        while True:
            if not self._need:
                if size - pos < HEADER:
                    break
                self._need = int.from_bytes(self._open(view[pos : pos + HEADER]), "big") + TAG
                pos += HEADER
            need = self._need
            if size - pos < need:
                break
            out.append(self._open(view[pos : pos + need]))
            pos += need
            self._need = 0
        self._buffer = bytearray(view[pos:]) if pos < size else bytearray()
        return out[0] if len(out) == 1 else b"".join(out)

    def _open(self, sealed: memoryview) -> bytes:
        counter = self._counter
        if counter >= _COUNTER_LIMIT:
            raise RemoteProtocolError("DarkStar nonce counter exhausted")
        try:
            plain = self._aead.decrypt(_PREFIX + counter.to_bytes(8, "big"), sealed, None)
        except InvalidTag:
            raise RemoteProtocolError("DarkStar frame failed authentication") from None
        self._counter = counter + 1
        return plain
