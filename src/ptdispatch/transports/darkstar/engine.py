"""DarkStar client and server engines (sans-IO).

The client sends its 64-byte hello at :meth:`~DarkStarClientEngine.initiate` and is established
once the server's 64-byte reply checks out.  The server answers only a hello whose confirmation
code verifies and whose ephemeral key it has not seen; anything else (a wrong server key, a replay,
an invalid point) raises ``RemoteProtocolError`` with a ``linger``: the adapter then reads and
discards until it expires and closes without having sent a byte.  A peer that stops short of 64
bytes meets the handshake timeout, itself random, and then the linger.  Either way the connection
closes at the same time, its start + its handshake timeout + its linger (the failure's ``linger``
is what is left of that), so the close does not tell a prober when its bytes reached 64.

Time (the :class:`~ptdispatch.transports.base.Engine` timer): each server connection draws two
fractions at birth; :meth:`DarkStarServerEngine.start` turns them into its handshake timeout in
``[handshake/2, handshake]`` and its linger in ``[linger/6, linger]`` of the transport's
:class:`~ptdispatch.transports.timing.Timeouts`.  The defaults (:data:`SERVER_TIMEOUTS`, 60 s and
60 s) give Operator's 30-60 s and 10-60 s; configured (shorter) timeouts shrink both ranges.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from ...errors import RemoteProtocolError
from ..base import Engine, Rng, Timeouts
from .framing import FrameOpener, FrameSealer
from .handshake import CLIENT, HELLO_SIZE, SERVER, confirmation_code, ecdh, session_keys
from .keys import COORD, CURVE, PrivateKey, PublicKey, public_from_x, x_of
from .replay import SeenKeys

KeyMaker = Callable[[], PrivateKey]


def new_ephemeral() -> PrivateKey:
    return ec.generate_private_key(CURVE)


#: The server's upper bounds (handshake timeout, linger after a failure), in seconds.
SERVER_TIMEOUTS = Timeouts(handshake=60.0, linger=60.0)


class ClientState(enum.Enum):
    """Where a DarkStar client is in its handshake."""

    NEW = "not started"
    SENT = "hello sent, waiting for the server's"
    OPEN = "keys agreed"


#: The client gives the server as long as our other clients do.
CLIENT_TIMEOUTS = Timeouts(handshake=60.0)
#: The lower bound of each draw, as a fraction of its upper bound (Operator: 30-60 s, 10-60 s).
HANDSHAKE_FLOOR = 0.5
LINGER_FLOOR = 1 / 6


def random_fraction(rng: Rng) -> float:
    """A fraction in ``[0, 1]`` in 1/6000 steps (10 ms steps of a 60 s range)."""
    return (int.from_bytes(rng(4), "big") % 6001) / 6000


def between(low: float, high: float, fraction: float) -> float:
    """``low + fraction * (high - low)``, rounded to 10 ms."""
    return round(low + fraction * (high - low), 2)


def _peer_point(x: bytes) -> PublicKey:
    try:
        return public_from_x(x)
    except ValueError:
        raise RemoteProtocolError("DarkStar: the peer's key is not a point on P-256") from None


class _Session:
    """What both sides share once the handshake is done: frames each way, pending plaintext."""

    def __init__(self) -> None:
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        self._pending: list[bytes] = []
        self._out: list[bytes] = []

    def _start(self, send_key: bytes, receive_key: bytes) -> None:
        self._sealer = FrameSealer(send_key)
        self._opener = FrameOpener(receive_key)

    def queue_plain(self, data: bytes) -> None:
        if data:
            self._pending.append(data)

    def take(self) -> bytes:
        if self._pending and self._sealer is not None:
            pending, self._pending = self._pending, []
            self._out.append(self._sealer.seal(pending[0] if len(pending) == 1 else b"".join(pending)))
        out, self._out = self._out, []
        return out[0] if len(out) == 1 else b"".join(out)

    def open(self, data: bytes) -> bytes:
        assert self._opener is not None
        return self._opener.feed(data) if data else b""

    def check_eof(self, linger: float) -> None:
        """The peer ended its stream: an error when that cut a frame in two."""
        if self._opener is not None and self._opener.pending:
            raise RemoteProtocolError("DarkStar: connection closed inside a frame", linger=linger)


class DarkStarClientEngine(_Session, Engine):
    """Our side of a connection to a DarkStar server with static key ``server_key``."""

    def __init__(self, server_key: PublicKey, sid: bytes, *, make_key: KeyMaker = new_ephemeral) -> None:
        super().__init__()
        self._server_key = server_key
        self._sid = sid
        self._make_key = make_key
        self._buffer = b""
        self._state = ClientState.NEW
        self._ephemeral: PrivateKey | None = None
        self._e_static = b""
        self._client_x = b""

    @property
    def established(self) -> bool:
        return self._state is ClientState.OPEN

    def initiate(self) -> None:
        if self._state is not ClientState.NEW:
            return
        self._state = ClientState.SENT
        c = self._ephemeral = self._make_key()
        self._client_x = x_of(c.public_key())
        self._e_static = ecdh(c, self._server_key)
        server_x = x_of(self._server_key)
        code = confirmation_code(self._e_static, self._sid, server_x, self._client_x, CLIENT)
        self._out.append(self._client_x + code)

    def receive_data(self, data: bytes) -> bytes:
        if self._state is ClientState.OPEN:
            return self.open(data)
        if self._state is ClientState.NEW:
            raise RemoteProtocolError("DarkStar: the server spoke before our hello")
        self._buffer += data
        if len(self._buffer) < HELLO_SIZE:
            return b""
        reply, rest = self._buffer[:HELLO_SIZE], self._buffer[HELLO_SIZE:]
        self._buffer = b""
        server_x, code = reply[:COORD], reply[COORD:]
        expected = confirmation_code(self._e_static, self._sid, x_of(self._server_key), self._client_x, SERVER)
        if not hmac.compare_digest(code, expected):
            raise RemoteProtocolError("DarkStar: wrong server confirmation code (wrong server key or address)")
        assert self._ephemeral is not None
        e_ephem = ecdh(self._ephemeral, _peer_point(server_x))
        c2s, s2c = session_keys(e_ephem, self._e_static, self._sid, self._client_x, server_x)
        self._start(c2s, s2c)
        self._ephemeral = None
        self._state = ClientState.OPEN
        return self.open(rest)

    def receive_eof(self) -> None:
        super().receive_eof()
        self.check_eof(0.0)

    def send_data(self, data: bytes) -> None:
        self.queue_plain(data)

    def data_to_send(self) -> bytes:
        return self.take()


class ServerKey:
    """A server's static key with its X coordinate computed once."""

    __slots__ = ("private", "public", "x")

    def __init__(self, private: PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.x = x_of(self.public)


class DarkStarServerEngine(_Session, Engine):
    """One accepted connection on our DarkStar server (its timeouts drawn at :meth:`start`)."""

    def __init__(
        self,
        key: ServerKey,
        sid: bytes,
        replay: SeenKeys,
        *,
        rng: Rng = os.urandom,
        make_key: KeyMaker = new_ephemeral,
    ) -> None:
        super().__init__()
        self._key = key
        self._sid = sid
        self._replay = replay
        self._make_key = make_key
        self._buffer = b""
        self._open = False
        self._draw = (random_fraction(rng), random_fraction(rng))
        # Drawn again from the configured bounds at start.
        self._timeouts = self.draw(SERVER_TIMEOUTS)
        #: Seconds to linger after a failure once the close time has been reached (a timeout) or
        #: forgotten (a failure after the handshake).
        self.linger = self._timeouts.linger

    def draw(self, bounds: Timeouts) -> Timeouts:
        """This connection's handshake timeout and linger within ``bounds`` (the upper bounds)."""
        handshake, linger = self._draw
        return Timeouts(
            handshake=between(bounds.handshake * HANDSHAKE_FLOOR, bounds.handshake, handshake),
            linger=between(bounds.linger * LINGER_FLOOR, bounds.linger, linger),
        )

    def start(self, now: float, timeouts: Timeouts) -> None:
        drawn = self.draw(timeouts)
        self.linger = drawn.linger
        super().start(now, drawn)
        self.keep_close_time(now)  # a timeout and a failure both close at start + timeout + linger

    @property
    def established(self) -> bool:
        return self._open

    def receive_data(self, data: bytes) -> bytes:
        if self._open:
            return self.open(data)
        self._buffer += data
        if len(self._buffer) < HELLO_SIZE:
            return b""
        hello, rest = self._buffer[:HELLO_SIZE], self._buffer[HELLO_SIZE:]
        self._buffer = b""
        self._answer(hello)
        self._open = True
        self.forget_close_time()
        return self.open(rest)

    def receive_eof(self) -> None:
        if not self._open:
            raise self._fail("connection closed during the handshake")
        self.check_eof(self.linger)

    def _fail(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"DarkStar: {message}", linger=self.failure_linger())

    def _answer(self, hello: bytes) -> None:
        client_x, code = hello[:COORD], hello[COORD:]
        try:
            client_key = public_from_x(client_x)
        except ValueError:
            raise self._fail("the client's key is not a point on P-256") from None
        e_static = ecdh(self._key.private, client_key)
        expected = confirmation_code(e_static, self._sid, self._key.x, client_x, CLIENT)
        if not hmac.compare_digest(code, expected):
            raise self._fail("wrong client confirmation code (a probe, or a client with another key or address)")
        if self._replay.seen(client_x):
            raise self._fail("replayed client hello")
        s = self._make_key()
        server_x = x_of(s.public_key())
        e_ephem = ecdh(s, client_key)
        c2s, s2c = session_keys(e_ephem, e_static, self._sid, client_x, server_x)
        self._start(s2c, c2s)
        reply_code = confirmation_code(e_static, self._sid, self._key.x, client_x, SERVER)
        self._out.append(server_x + reply_code)

    def send_data(self, data: bytes) -> None:
        self.queue_plain(data)

    def data_to_send(self) -> bytes:
        return self.take()
