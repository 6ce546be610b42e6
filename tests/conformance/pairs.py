"""The conformance suite's one table: how to build a client/server pair of each transport.

A new transport joins the suite by adding a row to :data:`PAIRS` (the suite fails for a
registered transport without one).  A row says how to configure the server, which client options
to add to the server's ``SMETHOD`` arguments, and which properties the wire format allows the
suite to check (a stream cipher cannot notice a stream cut in two; a server that speaks first is
not silent).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.transports import registry
from ptdispatch.transports.base import ClientTransport, ServerContext, ServerTransport, Timeouts

#: Short timeouts for every server in the suite (configuration, through ServerContext).
HANDSHAKE = 1.0
LINGER = 0.6
TIMEOUTS = Timeouts(handshake=HANDSHAKE, linger=LINGER)


@dataclass(frozen=True)
class Pair:
    """How to build and what to expect of one client/server pair."""

    transport: str
    server_options: Mapping[str, object] = field(default_factory=dict)
    #: Client options besides the server's SMETHOD arguments.
    client_options: Mapping[str, object] = field(default_factory=dict)
    #: The destination the client carries (transports that carry one need it).
    destination: Address | None = None
    #: The connection has a handshake: EOF or garbage before it completes is an error.
    handshake: bool = True
    #: Frames are authenticated: a stream cut inside one is detected at EOF.
    framed: bool = False
    #: The server writes its own handshake before reading anything (so it is not silent).
    server_speaks_first: bool = False
    #: A probe meets silence for the linger (else the server may close at once).
    probe_lingers: bool = False

    def server(self, state_dir: Path) -> ServerTransport:
        spec = registry.lookup(self.transport)
        assert spec is not None
        return spec.make_server(self.server_options, ServerContext(state_dir=state_dir, timeouts=TIMEOUTS))

    def client(self, server: ServerTransport) -> ClientTransport:
        spec = registry.lookup(self.transport)
        assert spec is not None
        return spec.make_client({**server.smethod_args(), **self.client_options})

    def min_linger(self) -> float:
        """The shortest silence a lingering probe must meet (obfs4's close delay may be 0)."""
        return LINGER if self.transport == "shadow" else HANDSHAKE if self.transport == "obfs4" else 0.0


SHADOW = {"password": "conformance", "cipherName": "aes-128-gcm"}

PAIRS: dict[str, Pair] = {
    "plain": Pair("plain", handshake=False),
    "obfs2": Pair("obfs2", server_speaks_first=True),
    "obfs3": Pair("obfs3", server_speaks_first=True),
    "obfs4": Pair("obfs4", framed=True, probe_lingers=True),
    "obfs4-iat1": Pair("obfs4", {"iat-mode": "1"}, framed=True, probe_lingers=True),
    "obfs4-iat2": Pair("obfs4", {"iat-mode": "2"}, framed=True, probe_lingers=True),
    "shadow": Pair("shadow", SHADOW, SHADOW, destination=Address("192.0.2.1", 80), framed=True, probe_lingers=True),
}

_DIR = Path(tempfile.mkdtemp(prefix="ptdispatch-conformance-"))
_SERVERS: dict[str, ServerTransport] = {}


def shared_server(pair_id: str) -> ServerTransport:
    """One server per pair for the engine-level properties (obfs4 state is slow to make)."""
    if pair_id not in _SERVERS:
        _SERVERS[pair_id] = PAIRS[pair_id].server(Path(tempfile.mkdtemp(dir=_DIR)))
    return _SERVERS[pair_id]


def pair_ids(*, where: str = "") -> list[object]:
    """Every row (as pytest params), filtered by a Pair attribute that must be true."""
    return [pytest.param(key, id=key) for key, pair in PAIRS.items() if not where or getattr(pair, where)]
