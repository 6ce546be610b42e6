"""An exact replay table in shared memory, for worker processes forked from one parent.

Layout: one anonymous ``MAP_SHARED`` mapping (inherited across ``fork``, freed when the last process
exits): a power-of-two number of buckets.  A bucket holds 32 slots: 32 expiry times (float64,
``time.monotonic()``, which is system-wide on Linux), 32 tags of 4 bytes (to find a candidate slot
with one ``bytes.find``), then 32 records of 64 bytes. A record is the namespace and
the key themselves (``len(ns)+1 | ns | len(key) | key``, zero padded), so a lookup compares whole
keys: exact, no digest, no false positive. (A key too long for a record, which no transport has, is
stored as its 256-bit keyed BLAKE2b digest.) A SipHash-1-3 of the record, keyed with a secret drawn
at start-up, picks the bucket and gives the tag; a lookup reads that one bucket (a tag match is
confirmed by comparing the whole record): no probing chains, no tombstones.  The hash is keyed so
that nobody can choose keys that crowd one bucket and push a genuine entry out early (a CRC, even
from a secret start, would not do: it is linear, so which keys share a bucket does not depend on
the secret).

Writers hold a POSIX record lock (``fcntl(F_SETLKW)``) on a memfd of the store's own, inherited
across ``fork``: the kernel drops a process's record locks when it dies, so a worker killed while
it holds the lock (even between taking it and anything it could write down) never leaves it taken,
and nobody else ever releases it.  (A process-shared semaphore, which this replaced, stays taken when
its holder dies; guessing from outside that the holder is gone either missed a holder that died
before writing its pid or, with several waiters, released a lock a live worker had just taken.)
Record locks belong to a process, not to a file descriptor: the forked workers exclude each other
although they share the descriptor (``flock`` and OFD locks, owned by the shared open file, would
not), but threads of one process do not (each process checks from its event loop's thread), and
closing *any* descriptor of the file would drop the process's lock (nobody opens the memfd again).
Taking and giving back the lock are two system calls, about 1 µs of a check's 5 to 6.

The size is fixed; when a bucket's 32 slots are all alive, the entry closest to expiry gives way
(counted in ``evictions`` and, under that entry's namespace, in ``ptdispatch_replay_evictions_total``),
as obfs4proxy's filter drops its oldest entry when full.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Callable

import siphash24

from .. import metrics

SLOTS = 32
RECORD = 64
_EXPIRIES = struct.Struct(f"<{SLOTS}d")
_ONE = struct.Struct("<d")
TAGS = SLOTS * 8
RECORDS = TAGS + SLOTS * 4
BUCKET = RECORDS + SLOTS * RECORD
DEFAULT_CAPACITY = 1 << 18
"""Slots (256 Ki, 18 MiB of shared memory, touched as it fills): obfs4's 100 Ki and shadow's salts fit."""


def _namespace(record: bytes) -> bytes:
    """The namespace a record begins with (empty for a digest record, whose namespace is hashed in)."""
    size = record[0] - 1
    return record[1 : 1 + size] if 0 <= size < 16 else b""


class SharedReplayStore:
    """A :class:`~ptdispatch.replay.base.ReplayStore` shared by the processes forked after it is made."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, clock: Callable[[], float] = time.monotonic) -> None:
        buckets = 1
        while buckets * SLOTS < capacity:
            buckets *= 2
        self.capacity = buckets * SLOTS
        self._mask = buckets - 1
        self.memory_bytes = buckets * BUCKET
        self._mem = mmap.mmap(-1, self.memory_bytes)
        self._secret = os.urandom(32)
        self._bucket_key = self._secret[:16]
        self._lock = os.memfd_create("ptdispatch-replay-lock", os.MFD_CLOEXEC)  # see the module docstring
        self._clock = clock
        self.evictions = 0

    def close(self) -> None:
        self._mem.close()
        os.close(self._lock)

    def _locate(self, namespace: bytes, key: bytes) -> tuple[bytes, bytes, int]:
        if len(namespace) < 16 and len(key) < RECORD - 17:
            record = (bytes((len(namespace) + 1,)) + namespace + bytes((len(key),)) + key).ljust(RECORD, b"\0")
        else:
            digest = hashlib.blake2b(namespace + b"\0" + key, digest_size=32, key=self._secret).digest()
            record = (b"\xff" + digest).ljust(RECORD, b"\0")
        h = siphash24.siphash13(record, key=self._bucket_key).intdigest()
        tag = ((h >> 32) & 0xFFFFFFFF | 1).to_bytes(4, "little")  # never the empty slot's 0
        return record, tag, (h & self._mask) * BUCKET

    def _slot(self, offset: int, record: bytes, tag: bytes) -> int:
        mem = self._mem
        tags = mem[offset + TAGS : offset + RECORDS]
        found = tags.find(tag)
        while found != -1:
            if not found % 4:
                start = offset + RECORDS + found // 4 * RECORD
                if mem[start : start + RECORD] == record:
                    return found // 4
            found = tags.find(tag, found + 1)
        return -1

    def contains(self, namespace: bytes, key: bytes) -> bool:
        record, tag, offset = self._locate(namespace, key)
        slot = self._slot(offset, record, tag)
        return slot >= 0 and _ONE.unpack_from(self._mem, offset + slot * 8)[0] > self._clock()

    def check_and_add(self, namespace: bytes, key: bytes, ttl: float) -> bool:
        record, tag, offset = self._locate(namespace, key)
        mem = self._mem
        evicted: bytes | None = None  # the namespace of a live entry that gave way
        self._acquire()
        try:
            now = self._clock()
            slot = self._slot(offset, record, tag)
            if slot >= 0:
                if _ONE.unpack_from(mem, offset + slot * 8)[0] > now:
                    return False
            else:
                expiries = _EXPIRIES.unpack_from(mem, offset)
                oldest = min(expiries)
                slot = expiries.index(oldest)
                start = offset + RECORDS + slot * RECORD
                if oldest > now:
                    evicted = _namespace(mem[start : start + 17])
                mem[start : start + RECORD] = record
                mem[offset + TAGS + slot * 4 : offset + TAGS + slot * 4 + 4] = tag
            _ONE.pack_into(mem, offset + slot * 8, now + ttl)
            return True
        finally:
            fcntl.lockf(self._lock, fcntl.LOCK_UN)
            if evicted is not None:  # counted outside the lock the other workers wait on
                self.evictions += 1
                metrics.replay_evicted(evicted.decode("ascii", "replace") or "other")

    def _acquire(self) -> None:
        fcntl.lockf(self._lock, fcntl.LOCK_EX)  # F_SETLKW on the whole file; released by the kernel if we die
