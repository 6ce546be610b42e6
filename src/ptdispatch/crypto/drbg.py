"""obfs4's hash DRBG: SipHash-2-4 in output-feedback mode, with one *streaming* hash state.

``seed = key[16] || iv[8]``.  Block ``n`` is the SipHash-2-4 digest (8 bytes, little-endian as
SipHash defines it) of ``iv || b1 || ... || b(n-1)`` under ``key``: obfs4proxy keeps writing the
previous block into the same hash and takes a (non-finalizing) sum each time, so the state is
never reset.  A one-shot SipHash per block gives different output.
"""

from __future__ import annotations

import siphash24

SEED_LENGTH = 24
_INT63_MASK = (1 << 63) - 1


class HashDrbg:
    """The deterministic generator behind obfs4's length masks and padding distributions."""

    __slots__ = ("_hash", "_ofb")

    def __init__(self, seed: bytes) -> None:
        if len(seed) < SEED_LENGTH:
            raise ValueError(f"a DRBG seed needs {SEED_LENGTH} bytes, got {len(seed)}")
        self._hash = siphash24.siphash24(b"", key=seed[:16])
        self._ofb: bytes = seed[16:SEED_LENGTH]

    def next_block(self) -> bytes:
        """The next 8-byte block."""
        h = self._hash
        h.update(self._ofb)
        ofb: bytes = h.digest()
        self._ofb = ofb
        return ofb

    def uint64(self) -> int:
        """The next block read as a big-endian 64-bit integer (as Go's ``binary.BigEndian``)."""
        return int.from_bytes(self.next_block(), "big")

    def int63(self) -> int:
        """Go ``rand.Source.Int63``: the next block, big-endian, top bit cleared."""
        return int.from_bytes(self.next_block(), "big") & _INT63_MASK

    def length_masks(self, count: int) -> list[int]:
        """The next ``count`` 16-bit length masks (the first two bytes of each block, big-endian)."""
        h = self._hash
        ofb = self._ofb
        out: list[int] = []
        append = out.append
        update = h.update
        digest = h.digest
        for _ in range(count):
            update(ofb)
            ofb = digest()
            append((ofb[0] << 8) | ofb[1])
        self._ofb = ofb
        return out
