"""The transport contract.

A transport is a :class:`TransportSpec` (its name and two option parsers, found through
:mod:`ptdispatch.transports.registry`) whose parsers build a :class:`ClientTransport` and a
:class:`ServerTransport`.  Each side has one entry point, and callers (the dispatcher, the Python
API, the UDP modes, Optimizer) use nothing else:

* :meth:`ClientTransport.dial`: connect to a server and hand the plaintext side, an ordinary
  :class:`asyncio.Transport`, to a fresh application protocol (like ``loop.create_connection``);
* :meth:`ServerTransport.listen`: accept connections and hand each one's plaintext side to a
  fresh application protocol (like ``loop.create_server``).

Which shape to pick for a new transport:

* **A rewrite of one TCP byte stream** (obfs2/3/4, shadow, DarkStar): write an :class:`Engine`
  (sans-IO: bytes in, bytes out, randomness and time injected) and subclass
  :class:`EngineClientTransport` / :class:`EngineServerTransport`, which implement the entry points
  by running the engine through :mod:`ptdispatch.transports.adapter`.  This is the usual case.
* **A transport that owns its connections** (meek makes HTTP requests over connections it opens
  and reopens; Optimizer dials through other transports): subclass :class:`ClientTransport` /
  :class:`ServerTransport` and implement ``dial`` / ``listen`` yourself, opening outgoing
  connections only through the given :class:`~ptdispatch.net.upstream.Dialer`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HandshakeTimeout, OptionsError, RemoteProtocolError
from ..net.addr import Address
from ..net.upstream import DIRECT, Dialer
from ..replay.base import ReplayStore
from .adapter import AppFactory, ErrorCallback, dial_engine, serve_engines
from .timing import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from .timing import Timeouts as Timeouts

Rng = Callable[[int], bytes]
"""``rng(n)`` returns ``n`` random bytes (``os.urandom`` unless a test injects another)."""
Clock = Callable[[], float]
"""``clock()`` returns Unix time in seconds (``time.time`` unless a test injects another)."""

RawOptions = Mapping[str, object]
"""Options as they come from JSON, SOCKS arguments or the environment: untyped, unvalidated."""


class Engine(ABC):
    """One transport connection, as a sans-IO state machine.

    The adapter calls :meth:`start` and :meth:`initiate` once when the wire connection is up, then
    feeds every received chunk to :meth:`receive_data`, the peer's end of stream to
    :meth:`receive_eof`, and writes whatever :meth:`data_to_send` returns after each call.
    Application data flows only once :attr:`established` is true.  Remote misbehaviour raises
    :class:`~ptdispatch.errors.RemoteProtocolError` and nothing else (anything else is a bug: the
    adapter turns it into an ``InternalError`` and handles it like a failed handshake).

    Time is aioquic's: the adapter keeps one timer at :meth:`get_timer` and calls
    :meth:`handle_timer` when it expires; times are ``time.monotonic()`` seconds and are only ever
    passed in.  The defaults implement the handshake deadline from :class:`Timeouts`, so an engine
    needs only ``established``, ``receive_data``, ``send_data`` and ``data_to_send``.

    A server that must not tell a prober when its bytes crossed the count that fails calls
    :meth:`keep_close_time` at :meth:`start`: every failure of the handshake then lingers until one
    time drawn for the connection (its start + handshake timeout + linger), the time a timeout
    closes it too, instead of for a linger counted from the failure.  A failure met inside
    :meth:`receive_data` reads the time from :attr:`clock`.
    """

    _deadline: float | None = None
    _timeouts: Timeouts = DEFAULT_TIMEOUTS
    _close_at: float | None = None
    #: The adapter's clock (the one :meth:`start` and :meth:`handle_timer` get their times from),
    #: read only by :meth:`failure_linger`; tests set their own on the engine.
    clock: Callable[[], float] = time.monotonic

    @property
    @abstractmethod
    def established(self) -> bool:
        """The handshake is complete and :meth:`send_data` may be called."""

    def start(self, now: float, timeouts: Timeouts) -> None:
        """The wire connection is up at ``now``: arm the handshake deadline (called before
        :meth:`initiate`)."""
        self._timeouts = timeouts
        self._deadline = now + timeouts.handshake

    def initiate(self) -> None:  # noqa: B027 - optional hook
        """The wire connection is open: queue the opening bytes (client handshakes)."""

    @abstractmethod
    def receive_data(self, data: bytes) -> bytes:
        """Consume bytes from the network; return the plaintext they complete (maybe ``b""``)."""

    def receive_eof(self) -> None:
        """The peer ended its sending side.  Raise ``RemoteProtocolError`` when that cuts a
        handshake or a frame in two; engines with frames override this to check their buffer."""
        if not self.established:
            raise RemoteProtocolError("connection closed during the handshake")

    @abstractmethod
    def send_data(self, data: bytes) -> None:
        """Queue application plaintext for sending."""

    @abstractmethod
    def data_to_send(self) -> bytes:
        """Take the bytes that should be written to the network now."""

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (``None``: no timer; a past time: at once)."""
        if self._deadline is None or self.established:
            return None
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """The timer expired: raise ``HandshakeTimeout`` past the handshake deadline, or release
        output that was waiting for its time (then :meth:`data_to_send` returns it)."""
        deadline = self._deadline
        if deadline is not None and now >= deadline and not self.established:
            self._deadline = None
            message = f"no handshake within {self._timeouts.handshake:g} s"
            raise HandshakeTimeout(message, linger=self.linger_at(now))

    def keep_close_time(self, now: float) -> None:
        """Close this connection at one time if its handshake fails, whatever failed and when:
        ``now`` + the handshake timeout + the linger (of the :class:`Timeouts` given to
        :meth:`start`).  A linger counted from the failure would close a probe that sent enough
        bytes to fail sooner than one that sent too few and met the timeout, so when the close
        came would tell the prober how many bytes it takes; obfs4proxy's ``closeAfterDelay``
        likewise counts from the connection's start.  :meth:`forget_close_time` ends it."""
        self._close_at = now + self._timeouts.handshake + self._timeouts.linger

    def forget_close_time(self) -> None:
        """The handshake is complete: a later failure lingers the configured linger from then."""
        self._close_at = None

    def linger_at(self, now: float) -> float:
        """Seconds to linger after a failure at ``now``: until the close time while one is kept
        (:meth:`keep_close_time`; 0 once it has passed), else the configured linger."""
        close_at = self._close_at
        if close_at is None:
            return self._timeouts.linger
        return max(0.0, close_at - now)

    def failure_linger(self) -> float:
        """Seconds to linger after a failure now (:meth:`linger_at` by :attr:`clock`): what
        engines give the errors they raise, and what the adapter asks after a bug in the engine
        (by default as long as after a handshake timeout)."""
        return self.linger_at(self.clock())

    def get_extra_info(self, name: str, default: object = None) -> object:
        """Connection metadata the engine learned (e.g. ``requested_destination``), read by
        callers through the plaintext transport's ``get_extra_info``; ``default`` if unknown."""
        return default

    def buffered_size(self) -> int:
        """Bytes queued for a later time (paced writes): counted as write buffer, and a close
        waits for them."""
        return 0


class ClientTransport(ABC):
    """Validated client options for one transport (global options merged with per-connection ones)."""

    @abstractmethod
    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Connect to the transport server at ``address``; once the transport is ready, call
        ``app_factory()`` and hand it the plaintext side.  Returns both.

        ``destination`` is where the application wants to go when that is not the transport
        server itself (the SOCKS CONNECT address when ``serverAddress`` was given); transports
        that carry a destination on the wire (shadow) use it, the others ignore it.  Every
        outgoing connection goes through ``dialer``.  Failures raise ``OSError`` (including
        ``RemoteProtocolError`` and ``TimeoutError``) or ``OptionsError``.
        """

    def check(self, destination: Address | None) -> None:  # noqa: B027 - optional hook
        """Raise ``OptionsError`` when a connection to ``destination`` could not even be tried with
        these options (called at start-up for the modes that have no per-connection destination)."""


class EngineClientTransport(ClientTransport):
    """A client whose connections are one :class:`Engine` each over one TCP connection.

    ``timeouts`` (set per instance by a subclass's constructor) is handed to every engine."""

    timeouts: Timeouts = DEFAULT_TIMEOUTS

    @abstractmethod
    def new_engine(self, destination: Address | None) -> Engine:
        """A fresh client engine (see :meth:`ClientTransport.dial` for ``destination``)."""

    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        engine = self.new_engine(destination)  # first: a bad option must not cost a socket
        return await dial_engine(engine, address, app_factory, dialer, self.timeouts)

    def check(self, destination: Address | None) -> None:
        self.new_engine(destination)


class ServerTransport(ABC):
    """A configured server side: keys, shared state such as replay filters; one per listener."""

    @abstractmethod
    async def listen(
        self,
        app_factory: AppFactory,
        where: Address | socket.socket,
        *,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Server:
        """Accept connections on ``where`` (an address, or a bound listening socket); each one whose
        transport handshake succeeds gets ``app_factory()`` and its plaintext side, an
        ``asyncio.Transport`` whose ``get_extra_info("peername")`` is the client's address.
        ``on_error`` hears of every connection that failed before that (probes, bad handshakes)."""

    def smethod_args(self) -> dict[str, str]:
        """Key/value pairs clients need (reported as ``SMETHOD ... ARGS:``)."""
        return {}

    def bound(self, address: Address) -> None:  # noqa: B027 - optional hook
        """The listener is bound at ``address`` (obfs4 writes its bridge line here)."""


class EngineServerTransport(ServerTransport):
    """A server whose connections are one :class:`Engine` each over one TCP connection.

    ``timeouts`` (set per instance by a subclass's constructor) is handed to every engine."""

    timeouts: Timeouts = DEFAULT_TIMEOUTS

    @abstractmethod
    def new_engine(self) -> Engine:
        """A fresh server engine for one accepted connection."""

    async def listen(
        self,
        app_factory: AppFactory,
        where: Address | socket.socket,
        *,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Server:
        return await serve_engines(self.new_engine, app_factory, where, on_error=on_error, timeouts=self.timeouts)


class RoleClient(EngineClientTransport):
    """The client side of a transport whose engines need nothing but their role and randomness
    (obfs2, obfs3): ``make(initiator, rng)`` builds one."""

    def __init__(
        self, make: Callable[[bool, Rng], Engine], rng: Rng = os.urandom, *, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self._make = make
        self._rng = rng
        self.timeouts = timeouts

    def new_engine(self, destination: Address | None) -> Engine:
        return self._make(True, self._rng)


class RoleServer(EngineServerTransport):
    """The server side of such a transport: no state, no arguments to publish."""

    def __init__(
        self, make: Callable[[bool, Rng], Engine], rng: Rng = os.urandom, *, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self._make = make
        self._rng = rng
        self.timeouts = timeouts

    def new_engine(self) -> Engine:
        return self._make(False, self._rng)


@dataclass(frozen=True)
class ServerContext:
    """What a server transport may use besides its options."""

    state_dir: Path
    rng: Rng = field(default=os.urandom)
    clock: Clock = field(default=time.time)
    #: Replay state shared by every worker process (and fleet node): None keeps a filter per
    #: server in this process.  Servers that remember handshakes use it when given.
    replay: ReplayStore | None = None
    #: Replaces the transport's own timeouts (tests; deployments keep the defaults, which match
    #: the reference implementations).  How each transport reads ``linger`` is in its docs.
    timeouts: Timeouts | None = None
    #: The name the transport is served under (SMETHOD's, e.g. ``meek`` under PT 1.0), for the
    #: labels of metrics a transport counts itself; empty: the transport's own name.
    name: str = ""


#: Keys the dispatcher itself reads from a transport's options; every transport accepts them.
DISPATCHER_KEYS = frozenset(
    {"serverAddress", "udpIdleTimeout", "udpMaxSessions", "udpQueueWhileWaiting", "udpStunClassic"}
)


@dataclass(frozen=True)
class TransportSpec:
    """A transport's name and its two option parsers (each raises ``OptionsError``).

    Callers build transports with :meth:`make_client` / :meth:`make_server`, which first refuse
    keys the transport does not declare (a typo must not silently change the configuration).
    """

    name: str
    client: Callable[[RawOptions], ClientTransport]
    server: Callable[[RawOptions, ServerContext], ServerTransport]
    #: The option keys each side accepts, including keys it documents as ignored (None: not
    #: declared, nothing is checked).  The dispatcher's own keys (:data:`DISPATCHER_KEYS`) are
    #: always allowed and need not be listed.
    client_keys: frozenset[str] | None = None
    server_keys: frozenset[str] | None = None
    #: The client options name every server it dials (Optimizer: each child's serverAddress; meek: its url).
    #: The dispatcher then needs no serverAddress, the ``address`` given to ``dial`` is not used,
    #: and the application's destination (the SOCKS CONNECT address) is always ``destination``.
    names_servers: bool = False
    #: The client's dial uses neither ``address`` nor ``destination`` (meek: the url decides all), so the
    #: SOCKS5 frontend starts it as soon as the per-connection arguments are known, while the
    #: application is still sending its CONNECT request; the reply still waits for the dial.
    dials_without_destination: bool = False
    #: A client's session may arrive over several TCP connections (meek: any request on any
    #: connection, a CDN's above all), and the server keeps it in one process: under ``-workers``
    #: one worker alone serves this transport's listener.
    sessions_span_connections: bool = False
    #: There is no server side (Optimizer): ``make_server`` says so before it looks at any key.
    client_only: bool = False

    def unknown_keys(self, raw: RawOptions, *, server: bool) -> list[str]:
        """The keys of ``raw`` that this side of the transport does not know, in their order."""
        known = self.server_keys if server else self.client_keys
        if known is None:
            return []
        return [key for key in raw if key not in known and key not in DISPATCHER_KEYS]

    def check_keys(self, raw: RawOptions, *, server: bool) -> None:
        """Raise ``OptionsError`` naming the first unknown key and listing the known ones."""
        unknown = self.unknown_keys(raw, server=server)
        if unknown:
            known = (self.server_keys if server else self.client_keys) or frozenset()
            listed = ", ".join(sorted(known, key=str.lower)) or "none"
            raise OptionsError(self.name, f"unknown option {unknown[0]!r} (known: {listed})")

    def make_client(self, raw: RawOptions) -> ClientTransport:
        """Validated client options (unknown keys refused first)."""
        self.check_keys(raw, server=False)
        return self.client(raw)

    def make_server(self, raw: RawOptions, ctx: ServerContext) -> ServerTransport:
        """A configured server (unknown keys refused first, unless there is no server side at all)."""
        if not self.client_only:
            self.check_keys(raw, server=True)
        return self.server(raw, ctx)
