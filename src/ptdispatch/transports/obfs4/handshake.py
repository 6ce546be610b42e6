"""The obfs4 handshake messages (obfs4proxy 0.0.14 ``handshake_ntor.go``), sans-IO.

Client -> server: ``X' || P_C || M_C || MAC_C``; server -> client:
``Y' || AUTH || P_S || M_S || MAC_S`` followed (by the engine) by an inline PRNG seed frame.
``M = HMAC-SHA256(B || NODEID, repr)[:16]``, ``MAC = HMAC-SHA256(B || NODEID, everything
before it || E)[:16]`` where ``E`` is the decimal Unix hour.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import threading

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...crypto import elligator2, ntor
from ...crypto.filler import pad_source
from ...errors import RemoteProtocolError, ReplayDetected
from ..base import Rng
from .replay import ReplayFilter

MARK_LENGTH = 16
MAC_LENGTH = 16
REPR_LENGTH = 32
AUTH_LENGTH = 32
MAX_HANDSHAKE = 8192
INLINE_SEED_FRAME = 45
SERVER_MIN_HANDSHAKE = REPR_LENGTH + AUTH_LENGTH + MARK_LENGTH + MAC_LENGTH  # 96
CLIENT_MIN_HANDSHAKE = REPR_LENGTH + MARK_LENGTH + MAC_LENGTH  # 64
CLIENT_MIN_PAD = SERVER_MIN_HANDSHAKE + INLINE_SEED_FRAME - CLIENT_MIN_HANDSHAKE  # 77
CLIENT_MAX_PAD = MAX_HANDSHAKE - CLIENT_MIN_HANDSHAKE  # 8128
SERVER_MIN_PAD = 0
SERVER_MAX_PAD = MAX_HANDSHAKE - (SERVER_MIN_HANDSHAKE + INLINE_SEED_FRAME)  # 8051


def epoch_hour(now: float) -> bytes:
    return str(int(now // 3600)).encode()


def rand_range(rng: Rng, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (bias below 2**-40)."""
    return low + int.from_bytes(rng(8), "big") % (high - low + 1)


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.digest(key, b"".join(parts), "sha256")[:MAC_LENGTH]


class SessionKey:
    """An ephemeral obfs4 key pair: private key, dirty public key and its representative."""

    __slots__ = ("private", "public", "representative")

    def __init__(self, rng: Rng) -> None:
        # The raw private key: ntor.exchange takes it as is (no second scalar multiplication to
        # build a key object whose public half would be thrown away).
        self.private, self.public, self.representative = elligator2.generate_keypair(rng)


class SessionKeys:
    """Session keys made one ahead, in the event loop's spare time.

    A key costs two scalar multiplications on average (about 80 µs); made while a handshake is
    waiting, it is off the next connection's critical path.  :meth:`refill_soon` queues the next
    key behind whatever the current callback has queued (the reply, the SOCKS answer), and does
    nothing outside a running event loop, where keys are made on demand as before.
    """

    __slots__ = ("_ready", "_rng", "_scheduled")

    def __init__(self, rng: Rng) -> None:
        self._rng = rng
        self._ready: SessionKey | None = None
        self._scheduled = False

    def take(self) -> SessionKey:
        key, self._ready = self._ready, None
        return key if key is not None else SessionKey(self._rng)

    def refill_soon(self) -> None:
        if self._ready is not None or self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._scheduled = True
        loop.call_soon(loop.call_soon, self._refill)  # twice: behind what this callback queues

    def _refill(self) -> None:
        self._scheduled = False
        if self._ready is None:
            self._ready = SessionKey(self._rng)


_per_thread = threading.local()


def os_session_keys(rng: Rng) -> SessionKeys | None:
    """This thread's pool of session keys when ``rng`` is the OS (shared by every client and
    listener of the thread's event loop, whose keys are all alike), else ``None``: an injected
    generator keeps drawing its keys on demand, in order."""
    if rng is not os.urandom:
        return None
    keys: SessionKeys | None = getattr(_per_thread, "keys", None)
    if keys is None:
        keys = _per_thread.keys = SessionKeys(os.urandom)
    return keys


class ClientHandshake:
    """Builds the client message and checks the server's reply."""

    def __init__(self, node_id: bytes, server_public: bytes, session: SessionKey, rng: Rng, now: float) -> None:
        self._node_id = node_id
        self._server_public = server_public
        self._key = server_public + node_id
        self._session = session
        self._epoch = epoch_hour(now)
        self._pad = pad_source(rng)(rand_range(rng, CLIENT_MIN_PAD, CLIENT_MAX_PAD))
        self._server_mark: bytes | None = None

    def message(self) -> bytes:
        rep = self._session.representative
        body = rep + self._pad + _mac(self._key, rep)
        return body + _mac(self._key, body, self._epoch)

    def parse(self, buf: bytes) -> tuple[int, bytes] | None:
        """``(bytes consumed, KEY_SEED)`` once the reply is complete, ``None`` while it is not."""
        if len(buf) < SERVER_MIN_HANDSHAKE:
            return None
        if self._server_mark is None:
            self._server_mark = _mac(self._key, buf[:REPR_LENGTH])
        end = min(len(buf), MAX_HANDSHAKE)
        pos = buf.find(self._server_mark, REPR_LENGTH + AUTH_LENGTH + SERVER_MIN_PAD, end)
        if pos < 0 or pos + MARK_LENGTH + MAC_LENGTH > end:
            if len(buf) >= MAX_HANDSHAKE:
                raise RemoteProtocolError("obfs4: no server handshake mark within 8192 bytes")
            return None
        tail = pos + MARK_LENGTH
        if not hmac.compare_digest(_mac(self._key, buf[:tail], self._epoch), buf[tail : tail + MAC_LENGTH]):
            raise RemoteProtocolError("obfs4: server handshake MAC mismatch")
        server_eph = elligator2.representative_to_public(buf[:REPR_LENGTH])
        s = self._session
        result = ntor.client_handshake(s.private, s.public, server_eph, self._server_public, self._node_id)
        if result is None:
            raise RemoteProtocolError("obfs4: ntor handshake failed")
        key_seed, auth = result
        if not hmac.compare_digest(auth, buf[REPR_LENGTH : REPR_LENGTH + AUTH_LENGTH]):
            raise RemoteProtocolError("obfs4: server AUTH mismatch (wrong cert?)")
        return tail + MAC_LENGTH, key_seed


class ServerIdentity:
    """The long-term server keys a handshake needs."""

    __slots__ = ("mac_key", "node_id", "private", "public")

    def __init__(self, node_id: bytes, private: bytes) -> None:
        self.node_id = node_id
        self.private = private
        self.public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
        self.mac_key = self.public + node_id


class ServerHandshake:
    """Finds and checks a client message; builds the reply."""

    def __init__(self, identity: ServerIdentity, session: SessionKey, rng: Rng) -> None:
        self._id = identity
        self._session = session
        self._pad_len = rand_range(rng, SERVER_MIN_PAD, SERVER_MAX_PAD)
        self._rng = rng
        self._client_mark: bytes | None = None
        self._epoch = b""
        self._auth = b""

    def parse(self, buf: bytes, replay: ReplayFilter, now: float) -> bytes | None:
        """KEY_SEED once the client message is complete and valid, ``None`` while incomplete."""
        if len(buf) < CLIENT_MIN_HANDSHAKE:
            return None
        key = self._id.mac_key
        if self._client_mark is None:
            self._client_mark = _mac(key, buf[:REPR_LENGTH])
        start = REPR_LENGTH + CLIENT_MIN_PAD
        end = min(len(buf), MAX_HANDSHAKE)
        pos = end - (MARK_LENGTH + MAC_LENGTH)
        if end - start < MARK_LENGTH + MAC_LENGTH or not hmac.compare_digest(
            buf[pos : pos + MARK_LENGTH], self._client_mark
        ):
            if len(buf) >= MAX_HANDSHAKE:
                raise RemoteProtocolError("obfs4: no client handshake mark within 8192 bytes")
            return None
        self._check_mac(buf, pos + MARK_LENGTH, replay, now)
        if len(buf) != pos + MARK_LENGTH + MAC_LENGTH:
            raise RemoteProtocolError("obfs4: trailing data after the client handshake")
        return self._complete(buf[:REPR_LENGTH])

    def _check_mac(self, buf: bytes, tail: int, replay: ReplayFilter, now: float) -> None:
        received = buf[tail : tail + MAC_LENGTH]
        hour = int(now // 3600)
        # The message (up to 8 KiB) is hashed once; each candidate hour only finishes a copy.
        head = hmac.new(self._id.mac_key, memoryview(buf)[:tail], "sha256")
        for offset in (0, -1, 1):  # as obfs4proxy: this hour first, stop at the first match
            epoch = str(hour + offset).encode()
            mac = head.copy()
            mac.update(epoch)
            if hmac.compare_digest(mac.digest()[:MAC_LENGTH], received):
                if replay.test_and_set(now, received):
                    raise ReplayDetected("obfs4: replayed client handshake")
                self._epoch = epoch
                return
        raise RemoteProtocolError("obfs4: client handshake MAC mismatch")

    def _complete(self, representative: bytes) -> bytes:
        client_public = elligator2.representative_to_public(representative)
        s, ident = self._session, self._id
        result = ntor.server_handshake(client_public, s.private, s.public, ident.private, ident.public, ident.node_id)
        if result is None:
            raise RemoteProtocolError("obfs4: ntor handshake failed")
        key_seed, self._auth = result
        return key_seed

    def reply(self) -> bytes:
        """``Y' || AUTH || P_S || M_S || MAC_S`` (call after :meth:`parse` succeeded)."""
        rep = self._session.representative
        key = self._id.mac_key
        body = rep + self._auth + pad_source(self._rng)(self._pad_len) + _mac(key, rep)
        return body + _mac(key, body, self._epoch)
