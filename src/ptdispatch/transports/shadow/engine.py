"""Client and server engines for Shadowsocks AEAD over TCP.

The client is established at once: :meth:`ShadowClientEngine.initiate` queues its salt and a first
chunk holding only the target address header (ss-server connects to the target when it has the
header, so a server-speaks-first protocol works), and application data follows in later chunks.
The server dials its target while the client finishes its SOCKS exchange.  ss-local 3.3.5 instead
answers SOCKS at once and waits up to 50 ms for the application's first bytes, then connects and
sends the header chunk and a data chunk in one write (the header alone, 57 bytes for IPv4 with
aes-128-gcm, only when no data came); holding our header for the first data (10 ms at most, as
Outline's client) added about 150 µs to the first echo on loopback and saved the server no
measurable CPU (bench/README.md, tenth session).

The server is established when the first chunk has been authenticated and its address header
parsed; the address is exposed as :attr:`ShadowServerEngine.requested_destination` (callers read
it as ``get_extra_info("requested_destination")`` of the plaintext transport) for logging and is
not obeyed.  Each server connection draws a handshake timeout in 30-60 s and a linger in 10-60 s,
and a failed handshake closes at one time, its start + that timeout + that linger, whatever failed
and when: a peer that sends too little to fail (less than salt + 18 bytes) meets the timeout and
then the linger; one that fails raises ``RemoteProtocolError`` with the ``linger`` left until that
time, and the adapter reads and discards until it expires, then aborts, never sending a byte.
(ss-libev closes at once, which tells a prober how many bytes it takes to fail; a linger counted
from the failure would tell it too, by any close before the timeout's; obfs4proxy also closes at a
time counted from the connection's start.)  A failure after the handshake (a chunk that fails
authentication) lingers the drawn linger from then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import RemoteProtocolError, ReplayDetected
from ...net.addr import Address
from ..base import Engine, Rng, Timeouts
from .ciphers import SUBKEY_INFO, Aead, CipherInfo, hkdf_sha1
from .framing import ChunkOpener, ChunkSealer
from .header import decode_address
from .replay import SaltFilter


@dataclass(frozen=True)
class ShadowConfig:
    """The cipher and master key shared by both ends."""

    cipher: CipherInfo
    master_key: bytes

    def aead_for(self, salt: bytes) -> Aead:
        key = self.master_key
        return self.cipher.factory(hkdf_sha1(key, salt, SUBKEY_INFO, len(key)))


def _timings(draw: bytes, timeout: tuple[float, float], linger: tuple[float, float]) -> tuple[float, float]:
    """The handshake timeout and the linger, from 8 random bytes (one call per connection)."""
    low, high = timeout
    first = low + (int.from_bytes(draw[:4], "big") % (round((high - low) * 100) + 1)) / 100
    low, high = linger
    return first, low + (int.from_bytes(draw[4:], "big") % (round((high - low) * 100) + 1)) / 100


def _join(parts: list[bytes]) -> bytes:
    if not parts:
        return b""
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Sender:
    """Our sending direction: a fresh salt (remembered in ``salts``) then chunks.

    Plaintext waits in a list until :meth:`take`, so everything written in between shares full chunks.
    """

    __slots__ = ("_config", "_prefix", "_rng", "_salts", "_sealer", "pending")

    def __init__(self, config: ShadowConfig, rng: Rng, salts: SaltFilter) -> None:
        self._config = config
        self._rng = rng
        self._salts = salts
        self._sealer: ChunkSealer | None = None
        self._prefix = b""
        self.pending: list[bytes] = []

    def prepare(self) -> None:
        """Draw the salt and derive the subkey now (idempotent), so the first send costs less."""
        if self._sealer is None:
            salt = self._rng(self._config.cipher.salt_size)
            self._salts.add(salt)  # so a reflected copy of our own stream is refused (as ss-libev does)
            self._sealer = ChunkSealer(self._config.aead_for(salt), self._config.cipher.nonce_size)
            self._prefix = salt

    def send(self, data: bytes) -> None:
        if self._sealer is None:
            self.prepare()
        self.pending.append(data)

    def take(self) -> bytes:
        pending = self.pending
        if not pending or self._sealer is None:
            return b""
        self.pending = []
        prefix, self._prefix = self._prefix, b""
        return self._sealer.seal(prefix, _join(pending))


class ShadowClientEngine(Engine):
    """Our side of a connection to a Shadowsocks server (ss-server or our own)."""

    def __init__(self, config: ShadowConfig, header: bytes, rng: Rng, salts: SaltFilter) -> None:
        self._config = config
        self._header = header
        self._salts = salts
        self._sender = _Sender(config, rng, salts)
        self._started = False
        cipher = config.cipher
        self._opener = ChunkOpener(cipher.salt_size, cipher.nonce_size, self._server_salt, linger=0.0)

    @property
    def established(self) -> bool:
        return True

    def initiate(self) -> None:
        if not self._started:
            self._started = True
            self._sender.send(self._header)

    def send_data(self, data: bytes) -> None:
        self.initiate()
        if data:
            self._sender.send(data)

    def data_to_send(self) -> bytes:
        sender = self._sender
        return sender.take() if sender.pending else b""

    def receive_data(self, data: bytes) -> bytes:
        return self._opener.feed(data)

    def receive_eof(self) -> None:
        if self._opener.pending:
            raise RemoteProtocolError("connection closed inside a chunk")

    def _server_salt(self, salt: bytes) -> Aead:
        if not self._salts.check_and_add(salt):
            raise RemoteProtocolError("the server repeated a known salt (replay or reflection)")
        return self._config.aead_for(salt)


#: Default bounds of the server's random handshake timeout and of its linger after a failure (s).
HANDSHAKE_TIMEOUT = (30.0, 60.0)
LINGER = (10.0, 60.0)


@dataclass(frozen=True)
class ServerTimeouts:
    """The shadow server's timeouts: each connection draws its own from these bounds."""

    handshake: tuple[float, float] = HANDSHAKE_TIMEOUT
    linger: tuple[float, float] = LINGER


DEFAULT_BOUNDS = ServerTimeouts()


class ShadowServerEngine(Engine):
    """One accepted connection on our Shadowsocks server."""

    def __init__(
        self, config: ShadowConfig, rng: Rng, salts: SaltFilter, bounds: ServerTimeouts = DEFAULT_BOUNDS
    ) -> None:
        self._config = config
        self._salts = salts
        self._sender = _Sender(config, rng, salts)
        self._established = False
        self._salt = b""
        self.handshake_timeout, self.linger = _timings(rng(8), bounds.handshake, bounds.linger)
        self._timeouts = Timeouts(handshake=self.handshake_timeout, linger=self.linger)  # also before start
        #: Where the client asked to go (logged by the dispatcher; never obeyed).
        self.requested_destination: Address | None = None
        cipher = config.cipher
        self._opener = ChunkOpener(cipher.salt_size, cipher.nonce_size, self._client_salt, linger=self.linger)

    @property
    def established(self) -> bool:
        return self._established

    def start(self, now: float, timeouts: Timeouts) -> None:
        # This connection's own draw replaces the transport-wide figure; a failed handshake closes
        # at start + timeout + linger, whether it timed out or failed.
        super().start(now, self._timeouts)
        self.keep_close_time(now)

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "requested_destination" and self.requested_destination is not None:
            return self.requested_destination
        return default

    def receive_eof(self) -> None:
        super().receive_eof()
        if self._opener.pending:
            raise RemoteProtocolError("connection closed inside a chunk", linger=self.linger)

    def receive_data(self, data: bytes) -> bytes:
        if self._established:
            return self._opener.feed(data)
        try:
            plain = self._opener.feed(data)
            if not self._opener.chunks:
                return plain
            plain = self._first_chunk(plain, self._opener.first_payload_size or 0)
        except RemoteProtocolError as exc:
            exc.linger = self.failure_linger()  # until the connection's close time (Engine.keep_close_time)
            raise
        self._established = True
        self.forget_close_time()
        # The reply's key is ready before the reply (the server is idle while its target is dialed).
        self._sender.prepare()
        return plain

    def send_data(self, data: bytes) -> None:
        if data:
            self._sender.send(data)

    def data_to_send(self) -> bytes:
        sender = self._sender
        return sender.take() if sender.pending else b""

    def _client_salt(self, salt: bytes) -> Aead:
        if salt in self._salts:
            raise ReplayDetected("repeated salt (replayed connection)", linger=self.linger)
        self._salt = salt
        return self._config.aead_for(salt)

    def _first_chunk(self, plain: bytes, first_size: int) -> bytes:
        # The first chunk is authentic: only now remember the salt, so that garbage cannot flush the filter.
        if not self._salts.check_and_add(self._salt):
            raise ReplayDetected("repeated salt (replayed connection)", linger=self.linger)
        parsed = decode_address(plain[:first_size])
        if parsed is None:
            raise RemoteProtocolError("malformed or truncated address header", linger=self.linger)
        self.requested_destination, size = parsed
        return plain[size:]
