"""Shadowsocks AEAD TCP framing: ``salt || chunk*`` with ``chunk = Seal(BE16 len) || Seal(payload)``.

Each direction has its own subkey (from its own salt) and its own little-endian nonce counter,
incremented after every seal and every open (twice per chunk).  Payload lengths are 1..0x3FFF.
One AEAD object serves a whole direction; waiting data is cut into full 0x3FFF chunks.

Speed: ciphertext and plaintext are produced with ``encrypt_into``/``decrypt_into`` into one
per-thread scratch buffer and copied out once.  Joining many freshly allocated 16 KiB outputs
instead makes glibc trim and re-fault the heap on every call (measured: ~90 page faults per
256 KiB, which more than halved throughput on this VM).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from cryptography.exceptions import InvalidTag

from ...errors import LocalProtocolError, RemoteProtocolError
from .ciphers import TAG_SIZE, Aead

MAX_PAYLOAD = 0x3FFF
LENGTH_BLOCK = 2 + TAG_SIZE
CHUNK_OVERHEAD = LENGTH_BLOCK + TAG_SIZE
_FULL_LENGTH = MAX_PAYLOAD.to_bytes(2, "big")
_SCRATCH_MIN = 1 << 18
_SCRATCH_MAX = 1 << 22


class Phase(enum.Enum):
    """What a :class:`ChunkOpener` reads next."""

    SALT = "salt"
    LENGTH = "length"
    PAYLOAD = "payload"


_SALT, _LENGTH, _PAYLOAD = Phase.SALT, Phase.LENGTH, Phase.PAYLOAD
_local = threading.local()


def _scratch(size: int) -> memoryview:
    """A writable buffer of at least ``size`` bytes, reused by every engine of this thread."""
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        if size > _SCRATCH_MAX:
            return memoryview(bytearray(size))
        buf = bytearray(max(size, _SCRATCH_MIN))
        _local.buf = buf
    return memoryview(buf)


class ChunkSealer:
    """Encrypts one direction's plaintext into chunks."""

    __slots__ = ("_counter", "_nonce_size", "_seal_into")

    def __init__(self, aead: Aead, nonce_size: int) -> None:
        self._seal_into = aead.encrypt_into
        self._nonce_size = nonce_size
        self._counter = 0

    def seal(self, prefix: bytes, data: bytes) -> bytes:
        """``prefix`` (the salt, or ``b""``) followed by the chunks carrying ``data``."""
        total = len(data)
        count = -(-total // MAX_PAYLOAD)
        out = _scratch(len(prefix) + total + count * CHUNK_OVERHEAD)
        pos = len(prefix)
        out[:pos] = prefix
        seal_into = self._seal_into
        size = self._nonce_size
        counter = self._counter
        view = memoryview(data)
        for offset in range(0, total, MAX_PAYLOAD):
            piece = view[offset : offset + MAX_PAYLOAD]
            n = len(piece)
            length = _FULL_LENGTH if n == MAX_PAYLOAD else n.to_bytes(2, "big")
            seal_into(counter.to_bytes(size, "little"), length, None, out[pos : pos + LENGTH_BLOCK])
            pos += LENGTH_BLOCK
            seal_into((counter + 1).to_bytes(size, "little"), piece, None, out[pos : pos + n + TAG_SIZE])
            pos += n + TAG_SIZE
            counter += 2
        self._counter = counter
        return bytes(out[:pos])


class ChunkOpener:
    """Decrypts one direction: reads the salt, then chunks, and returns the payload bytes.

    ``on_salt(salt)`` returns the AEAD object for that salt's subkey (and may reject the salt by
    raising ``RemoteProtocolError``).  Every failure raises ``RemoteProtocolError`` with ``linger``.
    """

    __slots__ = (
        "_counter",
        "_length_open",
        "_linger",
        "_need",
        "_nonce_size",
        "_on_salt",
        "_open_into",
        "_partial",
        "_phase",
        "chunks",
        "first_payload_size",
    )

    def __init__(self, salt_size: int, nonce_size: int, on_salt: Callable[[bytes], Aead], *, linger: float) -> None:
        self._on_salt = on_salt
        self._nonce_size = nonce_size
        self._linger = linger
        self._length_open: Callable[[bytes, memoryview, None], bytes] = _no_key
        self._open_into: Callable[[bytes, memoryview, None, memoryview], int] = _no_key_into
        self._counter = 0
        self._phase = _SALT
        self._need = salt_size
        self._partial = bytearray()
        #: Chunks authenticated so far.
        self.chunks = 0
        #: Payload size of the first chunk once it has been opened (it holds the address header).
        self.first_payload_size: int | None = None

    @property
    def pending(self) -> bool:
        """Part of a salt or chunk has been received (a stream ending now would cut it)."""
        return bool(self._partial) or self._phase is _PAYLOAD

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; return the payload of every chunk it completes, concatenated."""
        view = memoryview(data)
        end = len(view)
        partial = self._partial
        out = _scratch(end + len(partial))
        pos = written = 0
        if partial:
            pos = self._need - len(partial)
            partial += view[:pos]
            if len(partial) < self._need:
                return b""
            self._partial = bytearray()
            written = self._unit(memoryview(bytes(partial)), out, 0)
        unit = self._unit
        while end - pos >= self._need:
            start = pos
            pos += self._need
            written = unit(view[start:pos], out, written)
        if pos < end:
            self._partial = bytearray(view[pos:])
        return bytes(out[:written]) if written else b""

    def _unit(self, unit: memoryview, out: memoryview, written: int) -> int:
        """Process one complete salt, length block or payload block; return the new output size."""
        phase = self._phase
        if phase is _PAYLOAD:
            return self._payload(unit, out, written)
        if phase is _LENGTH:
            self._length(unit)
        else:
            aead = self._on_salt(bytes(unit))
            self._length_open = aead.decrypt
            self._open_into = aead.decrypt_into
            self._phase = _LENGTH
            self._need = LENGTH_BLOCK
        return written

    def _length(self, unit: memoryview) -> None:
        counter = self._counter
        self._counter = counter + 1
        try:
            plain = self._length_open(counter.to_bytes(self._nonce_size, "little"), unit, None)
        except InvalidTag:
            raise self._error("bad length tag (wrong key or corrupted stream)") from None
        length = int.from_bytes(plain, "big")
        if length == 0 or length > MAX_PAYLOAD:
            raise self._error(f"invalid chunk length {length}")
        self._phase = _PAYLOAD
        self._need = length + TAG_SIZE

    def _payload(self, unit: memoryview, out: memoryview, written: int) -> int:
        counter = self._counter
        self._counter = counter + 1
        size = len(unit) - TAG_SIZE
        try:
            self._open_into(counter.to_bytes(self._nonce_size, "little"), unit, None, out[written : written + size])
        except InvalidTag:
            raise self._error("bad payload tag (wrong key or corrupted stream)") from None
        self.chunks += 1
        if self.first_payload_size is None:
            self.first_payload_size = size
        self._phase = _LENGTH
        self._need = LENGTH_BLOCK
        return written + size

    def _error(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(message, linger=self._linger)


def _no_key(nonce: bytes, data: memoryview, associated_data: None) -> bytes:
    raise LocalProtocolError("chunk opened before the salt was read")


def _no_key_into(nonce: bytes, data: memoryview, associated_data: None, buf: memoryview) -> int:
    raise LocalProtocolError("chunk opened before the salt was read")
