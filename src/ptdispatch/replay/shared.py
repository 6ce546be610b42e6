"""An exact replay table in shared memory, for worker processes forked from one parent.

Layout: a power-of-two number of buckets in one anonymous ``MAP_SHARED`` mapping (inherited across
``fork``, freed when the last process exits).  A bucket holds 32 slots: 32 expiry times (float64,
``time.monotonic()``, which is system-wide on Linux) followed by 32 keys.  A key is stored as its
256-bit keyed BLAKE2b digest (the secret is drawn at start-up, so nobody can aim keys at one bucket);
its first 8 bytes pick the bucket.  A lookup reads one bucket: no probing chains, no tombstones.

Writers take a POSIX record lock (``lockf``) on an unlinked temporary file: the kernel drops it when
its holder dies, so a worker killed mid-check cannot wedge the others.  The size is fixed; when a
bucket's 32 slots are all alive the entry closest to expiry gives way (counted in ``evictions``),
as obfs4proxy's filter drops its oldest entry when full.  Exact: no Bloom filter, no truncated tags.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable

SLOTS = 32
DIGEST = 32
_EXPIRIES = struct.Struct(f"<{SLOTS}d")
_ONE = struct.Struct("<d")
BUCKET = SLOTS * 8 + SLOTS * DIGEST
DEFAULT_CAPACITY = 1 << 19
"""Slots (512 Ki, 20 MiB of shared memory, touched as it fills): obfs4's 100 Ki and shadow's salts fit
with room to spare."""


class SharedReplayStore:
    """A :class:`~ptdispatch.replay.base.ReplayStore` shared by the processes forked after it is made."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, clock: Callable[[], float] = time.monotonic) -> None:
        buckets = 1
        while buckets * SLOTS < capacity:
            buckets *= 2
        self.capacity = buckets * SLOTS
        self._mask = buckets - 1
        self._mem = mmap.mmap(-1, buckets * BUCKET)
        self._secret = os.urandom(32)
        fd, path = tempfile.mkstemp(prefix="ptdispatch-replay-")
        os.unlink(path)  # only the descriptor is needed (and inherited)
        self._fd = fd
        self._clock = clock
        self.evictions = 0
        self.memory_bytes = buckets * BUCKET

    def close(self) -> None:
        self._mem.close()
        os.close(self._fd)

    def _locate(self, namespace: bytes, key: bytes) -> tuple[bytes, int]:
        digest = hashlib.blake2b(key, digest_size=DIGEST, key=self._secret, person=namespace[:16]).digest()
        return digest, (int.from_bytes(digest[:8], "little") & self._mask) * BUCKET

    def _slot(self, offset: int, digest: bytes) -> int:
        keys = self._mem[offset + SLOTS * 8 : offset + BUCKET]
        found = keys.find(digest)
        while found != -1 and found % DIGEST:
            found = keys.find(digest, found + 1)
        return -1 if found == -1 else found // DIGEST

    def contains(self, namespace: bytes, key: bytes) -> bool:
        digest, offset = self._locate(namespace, key)
        slot = self._slot(offset, digest)
        return slot >= 0 and _ONE.unpack_from(self._mem, offset + slot * 8)[0] > self._clock()

    def check_and_add(self, namespace: bytes, key: bytes, ttl: float) -> bool:
        digest, offset = self._locate(namespace, key)
        mem = self._mem
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            now = self._clock()
            slot = self._slot(offset, digest)
            if slot >= 0:
                if _ONE.unpack_from(mem, offset + slot * 8)[0] > now:
                    return False
            else:
                expiries = _EXPIRIES.unpack_from(mem, offset)
                oldest = min(expiries)
                slot = expiries.index(oldest)
                if oldest > now:
                    self.evictions += 1
                start = offset + SLOTS * 8 + slot * DIGEST
                mem[start : start + DIGEST] = digest
            _ONE.pack_into(mem, offset + slot * 8, now + ttl)
            return True
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
