"""``obfs2``: the original obfuscation protocol, as obfs4proxy 0.0.14 speaks it (no arguments).

Spec: obfsproxy ``doc/obfs2/obfs2-protocol-spec.txt``; where it and obfs4proxy differ, the code wins:

* each side derives its padding key from its *own* seed (the spec's text says INIT_SEED for both);
* both sides send ``SEED(16) || AES-CTR(padkey)(BE32 magic || BE32 padlen || padlen random bytes)``
  as soon as the connection is up, with padlen uniform in [0, 8192];
* the receiver decrypts the 8-byte header, closes on a wrong magic or padlen > 8192, and skips the
  padding without decrypting it;
* data keys need both seeds, so nobody sends data before reading the peer's seed;
* either side gives the peer 30 s to complete the handshake; ``shared-secret`` is refused;
* a bad header is not answered by a close at that byte count (obfs4proxy closes at once, which a
  prober can count): the connection is read and discarded until the time a peer that sent too
  little is closed at, 30 s after the connection began (plus a configured linger, 0 by default).

``MAC(s, x) = SHA256(s || x || s)``; a MAC's first 16 bytes are an AES-128 key, its last 16 the
initial 128-bit counter block.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from ..crypto.filler import padding
from ..errors import OptionsError, RemoteProtocolError
from .base import Engine, RawOptions, Rng, RoleClient, RoleServer, ServerContext, Timeouts, TransportSpec

NAME = "obfs2"
MAGIC = 0x2BF5CA7E
MAX_PADDING = 8192
SEED_LEN = 16
HEADER_LEN = 8
TIMEOUTS = Timeouts(handshake=30.0)  # obfs4proxy gives the peer 30 s
INITIATOR_PAD = b"Initiator obfuscation padding"
RESPONDER_PAD = b"Responder obfuscation padding"
INITIATOR_DATA = b"Initiator obfuscated data"
RESPONDER_DATA = b"Responder obfuscated data"

_HEADER = struct.Struct(">II")


def aes_ctr(secret: bytes) -> CipherContext:
    """An AES-128-CTR keystream keyed by ``secret[:16]`` starting at counter block ``secret[16:32]``."""
    return Cipher(algorithms.AES(secret[:16]), modes.CTR(secret[16:32])).encryptor()


def mac(s: bytes, x: bytes) -> bytes:
    """obfs2's MAC: ``SHA256(s || x || s)``."""
    return hashlib.sha256(s + x + s).digest()


def random_below(rng: Rng, n: int) -> int:
    """A uniform integer in ``[0, n)`` from ``rng`` (rejection sampling, no modulo bias)."""
    if n <= 1:
        return 0
    nbytes = ((n - 1).bit_length() + 7) // 8
    span = 1 << (8 * nbytes)
    limit = span - span % n
    while True:
        value = int.from_bytes(rng(nbytes), "big")
        if value < limit:
            return value % n


def join(chunks: list[bytes]) -> bytes:
    """One ``bytes`` from a list of output chunks."""
    if not chunks:
        return b""
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HandshakeState(enum.Enum):
    """Where an obfs2 engine is in reading the peer's handshake."""

    HEADER = "seed and header"
    PADDING = "padding"
    DATA = "data"


class Obfs2Engine(Engine):
    """One obfs2 connection; ``initiator`` is the side that dialled."""

    __slots__ = (
        "_buf",
        "_initiator",
        "_out",
        "_peer_seed",
        "_pending",
        "_rng",
        "_rx",
        "_seed",
        "_skip",
        "_state",
        "_tx",
    )

    def __init__(self, initiator: bool, rng: Rng = os.urandom) -> None:
        self._initiator = initiator
        self._rng = rng
        self._seed = b""  # ours, once the handshake is queued
        self._peer_seed = b""
        self._buf = bytearray()
        self._state = HandshakeState.HEADER
        self._skip = 0  # padding bytes still to discard (state PADDING)
        self._out: list[bytes] = []
        self._pending: list[bytes] = []  # plaintext queued before the keys exist
        self._rx: CipherContext | None = None
        self._tx: CipherContext | None = None

    @property
    def established(self) -> bool:
        return self._rx is not None

    def start(self, now: float, timeouts: Timeouts) -> None:
        super().start(now, timeouts)
        if not self._initiator:  # a server's bad header closes when a timeout would have; a client hides nothing
            self.keep_close_time(now)

    def initiate(self) -> None:
        if self._seed:
            return
        rng = self._rng
        self._seed = seed = rng(SEED_LEN)
        pad_len = random_below(rng, MAX_PADDING + 1)
        label = INITIATOR_PAD if self._initiator else RESPONDER_PAD
        stream = aes_ctr(mac(label, seed))
        header = stream.update(_HEADER.pack(MAGIC, pad_len))
        # Random padding encrypted is random padding: with the OS as source, skip the cipher and
        # take cheap filler; an injected generator (tests) gets the very bytes obfs4proxy sends.
        injected = stream.update(rng(pad_len)) if pad_len and rng is not os.urandom else b""
        pad = padding(pad_len) if rng is os.urandom else injected
        self._out.append(seed + header + pad)

    def receive_data(self, data: bytes) -> bytes:
        rx = self._rx
        if rx is not None:
            return rx.update(data)
        return self._receive_handshake(data)

    def send_data(self, data: bytes) -> None:
        tx = self._tx
        if tx is None:
            self._pending.append(data)
        else:
            self._out.append(tx.update(data))

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return join(out)

    # --- handshake ---------------------------------------------------------------------------
    def _receive_handshake(self, data: bytes) -> bytes:
        self.initiate()
        buf = self._buf
        buf += data
        if self._state is HandshakeState.HEADER:
            if len(buf) < SEED_LEN + HEADER_LEN:
                return b""
            self._skip = self._read_header(bytes(buf[: SEED_LEN + HEADER_LEN]))
            self._state = HandshakeState.PADDING
            del buf[: SEED_LEN + HEADER_LEN]
        if len(buf) < self._skip:
            self._skip -= len(buf)
            buf.clear()
            return b""
        rest = bytes(buf[self._skip :])
        buf.clear()
        self._state = HandshakeState.DATA
        rx = self._derive_keys()
        return rx.update(rest) if rest else b""

    def _read_header(self, head: bytes) -> int:
        peer_seed = head[:SEED_LEN]
        label = RESPONDER_PAD if self._initiator else INITIATOR_PAD
        magic: int
        pad_len: int
        magic, pad_len = _HEADER.unpack(aes_ctr(mac(label, peer_seed)).update(head[SEED_LEN:]))
        if magic != MAGIC:
            raise RemoteProtocolError("obfs2: wrong magic value in the handshake", linger=self.failure_linger())
        if pad_len > MAX_PADDING:
            message = f"obfs2: handshake padding of {pad_len} bytes exceeds {MAX_PADDING}"
            raise RemoteProtocolError(message, linger=self.failure_linger())
        self._peer_seed = peer_seed
        return pad_len

    def _derive_keys(self) -> CipherContext:
        both = self._seed + self._peer_seed if self._initiator else self._peer_seed + self._seed
        init = aes_ctr(mac(INITIATOR_DATA, both))
        resp = aes_ctr(mac(RESPONDER_DATA, both))
        tx, rx = (init, resp) if self._initiator else (resp, init)
        self._tx, self._rx = tx, rx
        self.forget_close_time()
        if self._pending:
            self._out.append(tx.update(join(self._pending)))
            self._pending = []
        return rx


def _check_options(raw: RawOptions) -> None:
    # obfs4proxy refuses the spec's optional shared secret (no bridge uses it); so do we.
    if "shared-secret" in raw:
        raise OptionsError(NAME, "unsupported argument 'shared-secret' (obfs2 takes no arguments)")


def _client(raw: RawOptions) -> RoleClient:
    _check_options(raw)
    return RoleClient(Obfs2Engine, timeouts=TIMEOUTS)


def _server(raw: RawOptions, ctx: ServerContext) -> RoleServer:
    _check_options(raw)
    return RoleServer(Obfs2Engine, ctx.rng, timeouts=ctx.timeouts or TIMEOUTS)


# 'shared-secret' is declared so that it gets its own refusal (above), not "unknown option".
_KEYS = frozenset({"shared-secret"})
SPEC = TransportSpec(name=NAME, client=_client, server=_server, client_keys=_KEYS, server_keys=_KEYS)
