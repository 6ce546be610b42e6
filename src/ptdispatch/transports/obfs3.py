"""``obfs3``: UniformDH then AES-CTR, as obfs4proxy 0.0.14 speaks it (no arguments).

Spec: obfsproxy ``doc/obfs3/obfs3-protocol-spec.txt``; behaviour matched to obfs4proxy:

* on connect each side sends ``PUB(192) || WR(padlen)`` with padlen uniform in [0, 4097]
  (obfs4proxy: ``IntRange(0, maxPadding/2)``, maxPadding = 8194);
* reading the peer's 192-byte key completes the handshake (the 30 s deadline ends there);
* the first data a side writes is preceded by ``WR(padlen2) || MY_MAGIC``, padlen2 again in
  [0, 4097]; a side that never writes never sends its magic;
* the receiver discards what follows the peer's key up to and including the peer's magic, which
  must start within 8194 bytes (obfs4proxy gives up once 8194 + 32 bytes hold no magic);
* better than obfs4proxy, which then waits for the magic with no deadline: once any byte after the
  key has come (a peer sends its padding and magic in one write), the magic must follow within the
  handshake timeout (any 192 bytes are a key, so a prober is otherwise kept forever); padding
  without the magic up to the scan limit is read and discarded until that same time, so neither
  close tells a prober when it reached the limit;
* ``X_SECRET = HMAC-SHA256(SHARED, "Initiator/Responder obfuscated data")``: key ``[:16]``, initial
  counter block ``[16:32]``; ``X_MAGIC = HMAC-SHA256(SHARED, "Initiator/Responder magic")``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import time

from cryptography.hazmat.primitives.ciphers import CipherContext

from ..crypto import uniformdh
from ..errors import HandshakeTimeout, RemoteProtocolError
from .base import Clock, Engine, RawOptions, Rng, RoleClient, RoleServer, ServerContext, Timeouts, TransportSpec
from .obfs2 import aes_ctr, join, random_below

NAME = "obfs3"
MAX_PADDING = 8194
PAD_MAX = MAX_PADDING // 2  # inclusive: padding lengths are uniform in [0, 4097]
MAGIC_LEN = 32
SCAN_LIMIT = MAX_PADDING + MAGIC_LEN
TIMEOUTS = Timeouts(handshake=30.0)  # obfs4proxy gives the peer 30 s
INITIATOR_DATA = b"Initiator obfuscated data"
RESPONDER_DATA = b"Responder obfuscated data"
INITIATOR_MAGIC = b"Initiator magic"
RESPONDER_MAGIC = b"Responder magic"


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, hashlib.sha256)


class HandshakeState(enum.Enum):
    """What an obfs3 engine is reading from its peer."""

    KEY = "public key"
    MAGIC = "padding and magic"
    DATA = "data"


class Obfs3Engine(Engine):
    """One obfs3 connection; ``initiator`` is the side that dialled.

    :attr:`established` turns true once the peer's public key is in (state ``MAGIC``); the peer's
    magic is looked for in what follows, and only the bytes after it are data (state ``DATA``).
    """

    __slots__ = (
        "_buf",
        "_initiator",
        "_key",
        "_magic_deadline",
        "_out",
        "_pending",
        "_rng",
        "_rx",
        "_rx_magic",
        "_rx_secret",
        "_scan_from",
        "_state",
        "_tx",
        "_tx_magic",
    )

    def __init__(self, initiator: bool, rng: Rng = os.urandom, clock: Clock = time.monotonic) -> None:
        self._initiator = initiator
        self._rng = rng
        self.clock = clock
        self._magic_deadline: float | None = None  # set by the first byte after the peer's key
        self._state = HandshakeState.KEY
        self._key: uniformdh.PrivateKey | None = None
        self._buf = bytearray()
        self._scan_from = 0
        self._out: list[bytes] = []
        self._pending: list[bytes] = []  # plaintext queued before the handshake completes
        self._rx_magic = b""  # empty until the shared secret is known
        self._rx_secret = b""
        self._tx_magic = b""  # our magic, until it has been sent
        self._rx: CipherContext | None = None  # set on entering DATA
        self._tx: CipherContext | None = None  # set on leaving KEY

    @property
    def established(self) -> bool:
        return self._state is not HandshakeState.KEY

    def initiate(self) -> None:
        if self._key is not None:
            return
        rng = self._rng
        self._key = key = uniformdh.PrivateKey.generate(rng)
        pad_len = random_below(rng, PAD_MAX + 1)
        self._out.append(key.public + rng(pad_len) if pad_len else key.public)

    def receive_data(self, data: bytes) -> bytes:
        state = self._state
        if state is HandshakeState.DATA and self._rx is not None:
            return self._rx.update(data)
        buf = self._buf
        buf += data
        if state is HandshakeState.KEY:
            if len(buf) < uniformdh.SIZE:
                self.initiate()
                return b""
            self._complete_handshake(bytes(buf[: uniformdh.SIZE]))
            del buf[: uniformdh.SIZE]
        return self._scan_magic()

    def send_data(self, data: bytes) -> None:
        tx = self._tx
        if self._state is HandshakeState.KEY or tx is None:
            self._pending.append(data)
            return
        if self._tx_magic:
            # The first write carries random padding and our magic in front of the data.
            pad_len = random_below(self._rng, PAD_MAX + 1)
            self._out.append(self._rng(pad_len) + self._tx_magic if pad_len else self._tx_magic)
            self._tx_magic = b""
        self._out.append(tx.update(data))

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return join(out)

    # --- handshake ---------------------------------------------------------------------------
    def _complete_handshake(self, peer_public: bytes) -> None:
        self.initiate()
        key = self._key
        if key is None:  # pragma: no cover - initiate() just set it
            raise RuntimeError("obfs3: no key pair")
        shared = key.exchange(peer_public)
        self._key = None  # the private key is no longer needed
        init_secret = _hmac(shared, INITIATOR_DATA)
        resp_secret = _hmac(shared, RESPONDER_DATA)
        init_magic = _hmac(shared, INITIATOR_MAGIC)
        resp_magic = _hmac(shared, RESPONDER_MAGIC)
        if self._initiator:
            self._tx_magic, self._rx_magic, self._rx_secret = init_magic, resp_magic, resp_secret
            self._tx = aes_ctr(init_secret)
        else:
            self._tx_magic, self._rx_magic, self._rx_secret = resp_magic, init_magic, init_secret
            self._tx = aes_ctr(resp_secret)
        self._state = HandshakeState.MAGIC
        if self._pending:
            pending, self._pending = self._pending, []
            self.send_data(join(pending))

    def _scan_magic(self) -> bytes:
        buf = self._buf
        end = min(len(buf), SCAN_LIMIT)
        pos = buf.find(self._rx_magic, self._scan_from, end)
        if pos < 0:
            if buf and self._magic_deadline is None:
                now = self.clock()
                self._magic_deadline = now + self._timeouts.handshake
                # A server failing at the scan limit closes when the magic's timeout would; a client
                # hides nothing from anyone and tells its application at once.
                if not self._initiator:
                    self.keep_close_time(now)
            if len(buf) >= SCAN_LIMIT:
                message = f"obfs3: no peer magic within {MAX_PADDING} bytes of padding"
                raise RemoteProtocolError(message, linger=self.failure_linger())  # no close at a byte count
            self._scan_from = max(0, len(buf) - MAGIC_LEN + 1)
            return b""
        rest = bytes(buf[pos + MAGIC_LEN :])
        buf.clear()
        self._rx = rx = aes_ctr(self._rx_secret)
        self._state = HandshakeState.DATA
        self._magic_deadline = None
        self.forget_close_time()
        return rx.update(rest) if rest else b""

    # --- time ----------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        if self._magic_deadline is not None:
            return self._magic_deadline
        return super().get_timer()

    def handle_timer(self, now: float) -> None:
        deadline = self._magic_deadline
        if deadline is not None and now >= deadline:
            self._magic_deadline = None
            message = f"obfs3: no peer magic within {self._timeouts.handshake:g} s of its padding"
            raise HandshakeTimeout(message, linger=self.linger_at(now))
        super().handle_timer(now)


def _client(raw: RawOptions) -> RoleClient:
    return RoleClient(Obfs3Engine, timeouts=TIMEOUTS)


def _server(raw: RawOptions, ctx: ServerContext) -> RoleServer:
    return RoleServer(Obfs3Engine, ctx.rng, timeouts=ctx.timeouts or TIMEOUTS)


SPEC = TransportSpec(name=NAME, client=_client, server=_server, client_keys=frozenset(), server_keys=frozenset())
