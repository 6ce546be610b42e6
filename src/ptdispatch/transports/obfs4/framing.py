"""obfs4 frames: ``obfsLen(2) || secretbox(packet)``, packets ``type || len(BE16) || payload || pad``.

As obfs4proxy 0.0.14's ``framing`` and ``packet.go``: each direction has a 72-byte key
(secretbox key 32, nonce prefix 16, SipHash DRBG seed 24); the nonce is the prefix followed
by a big-endian 64-bit counter starting at 1; the length field is the box length XOR the first
two bytes of the next DRBG block.  Hot loops keep everything in locals: one SipHash update,
one secretbox call and a few slices per frame.
"""

from __future__ import annotations

from typing import Any

from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from ...crypto.drbg import HashDrbg
from ...errors import RemoteProtocolError
from ..base import Rng

KEY_LENGTH = 72
MAX_SEGMENT = 1448
FRAME_OVERHEAD = 18  # length + tag
MAX_FRAME_PAYLOAD = MAX_SEGMENT - FRAME_OVERHEAD  # 1430
PACKET_OVERHEAD = 3
MAX_PACKET_PAYLOAD = MAX_FRAME_PAYLOAD - PACKET_OVERHEAD  # 1427
HEADER_LENGTH = FRAME_OVERHEAD + PACKET_OVERHEAD  # 21
MIN_BOX = 16
MAX_BOX = MAX_SEGMENT - 2  # 1446
SEED_PAYLOAD = 24

TYPE_PAYLOAD = 0
TYPE_PRNG_SEED = 1

# libsodium through PyNaCl's own compiled binding: the public wrappers cost more per call than
# sealing a whole frame, and cannot write into a caller's buffer.
_seal = _lib.crypto_secretbox_easy
_open = _lib.crypto_secretbox_open_easy
_memmove = _ffi.memmove
_ZEROS = bytes(MAX_PACKET_PAYLOAD)


class Encoder:
    """Seals packets into frames for one direction."""

    __slots__ = ("_counter", "_drbg", "_key", "_prefix")

    def __init__(self, key: bytes) -> None:
        self._key = key[:32]
        self._prefix = key[32:48]
        self._counter = 1
        self._drbg = HashDrbg(key[48:72])

    def packets(self, packets: list[bytes]) -> bytes:
        """Frame each packet plaintext (already ``type || len || payload || pad``)."""
        out = bytearray(sum(len(p) for p in packets) + len(packets) * FRAME_OVERHEAD)
        self._seal_packets(out, _ffi.from_buffer(out), 0, packets)
        return bytes(out)

    def _seal_packets(self, out: bytearray, outp: Any, w: int, packets: list[bytes]) -> None:
        key, prefix, counter = self._key, self._prefix, self._counter
        for pkt, mask in zip(packets, self._drbg.length_masks(len(packets)), strict=True):
            size = len(pkt)
            _seal(outp + (w + 2), pkt, size, prefix + counter.to_bytes(8, "big"), key)
            counter += 1
            box = size + 16
            out[w] = (box >> 8) ^ (mask >> 8)
            out[w + 1] = (box ^ mask) & 0xFF
            w += box + 2
        self._counter = counter

    def payload(self, data: bytes, padding: list[bytes] | None = None) -> bytes:
        """Frame ``data`` as payload packets of at most 1427 bytes each, then ``padding``.

        Each packet is assembled in place in the output buffer and sealed there (libsodium's
        ``crypto_secretbox_easy`` allows the ciphertext to overlap the message this way).
        """
        size = len(data)
        count = -(-size // MAX_PACKET_PAYLOAD)
        extra = sum(len(p) + FRAME_OVERHEAD for p in padding) if padding else 0
        out = bytearray(size + count * HEADER_LENGTH + extra)
        outp = _ffi.from_buffer(out)
        view = memoryview(data)
        key, prefix, counter = self._key, self._prefix, self._counter
        w = pos = 0
        for mask in self._drbg.length_masks(count):
            n = size - pos if size - pos < MAX_PACKET_PAYLOAD else MAX_PACKET_PAYLOAD
            out[w + 19] = n >> 8
            out[w + 20] = n & 0xFF  # out[w + 18] (type 0) is already zero
            out[w + 21 : w + 21 + n] = view[pos : pos + n]
            _seal(outp + (w + 2), outp + (w + 18), n + 3, prefix + counter.to_bytes(8, "big"), key)
            counter += 1
            box = n + 19
            out[w] = (box >> 8) ^ (mask >> 8)
            out[w + 1] = (box ^ mask) & 0xFF
            w += box + 2
            pos += n
        self._counter = counter
        if padding:
            self._seal_packets(out, outp, w, padding)
        return bytes(out)


def framed_length(size: int) -> int:
    """Wire length of ``size`` payload bytes framed by :meth:`Encoder.payload` (no padding)."""
    return size + -(-size // MAX_PACKET_PAYLOAD) * HEADER_LENGTH


def make_packet(kind: int, payload: bytes = b"", pad: int = 0) -> bytes:
    """``type || len(payload) || payload || pad zero bytes``."""
    return bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload + _ZEROS[:pad]


def padding_packets(burst_length: int, target: int) -> list[bytes]:
    """Padding packets that bring a burst of ``burst_length`` bytes to ``target`` mod 1448
    (obfs4proxy's ``padBurst``)."""
    tail = burst_length % MAX_SEGMENT
    pad = target - tail if target >= tail else (MAX_SEGMENT - tail) + target
    if pad > HEADER_LENGTH:
        return [make_packet(TYPE_PAYLOAD, b"", pad - HEADER_LENGTH)]
    if pad > 0:
        return [make_packet(TYPE_PAYLOAD, b"", MAX_PACKET_PAYLOAD), make_packet(TYPE_PAYLOAD, b"", pad)]
    return []


class Decoder:
    """Opens frames for one direction and splits packets; keeps a partial frame between calls."""

    __slots__ = (
        "_buf",
        "_counter",
        "_hash",
        "_invalid",
        "_key",
        "_next",
        "_ofb",
        "_prefix",
        "_rng",
        "_scratch",
        "keep_seed",
        "seed",
    )

    def __init__(self, key: bytes, rng: Rng) -> None:
        drbg_seed = key[48:72]
        self._key = key[:32]
        self._prefix = key[32:48]
        self._counter = 1
        drbg = HashDrbg(drbg_seed)
        self._hash = drbg._hash
        self._ofb = drbg_seed[16:24]
        self._rng = rng
        self._buf = b""  # the incomplete frame: its length-field bytes, or (length known) its box so far
        self._scratch = bytearray(0)  # reused output buffer
        self._next: int | None = None  # box length of the frame being received, once its length field is in
        self._invalid = False
        #: Whether to keep PRNG seed packets (only clients use them).
        self.keep_seed = False
        #: The last PRNG seed received, until the engine takes it.
        self.seed: bytes | None = None

    @property
    def pending(self) -> bool:
        """Part of a frame has been received (a stream ending now would cut it)."""
        return bool(self._buf) or self._next is not None

    def _bad_length(self) -> int:
        # As obfs4proxy: pretend the length was a random valid one and fail once that much came.
        self._invalid = True
        return MIN_BOX + int.from_bytes(self._rng(2), "big") % (MAX_BOX - MIN_BOX + 1)

    def decode(self, data: bytes) -> bytes:
        """Consume ``data``; return the payload bytes of every frame it completes.

        Boxes are opened straight into one output buffer; each payload is then moved down over
        its 3-byte packet header, so the plaintext comes out contiguous with a single copy.  A
        frame split across calls is completed from the head of ``data`` (no copy of the rest).
        """
        total = len(self._buf) + len(data)
        out = self._scratch
        if len(out) < total:
            self._scratch = out = bytearray(total)
        outp = _ffi.from_buffer(out)
        w = start = 0
        if self._buf:
            carried = self._buf
            need = (2 if self._next is None else self._next) - len(carried)
            if len(data) < need:
                self._buf = carried + data
                return b""
            self._buf = b""
            start = need
            pos, w = self._run(carried + data[:need], 0, out, outp, 0)
        pos, w = self._run(data, start, out, outp, w)
        if pos < len(data):
            self._buf = data[pos:]
        if w == 0:
            return b""
        return bytes(memoryview(out)[:w])

    def _run(self, buf: bytes, pos: int, out: bytearray, outp: Any, w: int) -> tuple[int, int]:
        """Open every complete frame of ``buf`` from ``pos``; payloads go to ``out`` at ``w``."""
        end = len(buf)
        inp = _ffi.from_buffer(buf)
        length = self._next
        key, prefix, counter = self._key, self._prefix, self._counter
        update, digest, ofb = self._hash.update, self._hash.digest, self._ofb
        while True:
            if length is None:
                if end - pos < 2:
                    break
                update(ofb)
                ofb = digest()
                length = ((buf[pos] ^ ofb[0]) << 8) | (buf[pos + 1] ^ ofb[1])
                pos += 2
                if not MIN_BOX <= length <= MAX_BOX:
                    length = self._bad_length()
            nxt = pos + length
            if nxt > end:
                break
            # A random length after a bad one never authenticates, so _fail() reports it.
            if _open(outp + w, inp + pos, length, prefix + counter.to_bytes(8, "big"), key):
                self._fail(length)
            counter += 1
            pos = nxt
            plen = (out[w + 1] << 8) | out[w + 2]
            if plen > length - 19:  # also rejects packets shorter than their 3-byte header
                raise RemoteProtocolError("obfs4: packet payload length exceeds the frame")
            kind = out[w]
            if kind == TYPE_PAYLOAD:
                if plen:
                    _memmove(outp + w, outp + (w + 3), plen)
                    w += plen
            elif kind == TYPE_PRNG_SEED and plen == SEED_PAYLOAD and self.keep_seed:
                self.seed = bytes(out[w + 3 : w + 3 + plen])
            length = None
        self._counter, self._ofb, self._next = counter, ofb, length
        return pos, w

    def _fail(self, length: int) -> None:
        if self._invalid:
            raise RemoteProtocolError("obfs4: invalid frame length")
        raise RemoteProtocolError(f"obfs4: frame authentication failed ({length}-byte box)")
