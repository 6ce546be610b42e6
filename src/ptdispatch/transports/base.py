"""The transport contract.

A transport is three things:

* an :class:`Engine`: one per wire connection, pure protocol logic with no asyncio in it.
  Bytes from the network go in through :meth:`Engine.receive_data` (plaintext comes out),
  plaintext goes in through :meth:`Engine.send_data`, and the bytes to put on the wire are
  pulled with :meth:`Engine.data_to_send`.  Randomness and time are injected.
* a :class:`ClientTransport` / :class:`ServerTransport`: validated options, turned into engines.
  A server transport lives as long as its listener, so it holds shared state (keys, replay filters).
* a :class:`TransportSpec` naming the transport and its two option parsers, found through
  :mod:`ptdispatch.transports.registry`.

:mod:`ptdispatch.transports.adapter` is the one bridge from any engine to asyncio.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..net.addr import Address

Rng = Callable[[int], bytes]
"""``rng(n)`` returns ``n`` random bytes (``os.urandom`` unless a test injects another)."""
Clock = Callable[[], float]
"""``clock()`` returns Unix time in seconds (``time.time`` unless a test injects another)."""

RawOptions = Mapping[str, object]
"""Options as they come from JSON, SOCKS arguments or the environment: untyped, unvalidated."""


class Engine(ABC):
    """One transport connection, as a sans-IO state machine.

    The adapter calls :meth:`initiate` once when the wire connection is up, then feeds every
    received chunk to :meth:`receive_data` and writes whatever :meth:`data_to_send` returns after
    each call.  Application data flows only once :attr:`established` is true.  Remote misbehaviour
    raises :class:`~ptdispatch.errors.RemoteProtocolError` and nothing else.
    """

    #: Seconds the peer has to complete the handshake.
    handshake_timeout: float = 60.0
    #: True when writes must be spaced in time (obfs4 iat-mode 1/2); see :meth:`paced_writes`.
    paced: bool = False

    @property
    @abstractmethod
    def established(self) -> bool:
        """The handshake is complete and :meth:`send_data` may be called."""

    @property
    def timeout_linger(self) -> float:
        """Seconds to keep reading and discarding after a handshake timeout before closing
        (obfs4 servers do, so a prober cannot time the close); 0 closes at once."""
        return 0.0

    def initiate(self) -> None:  # noqa: B027 - optional hook
        """The wire connection is open: queue the opening bytes (client handshakes)."""

    @abstractmethod
    def receive_data(self, data: bytes) -> bytes:
        """Consume bytes from the network; return the plaintext they complete (maybe ``b""``)."""

    @abstractmethod
    def send_data(self, data: bytes) -> None:
        """Queue application plaintext for sending."""

    @abstractmethod
    def data_to_send(self) -> bytes:
        """Take the bytes that should be written to the network now."""

    def paced_writes(self) -> list[tuple[bytes, float]]:
        """Take pending output as ``(chunk, delay_after)`` pairs; used instead of
        :meth:`data_to_send` when :attr:`paced` is true."""
        data = self.data_to_send()
        return [(data, 0.0)] if data else []


class ClientTransport(ABC):
    """Validated client options for one transport (global options merged with per-connection ones)."""

    @abstractmethod
    def new_engine(self, destination: Address | None) -> Engine:
        """A fresh client engine.

        ``destination`` is where the application wants to go when that is not the transport
        server itself (the SOCKS CONNECT address when ``serverAddress`` was given); transports
        that carry a destination on the wire (shadow) use it, the others ignore it.
        """


class ServerTransport(ABC):
    """A configured server side: keys, shared state such as replay filters; one per listener."""

    @abstractmethod
    def new_engine(self) -> Engine:
        """A fresh server engine for one accepted connection."""

    def smethod_args(self) -> dict[str, str]:
        """Key/value pairs clients need (reported as ``SMETHOD ... ARGS:``)."""
        return {}

    def bound(self, address: Address) -> None:  # noqa: B027 - optional hook
        """The listener is bound at ``address`` (obfs4 writes its bridge line here)."""


class RoleClient(ClientTransport):
    """The client side of a transport whose engines need nothing but their role and randomness
    (obfs2, obfs3): ``make(initiator, rng)`` builds one."""

    def __init__(self, make: Callable[[bool, Rng], Engine], rng: Rng = os.urandom) -> None:
        self._make = make
        self._rng = rng

    def new_engine(self, destination: Address | None) -> Engine:
        return self._make(True, self._rng)


class RoleServer(ServerTransport):
    """The server side of such a transport: no state, no arguments to publish."""

    def __init__(self, make: Callable[[bool, Rng], Engine], rng: Rng = os.urandom) -> None:
        self._make = make
        self._rng = rng

    def new_engine(self) -> Engine:
        return self._make(False, self._rng)


@dataclass(frozen=True)
class ServerContext:
    """What a server transport may use besides its options."""

    state_dir: Path
    rng: Rng = field(default=os.urandom)
    clock: Clock = field(default=time.time)


@dataclass(frozen=True)
class TransportSpec:
    """A transport's name and its two option parsers (each raises ``OptionsError``)."""

    name: str
    client: Callable[[RawOptions], ClientTransport]
    server: Callable[[RawOptions, ServerContext], ServerTransport]
    #: Whether the transport carries the application's destination itself (shadow).
    carries_destination: bool = False
