"""What every client frontend shares: resolve per-connection options, dial, splice."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import socket
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from ..errors import OptionsError, RemoteProtocolError
from ..logs import EventLog
from ..net.addr import Address, parse_hostport
from ..net.relay import RelayProtocol, Splice
from ..net.tracker import ConnectionTracker, closed_logger, track_opened
from ..net.upstream import Dialer, OutboundBind, ProxyRefused, UpstreamProxy
from ..transports.adapter import AppFactory
from ..transports.base import ClientTransport, TransportSpec
from .socks.protocol import Reply

SERVER_ADDRESS_KEY = "serverAddress"
NO_SERVER = Address("0.0.0.0", 0)
"""Route.server for transports whose options name their servers, when nothing else names one."""
CLIENT_CACHE_SIZE = 64
"""Clients kept for distinct per-connection argument sets (least recently used dropped first)."""


def _cache_key(args: Mapping[str, object]) -> Hashable:
    """A key for a set of per-connection arguments: the pairs themselves, or their JSON text when
    a value is not hashable (a list in a 0x09 parameter block)."""
    try:
        return frozenset(args.items())
    except TypeError:
        return json.dumps(args, sort_keys=True, default=str)


@dataclass(frozen=True)
class Route:
    """Where one connection goes: the transport server, and the destination it should carry."""

    client: ClientTransport
    server: Address
    destination: Address | None


@dataclass
class ClientMethod:
    """One started client transport: its options and what it needs to dial."""

    name: str
    spec: TransportSpec
    options: Mapping[str, object]
    proxy: UpstreamProxy | None
    log: EventLog
    tracker: ConnectionTracker
    connect_timeout: float = 30.0
    _default: ClientTransport | None = field(default=None, repr=False)
    _clients: dict[Hashable, tuple[ClientTransport, Address | None]] = field(default_factory=dict, repr=False)
    #: Source addresses for direct dials (PT 1.0's TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6).
    outbound: OutboundBind | None = None
    _dialer: Dialer | None = field(default=None, repr=False, compare=False)

    def check_options(self, *, per_connection_allowed: bool) -> None:
        """Validate the -options at start-up (raises ``OptionsError``).

        Where per-connection arguments can still complete the options (SOCKS5 mode), a missing
        required key is not an error yet.
        """
        _ = self.default_server  # parsed now, so that a bad value fails at start-up
        try:
            self._default = self.spec.make_client(self.options)
        except OptionsError as exc:
            # With no transport options at all, every argument may still come per connection.
            nothing_given = not (self.options.keys() - {SERVER_ADDRESS_KEY})
            if not (per_connection_allowed and (exc.missing or nothing_given)):
                raise

    @functools.cached_property
    def default_server(self) -> Address | None:
        """The ``-options`` serverAddress, parsed once."""
        return self.server_address(self.options)

    def server_address(self, options: Mapping[str, object]) -> Address | None:
        value = options.get(SERVER_ADDRESS_KEY)
        if value is None:
            return None
        if not isinstance(value, str):
            raise OptionsError(self.name, f"option {SERVER_ADDRESS_KEY!r} must be a string host:port")
        try:
            return parse_hostport(value, allow_zero_port=False)
        except ValueError as exc:
            raise OptionsError(self.name, f"option {SERVER_ADDRESS_KEY!r}: {exc}") from None

    def route(self, per_connection: Mapping[str, object], requested: Address | None) -> Route:
        """Merge per-connection arguments into the options and decide where to dial."""
        client, server = self._resolve(per_connection)
        if self.spec.names_servers:  # Optimizer, meek: their options name the servers; ``server`` is unused
            return Route(client, server or requested or NO_SERVER, requested)
        destination = requested if server is not None else None
        if server is None:
            if requested is None:
                raise OptionsError(self.name, f"no {SERVER_ADDRESS_KEY!r} option: set it in -options")
            server = requested
        return Route(client, server, destination)

    def _resolve(self, per_connection: Mapping[str, object]) -> tuple[ClientTransport, Address | None]:
        """The client and the serverAddress for these per-connection arguments.

        Keys the transport does not know are dropped with a WARN line (one client's typo must not
        refuse its connection).  The rest is worked out once per distinct set and kept (the most
        recent :data:`CLIENT_CACHE_SIZE`): tor sends a bridge's same arguments with every
        connection, and state on the client (Optimizer's strategy) must outlive one connection.
        """
        if per_connection:
            unknown = self.spec.unknown_keys(per_connection, server=False)
            if unknown:
                names = ", ".join(repr(key) for key in unknown)
                self.log.warn(f"{self.name}: ignoring unknown per-connection option(s) {names}")
                per_connection = {key: value for key, value in per_connection.items() if key not in unknown}
        if not per_connection and self._default is not None:
            return self._default, self.default_server
        key = _cache_key(per_connection)
        found = self._clients.pop(key, None)
        if found is None:
            if per_connection:
                merged: Mapping[str, object] = {**self.options, **per_connection}
                server = self.server_address(merged)  # a bad serverAddress is reported first
                found = self.spec.make_client(merged), server
            else:
                found = self.spec.make_client(self.options), self.default_server
        self._clients[key] = found  # most recently used last
        if len(self._clients) > CLIENT_CACHE_SIZE:
            del self._clients[next(iter(self._clients))]
        return found

    def new_splice(self, label: str, *, a_factory: Callable[[Splice], RelayProtocol] = RelayProtocol) -> Splice:
        on_done = self._on_done if label == self.name else closed_logger(self.log, self.tracker, label, role="client")
        splice = Splice(on_done=on_done, a_factory=a_factory)
        track_opened(self.tracker, splice, label, role="client")
        return splice

    @functools.cached_property
    def _on_done(self) -> Callable[[Splice, Exception | None], None]:
        return closed_logger(self.log, self.tracker, self.name, role="client")  # built once, not per connection

    @property
    def dialer(self) -> Dialer:
        """How this method's outgoing connections are made (proxy, source address, timeout)."""
        made = self._dialer
        if made is None or (made.proxy, made.bind, made.timeout) != (self.proxy, self.outbound, self.connect_timeout):
            made = self._dialer = Dialer(proxy=self.proxy, bind=self.outbound, timeout=self.connect_timeout)
        return made

    async def dial(self, route: Route, app_factory: AppFactory) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Connect ``app_factory()`` through the transport to ``route.server`` (TCP and UDP modes alike)."""
        return await route.client.dial(route.server, app_factory, destination=route.destination, dialer=self.dialer)


def reply_for(exc: BaseException) -> Reply:
    """The RFC 1928 reply code that best describes a failed dial."""
    if isinstance(exc, OptionsError):
        return Reply.ARGS_INVALID
    if isinstance(exc, ProxyRefused) and exc.code is not None and 1 <= exc.code <= 8:
        return Reply(exc.code)
    if isinstance(exc, ConnectionRefusedError):
        return Reply.CONNECTION_REFUSED
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Reply.TTL_EXPIRED
    if isinstance(exc, socket.gaierror | UnicodeError):  # UnicodeError: a name the IDNA codec rejects
        return Reply.HOST_UNREACHABLE
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.ENETDOWN):
        return Reply.NETWORK_UNREACHABLE
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.EHOSTDOWN):
        return Reply.HOST_UNREACHABLE
    if isinstance(exc, RemoteProtocolError):
        return Reply.GENERAL_FAILURE
    return Reply.GENERAL_FAILURE
