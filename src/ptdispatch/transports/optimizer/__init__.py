"""``Optimizer``: a client-side chooser among other transports (Operator Foundation's Optimizer).

Not a wire protocol: each connection goes through one of the configured child transports, chosen
by a strategy, with failover to the others.  Client options::

    {"transports": [{"name": "obfs4", "config": {"serverAddress": "192.0.2.1:443", "cert": "...", "iat-mode": "0"}},
                    {"name": "shadow", "config": {"serverAddress": "192.0.2.2:8388", "password": "..."}}],
     "strategy": "first"}

``transports``
    a non-empty list; each ``name`` is any transport we have (any letter case, Optimizer
    included) and each ``config`` is that transport's full client options.  Every child dials the
    ``serverAddress`` of its own config (else the entry's ``address``, a field Optimizer-go's
    struct has but never uses; else the top-level ``serverAddress``).  The ``address`` handed to
    :meth:`OptimizerClient.dial` is not used (so the dispatcher needs no serverAddress, and in
    SOCKS5 mode the CONNECT address is the destination, which shadow carries and the others
    ignore).  Every child is validated at start-up: a bad or unknown one is an ``OptionsError``
    naming it (``transports[1] (shadow)``).
``strategy``
    ``first`` (the default), ``random``, ``rotate``, ``track`` or ``minimizeDialDuration`` (any
    letter case); see :mod:`.strategies`.

Failover: when a child's dial fails (a bug in it too, which is logged at ERROR and reported to
the strategy like any failure), the next child in the strategy's order is tried, all within the
one connect timeout of the dialer; each attempt gets an equal share of the time left (remaining
/ children left), so a child that hangs cannot use up the others' time.  A connection
fails when every child has failed, or when a child fails after it handed its connection to the
application (which was then told of its end): the application is made once per dial.  The
strategy's state lives on the client object, which the dispatcher keeps for the life of the
process.

Server side: there is none (run the children's servers); asking for one is an ``OptionsError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...errors import OptionsError, failed_dial, internal_error
from ...net.addr import Address, parse_hostport
from ...net.upstream import DIRECT, Dialer
from ..adapter import AppFactory
from ..base import ClientTransport, RawOptions, ServerContext, ServerTransport, TransportSpec
from ..options import get_str
from . import strategies
from .strategies import Strategy

NAME = "Optimizer"
SERVER_ADDRESS = "serverAddress"
CLIENT_KEYS = frozenset({"transports", "strategy"})
ENTRY_KEYS = frozenset({"name", "config", "address"})

__all__ = ["SPEC", "Child", "OptimizerClient", "parse_children"]

log = logging.getLogger("ptdispatch.optimizer")


@dataclass(frozen=True)
class Child:
    """One child transport: its validated client and the server it dials."""

    label: str
    transport: ClientTransport
    #: None for a child that names its own servers (a nested Optimizer).
    server: Address | None


class OptimizerClient(ClientTransport):
    """The children, and the strategy that orders them (its state lasts as long as this object)."""

    def __init__(self, children: Sequence[Child], strategy: Strategy) -> None:
        if len(children) != strategy.count:
            raise ValueError("the strategy must be made for exactly these children")
        self.children = tuple(children)
        self.strategy = strategy

    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Dial through the children in the strategy's order until one succeeds (``address`` is
        not used: each child dials its own server)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + dialer.timeout
        order = self.strategy.order()
        failures: list[tuple[Child, Exception]] = []
        for position, index in enumerate(order):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            budget = remaining / (len(order) - position)
            child = self.children[index]
            started = loop.time()
            handoff = _Handoff(app_factory)
            try:
                async with asyncio.timeout(budget):
                    child_dialer = dataclasses.replace(dialer, timeout=budget)
                    result = await child.transport.dial(
                        child.server or address, handoff, destination=destination, dialer=child_dialer
                    )
            except Exception as exc:  # a bug in one child (InternalError...) too: the others may work
                self.strategy.report(index, False, loop.time() - started)
                if isinstance(exc, TimeoutError) and not str(exc):
                    exc = TimeoutError(f"no connection within {budget:.3g} s")
                if handoff.called:
                    raise exc  # the application has this child's connection, and heard it end
                if not failed_dial(exc):  # a bug, logged here: the next child's success would hide it
                    log.error("%s: %s: %s", NAME, child.label, internal_error(exc))
                failures.append((child, exc))
                continue
            self.strategy.report(index, True, loop.time() - started)
            return result
        raise _all_failed(failures, len(order))

    def check(self, destination: Address | None) -> None:
        for child in self.children:
            try:
                child.transport.check(destination)
            except OptionsError as exc:
                raise OptionsError(NAME, f"{child.label}: {exc.message}") from None


class _Handoff:
    """One child's ``app_factory``: the dispatcher's, remembering whether the child called it.

    A child calls it once its handshake is done, and the application then hears of that
    connection, its end included, should the child's dial still fail (a handshake done in the
    same event-loop pass as its time share runs out: the timeout then aborts it).  The dialer's
    factory may hand out one protocol only (the dispatcher's returns its relay half, which a lost
    connection has already ended), so after that no other child may be tried: the dial fails.
    """

    __slots__ = ("called", "factory")

    def __init__(self, factory: AppFactory) -> None:
        self.factory = factory
        self.called = False

    def __call__(self) -> asyncio.BaseProtocol:
        self.called = True
        return self.factory()


def _all_failed(failures: list[tuple[Child, Exception]], count: int) -> Exception:
    """One error for a connection that no child could make, of the kind they all share."""
    parts = [f"{child.label}: {exc or type(exc).__name__}" for child, exc in failures]
    untried = count - len(failures)
    if untried:
        parts.append(f"{untried} not tried (out of time)")
    message = f"every transport failed ({'; '.join(parts)})"
    errors = [exc for _, exc in failures]
    if not errors:
        return TimeoutError(message)
    if all(isinstance(exc, OptionsError) for exc in errors):
        return OptionsError(NAME, message)
    for kind in (ConnectionRefusedError, TimeoutError):
        if all(isinstance(exc, kind) for exc in errors):
            return kind(message)
    return ConnectionError(message)


def _address(value: object, what: str) -> Address | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise OptionsError(NAME, f"{what} must be a string host:port")
    try:
        return parse_hostport(value, allow_zero_port=False)
    except ValueError as exc:
        raise OptionsError(NAME, f"{what}: {exc}") from None


def _child(index: int, entry: object, default: Address | None) -> Child:
    from .. import registry  # here, not at import time: the registry imports transports lazily

    where = f"transports[{index}]"
    if not isinstance(entry, Mapping):
        raise OptionsError(NAME, f'{where} must be an object {{"name": ..., "config": {{...}}}}')
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise OptionsError(NAME, f"{where}: missing 'name' (a transport name)")
    where = f"{where} ({name})"
    extra = sorted(set(entry) - ENTRY_KEYS)
    if extra:
        raise OptionsError(NAME, f"{where}: unknown key {extra[0]!r}; an entry has 'name', 'config' "
                                 f"and optionally 'address'")  # fmt: skip
    config = entry.get("config")
    if not isinstance(config, Mapping):
        raise OptionsError(NAME, f"{where}: 'config' must be an object (that transport's client options)")
    try:
        spec = registry.lookup(name)
    except ImportError as exc:
        raise OptionsError(NAME, f"{where}: transport unavailable: {exc}") from None
    if spec is None:
        raise OptionsError(NAME, f"{where}: unknown transport {name!r}; known: {', '.join(registry.names())}")
    try:
        transport = spec.make_client(config)  # unknown keys refused first, as for any client
    except OptionsError as exc:
        raise OptionsError(NAME, f"{where}: {exc.message}") from None
    server = (
        _address(config.get(SERVER_ADDRESS), f"{where}: option {SERVER_ADDRESS!r}")
        or _address(entry.get("address"), f"{where}: 'address'")  # Optimizer-go has it (unused there)
        or default
    )
    if server is None and not spec.names_servers:
        raise OptionsError(
            NAME, f"{where}: missing option {SERVER_ADDRESS!r} (in its config, or at the top level for all children)",
            missing=True,
        )  # fmt: skip
    return Child(where, transport, server)


def parse_children(raw: RawOptions) -> list[Child]:
    """Validate ``transports`` and every child in it."""
    entries = raw.get("transports")
    if entries is None:
        raise OptionsError(NAME, "missing option 'transports' (a list of {\"name\": ..., \"config\": {...}})",
                           missing=True)  # fmt: skip
    if not isinstance(entries, list) or not entries:
        raise OptionsError(NAME, 'option \'transports\' must be a non-empty list of {"name": ..., "config": {...}}')
    default = _address(raw.get(SERVER_ADDRESS), f"option {SERVER_ADDRESS!r}")
    return [_child(i, entry, default) for i, entry in enumerate(entries)]


def _client(raw: RawOptions) -> OptimizerClient:
    children = parse_children(raw)
    name = get_str(raw, NAME, "strategy") or "first"
    kind = strategies.lookup(name)
    if kind is None:
        raise OptionsError(NAME, f"unknown strategy {name!r}; use one of {', '.join(strategies.STRATEGIES)}")
    return OptimizerClient(children, kind(len(children)))


def _server(raw: RawOptions, ctx: ServerContext) -> ServerTransport:
    raise OptionsError(NAME, "Optimizer is client-only: run the servers of its child transports instead")


SPEC = TransportSpec(
    name=NAME,
    client=_client,
    server=_server,
    client_keys=CLIENT_KEYS,
    server_keys=frozenset(),
    names_servers=True,
    client_only=True,
)
