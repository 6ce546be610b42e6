"""obfs4 frames: ``obfsLen(2) || secretbox(packet)``, packets ``type || len(BE16) || payload || pad``.

As obfs4proxy 0.0.14's ``framing`` and ``packet.go``: each direction has a 72-byte key
(secretbox key 32, nonce prefix 16, SipHash DRBG seed 24); the nonce is the prefix followed
by a big-endian 64-bit counter starting at 1; the length field is the box length XOR the first
two bytes of the next DRBG block.  Hot loops keep everything in locals: one SipHash update,
one secretbox call and a few slices per frame.
"""

from __future__ import annotations

from nacl.bindings import crypto_secretbox_easy, crypto_secretbox_open_easy
from nacl.exceptions import CryptoError

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

_FULL_HEADER = bytes([TYPE_PAYLOAD]) + MAX_PACKET_PAYLOAD.to_bytes(2, "big")
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
        key = self._key
        prefix = self._prefix
        counter = self._counter
        masks = self._drbg.length_masks(len(packets))
        out: list[bytes] = []
        append = out.append
        for pkt, mask in zip(packets, masks, strict=True):
            box = crypto_secretbox_easy(pkt, prefix + counter.to_bytes(8, "big"), key)
            counter += 1
            append((len(box) ^ mask).to_bytes(2, "big"))
            append(box)
        self._counter = counter
        return b"".join(out)

    def payload(self, data: bytes) -> bytes:
        """Frame ``data`` as payload packets of at most 1427 bytes each."""
        size = len(data)
        full = size // MAX_PACKET_PAYLOAD
        packets = [
            _FULL_HEADER + data[i : i + MAX_PACKET_PAYLOAD]
            for i in range(0, full * MAX_PACKET_PAYLOAD, MAX_PACKET_PAYLOAD)
        ]
        rest = size - full * MAX_PACKET_PAYLOAD
        if rest:
            packets.append(make_packet(TYPE_PAYLOAD, data[size - rest :]))
        return self.packets(packets)


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
        self._buf = b""
        self._next = -1  # box length of the frame being received, -1 before its length field
        self._invalid = False
        #: Whether to keep PRNG seed packets (only clients use them).
        self.keep_seed = False
        #: The last PRNG seed received, until the engine takes it.
        self.seed: bytes | None = None

    def _bad_length(self) -> int:
        # As obfs4proxy: pretend the length was a random valid one and fail once that much came.
        self._invalid = True
        return MIN_BOX + int.from_bytes(self._rng(2), "big") % (MAX_BOX - MIN_BOX + 1)

    def decode(self, data: bytes) -> bytes:
        """Consume ``data``; return the payload bytes of every frame it completes."""
        buf = self._buf + data if self._buf else data
        end = len(buf)
        pos = 0
        length = self._next
        out: list[bytes] = []
        key, prefix, counter = self._key, self._prefix, self._counter
        update, digest, ofb = self._hash.update, self._hash.digest, self._ofb
        while True:
            if length < 0:
                if end - pos < 2:
                    break
                update(ofb)
                ofb = digest()
                length = ((buf[pos] ^ ofb[0]) << 8) | (buf[pos + 1] ^ ofb[1])
                pos += 2
                if length > MAX_BOX or length < MIN_BOX:
                    length = self._bad_length()
            if end - pos < length:
                break
            if self._invalid:
                raise RemoteProtocolError("obfs4: invalid frame length")
            try:
                pkt = crypto_secretbox_open_easy(buf[pos : pos + length], prefix + counter.to_bytes(8, "big"), key)
            except CryptoError:
                raise RemoteProtocolError("obfs4: frame authentication failed") from None
            pos += length
            counter += 1
            length = -1
            size = len(pkt)
            if size < PACKET_OVERHEAD:
                raise RemoteProtocolError("obfs4: packet too short")
            plen = (pkt[1] << 8) | pkt[2]
            if plen > size - PACKET_OVERHEAD:
                raise RemoteProtocolError("obfs4: packet payload length exceeds the frame")
            if pkt[0] == TYPE_PAYLOAD:
                if plen:
                    out.append(pkt[3 : 3 + plen])
            elif pkt[0] == TYPE_PRNG_SEED and plen == SEED_PAYLOAD and self.keep_seed:
                self.seed = pkt[3 : 3 + plen]
        self._counter, self._ofb, self._next = counter, ofb, length
        self._buf = buf[pos:] if pos < end else b""
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)
