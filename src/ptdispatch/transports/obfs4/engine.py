"""obfs4 client and server engines (sans-IO), shaped like obfs4proxy 0.0.14's ``obfs4Conn``.

Each :meth:`send_data` is one obfs4proxy ``Write``: the data is cut into 1427-byte payload
packets, then (iat-mode 0 and 1) padded once per burst to a length drawn from the seeded
distribution.  iat-mode 1 writes the burst in <= 1448-byte pieces, each followed by 0-10 ms
(the last too: the next write waits for it); iat-mode 2 also draws every piece's length
(padding when short), as obfs4proxy does.
"""

from __future__ import annotations

import collections
import hashlib

from ...crypto import ntor
from ...crypto.drbg import HashDrbg
from ...errors import HandshakeTimeout, LocalProtocolError, RemoteProtocolError
from ...replay.base import ReplayStore
from ..base import Clock, Engine, Rng, Timeouts
from .framing import (
    HEADER_LENGTH,
    MAX_SEGMENT,
    SEED_PAYLOAD,
    TYPE_PRNG_SEED,
    Decoder,
    Encoder,
    framed_length,
    make_packet,
    padding_packets,
)
from .handshake import ClientHandshake, ServerHandshake, ServerIdentity, SessionKey, SessionKeys
from .probdist import GoRand, Sampler
from .replay import ReplayFilter, StoreReplayFilter

IAT_NONE, IAT_ENABLED, IAT_PARANOID = 0, 1, 2
MAX_IAT_DELAY = 100  # units of 100 microseconds
MAX_CLOSE_DELAY = 60
#: obfs4proxy's: 30 s for the handshake; after a failure (or the timeout) the server keeps reading
#: until 30 s + a close delay drawn from its seed below ``linger`` (60 s) have passed.
SERVER_TIMEOUTS = Timeouts(handshake=30.0, linger=float(MAX_CLOSE_DELAY))
CLIENT_TIMEOUTS = Timeouts(handshake=60.0)
MAX_CLOSE_DELAY_BYTES = 8192
MAX_CLOSE_JITTER = 30.0
"""Seconds of per-connection random delay added to a failed handshake's close (ours, not obfs4proxy's:
its close time is fixed per server, which a prober can learn from two connections)."""


def iat_seed(seed: bytes) -> bytes:
    return hashlib.sha256(seed).digest()[:SEED_PAYLOAD]


class Obfs4Engine(Engine):
    """What both sides share once keys exist: framing, padding and pacing.

    In iat-mode 1 and 2 shaped writes wait in a queue, each with the delay that must follow it;
    :meth:`get_timer` says when the next may go and :meth:`handle_timer` releases it.
    """

    def __init__(self, iat_mode: int, rng: Rng, clock: Clock) -> None:
        self._iat_mode = iat_mode
        self._rng = rng
        self._clock = clock
        self._encoder: Encoder | None = None
        self._decoder: Decoder | None = None
        self._raw: list[bytes] = []  # unshaped bytes (handshakes), written first
        self._out: list[bytes] = []  # framed bursts, and shaped writes once released
        self._writes: collections.deque[tuple[bytes, float]] = collections.deque()  # shaped, not yet due
        self._backlog = 0  # bytes in _writes
        self._due: float | None = None  # when the next shaped write may go; None: at once
        self._len: Sampler | None = None
        self._iat: Sampler | None = None
        self._hs_buf = b""

    @property
    def established(self) -> bool:
        return self._encoder is not None

    def _set_seed(self, seed: bytes) -> None:
        if self._len is None:
            self._len = Sampler(seed, 0, MAX_SEGMENT, self._rng)
        else:
            self._len.reset(seed, 0, MAX_SEGMENT)
        if self._iat_mode != IAT_NONE:
            if self._iat is None:
                self._iat = Sampler(iat_seed(seed), 0, MAX_IAT_DELAY, self._rng)
            else:
                self._iat.reset(iat_seed(seed), 0, MAX_IAT_DELAY)

    def _len_sampler(self) -> Sampler:
        if self._len is None:
            self._set_seed(self._rng(SEED_PAYLOAD))
        assert self._len is not None
        return self._len

    def send_data(self, data: bytes) -> None:
        encoder = self._encoder
        if encoder is None:
            raise LocalProtocolError("obfs4: send_data() before the handshake completed")
        if not data:
            return
        if self._iat_mode == IAT_PARANOID:
            # Shaped now, not when pulled: padding must be sealed in wire order.
            self._paranoid(encoder.payload(data))
            return
        pads = padding_packets(framed_length(len(data)), self._len_sampler().sample())
        if self._iat_mode == IAT_NONE:
            self._out.append(encoder.payload(data, pads))
        else:
            self._slices(encoder.payload(data, pads))

    def data_to_send(self) -> bytes:
        out = self._raw + self._out if self._raw else self._out
        if not out:
            return b""
        self._raw = []
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def receive_eof(self) -> None:
        super().receive_eof()
        if self._decoder is not None and self._decoder.pending:
            raise RemoteProtocolError("obfs4: connection closed inside a frame")

    def get_timer(self) -> float | None:
        if self._writes:  # nothing queued, no timer: _due may be long past, then it is at once
            return self._due if self._due is not None else 0.0  # 0.0: in the past, at once
        return super().get_timer()

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if self._writes and (self._due is None or now >= self._due):
            self._release(now)

    def buffered_size(self) -> int:
        return self._backlog

    def _release(self, now: float) -> None:
        """Move the next shaped write to the output, and time the one after it: one piece per
        write, as obfs4proxy writes each piece with its own call (a zero delay is due at once).

        The pause after a write's last piece is kept too: obfs4proxy's ``Write`` sleeps after
        every piece, so the next write's first piece waits for it (a later one goes at once)."""
        chunk, delay = self._writes.popleft()
        self._backlog -= len(chunk)
        self._out.append(chunk)
        self._due = now + delay

    def _queue(self, chunk: bytes, delay: float) -> None:
        self._writes.append((chunk, delay))
        self._backlog += len(chunk)

    def _delay(self) -> float:
        if self._iat is None:
            self._len_sampler()
        assert self._iat is not None
        return self._iat.sample() * 100e-6

    def _slices(self, burst: bytes) -> None:
        for i in range(0, len(burst), MAX_SEGMENT):
            self._queue(burst[i : i + MAX_SEGMENT], self._delay())

    def _paranoid(self, burst: bytes) -> None:
        """obfs4proxy's iat-mode 2: every write's length is drawn; a short tail is padded up to it.

        obfs4proxy resamples when the padding cannot land exactly (it needs two frames), which
        never ends for some distributions (all values <= 21 bytes); here that tail is written
        unpadded instead, and a draw of 0 (an empty write in obfs4proxy) writes what is left.
        """
        assert self._encoder is not None
        sampler = self._len_sampler()
        buf = burst
        while buf:
            target = sampler.sample()
            if target == 0:
                target = min(len(buf), MAX_SEGMENT)
            elif len(buf) < target:
                if target - len(buf) > HEADER_LENGTH:
                    buf += self._encoder.packets(padding_packets(len(buf), target))
                else:
                    target = len(buf)
            self._queue(buf[:target], self._delay())
            buf = buf[target:]


class ClientEngine(Obfs4Engine):
    """obfs4 client: sends its handshake on :meth:`initiate`, nothing more until the reply."""

    def __init__(
        self,
        node_id: bytes,
        server_public: bytes,
        iat_mode: int,
        rng: Rng,
        clock: Clock,
        keys: SessionKeys | None = None,
    ) -> None:
        super().__init__(iat_mode, rng, clock)
        self._keys = keys
        session = keys.take() if keys is not None else SessionKey(rng)
        self._hs = ClientHandshake(node_id, server_public, session, rng, clock())

    def initiate(self) -> None:
        self._raw.append(self._hs.message())

    def receive_data(self, data: bytes) -> bytes:
        decoder = self._decoder
        if decoder is None:
            buf = self._hs_buf + data if self._hs_buf else data
            result = self._hs.parse(buf)
            if result is None:
                self._hs_buf = buf
                return b""
            consumed, key_seed = result
            if self._keys is not None:
                self._keys.refill_soon()
            okm = ntor.kdf(key_seed, 144)
            self._encoder = Encoder(okm[:72])
            self._decoder = decoder = Decoder(okm[72:], self._rng)
            decoder.keep_seed = True
            self._hs_buf = b""
            data = buf[consumed:]
        plain = decoder.decode(data)
        if decoder.seed is not None:
            self._set_seed(decoder.seed)
            decoder.seed = None
        return plain


class ServerShared:
    """Per-listener server state: identity, seeds, replay filter, close-delay parameters."""

    def __init__(
        self,
        identity: ServerIdentity,
        drbg_seed: bytes,
        iat_mode: int,
        store: ReplayStore | None = None,
        timeouts: Timeouts = SERVER_TIMEOUTS,
    ) -> None:
        self.identity = identity
        self.timeouts = timeouts
        self.drbg_seed = drbg_seed
        self.iat_mode = iat_mode
        self.replay = ReplayFilter() if store is None else StoreReplayFilter(store)
        go = GoRand(HashDrbg(drbg_seed))
        # obfs4proxy's closeDelayBytes (it also closes once that many bytes came): drawn so that
        # close_delay is obfs4proxy's, not used (a close at a byte count would fingerprint us).
        go.intn(MAX_CLOSE_DELAY_BYTES)
        # obfs4proxy draws whole seconds below 60; timeouts.linger scales that bound.
        self.close_delay = go.intn(MAX_CLOSE_DELAY) * timeouts.linger / MAX_CLOSE_DELAY
        self.seed_frame_packet = make_packet(TYPE_PRNG_SEED, drbg_seed)


class ServerEngine(Obfs4Engine):
    """obfs4 server: validates the client handshake, replies with its own and the PRNG seed."""

    def __init__(self, shared: ServerShared, rng: Rng, clock: Clock, keys: SessionKeys | None = None) -> None:
        super().__init__(shared.iat_mode, rng, clock)
        self._shared = shared
        self._start = clock()
        self._failed = False
        self._jitter: float | None = None  # drawn on the first failure only: good handshakes use no randomness
        self._keys = keys
        self._hs = ServerHandshake(shared.identity, keys.take() if keys is not None else SessionKey(rng), rng)
        self._set_seed(shared.drbg_seed)

    @property
    def linger(self) -> float:
        """Seconds left before a failed connection is closed: the handshake timeout (30 s) + the
        server's seeded close delay (as obfs4proxy) + this connection's random jitter (up to
        :data:`MAX_CLOSE_JITTER`)."""
        if self._jitter is None:  # scaled like the close delay when the server's timeouts are configured
            steps = round(MAX_CLOSE_JITTER * self._shared.timeouts.linger / MAX_CLOSE_DELAY * 100)
            self._jitter = int.from_bytes(self._rng(4), "big") % (steps + 1) / 100
        deadline = self._start + self._shared.timeouts.handshake + self._shared.close_delay + self._jitter
        return max(0.0, deadline - self._clock())

    def start(self, now: float, timeouts: Timeouts) -> None:
        # After a timeout obfs4proxy keeps reading until the same deadline as after a failure.
        super().start(now, Timeouts(handshake=timeouts.handshake, linger=self._shared.close_delay))

    def handle_timer(self, now: float) -> None:
        try:
            super().handle_timer(now)
        except HandshakeTimeout as exc:  # a silent prober waits for the same jittered close as any other
            raise HandshakeTimeout(str(exc), linger=self.linger) from None

    def failure_linger(self) -> float:
        return self.linger

    def receive_data(self, data: bytes) -> bytes:
        decoder = self._decoder
        if decoder is not None:
            return decoder.decode(data)
        if self._failed:
            raise RemoteProtocolError("obfs4: handshake already failed", linger=self.linger)
        buf = self._hs_buf + data if self._hs_buf else data
        try:
            key_seed = self._hs.parse(buf, self._shared.replay, self._clock())
        except RemoteProtocolError as exc:
            self._failed = True
            self._hs_buf = b""
            raise type(exc)(str(exc), linger=self.linger) from None  # keeps ReplayDetected apart
        if key_seed is None:
            self._hs_buf = buf
            return b""
        self._hs_buf = b""
        okm = ntor.kdf(key_seed, 144)
        self._decoder = Decoder(okm[:72], self._rng)
        encoder = Encoder(okm[72:])
        self._raw.append(self._hs.reply() + encoder.packets([self._shared.seed_frame_packet]))
        self._encoder = encoder
        if self._keys is not None:
            self._keys.refill_soon()
        return b""
