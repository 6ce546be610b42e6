"""Random padding bytes, cheaply: a ChaCha20 keystream keyed from the OS, as arc4random does.

Handshake padding (obfs2, obfs4: up to 8 KiB per side and connection) only has to look random;
``os.urandom`` costs about ten times more per kilobyte than a running ChaCha20 keystream.  Keys,
seeds and nonces still come from ``os.urandom``.  The keystream is re-keyed from the OS every
64 MiB and in a forked child.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

REKEY_BYTES = 64 << 20
_ZEROS = bytes(16384)


class Filler:
    """``filler(n)``: ``n`` bytes of a ChaCha20 keystream under a random key."""

    __slots__ = ("_left", "_stream")

    def __init__(self) -> None:
        self._stream: CipherContext = self._new_stream()
        self._left = REKEY_BYTES

    @staticmethod
    def _new_stream() -> CipherContext:
        return Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), mode=None).encryptor()

    def rekey(self) -> None:
        self._stream = self._new_stream()
        self._left = REKEY_BYTES

    def __call__(self, n: int) -> bytes:
        if n <= 0:
            return b""
        if n > self._left:
            self.rekey()
        self._left -= n
        if n <= len(_ZEROS):
            return self._stream.update(_ZEROS[:n])
        return self._stream.update(bytes(n))


padding = Filler()
"""The process's filler (re-keyed in a forked child)."""

os.register_at_fork(after_in_child=padding.rekey)


def pad_source(rng: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """The source for padding bytes: :data:`padding` when ``rng`` is the OS, else ``rng`` itself
    (an injected generator keeps tests deterministic)."""
    return padding if rng is os.urandom else rng
