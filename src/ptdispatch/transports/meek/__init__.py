"""``meeklite`` / ``meek_lite`` / ``meek``: HTTP request-response tunnelling, as Tor's meek.

The client (:mod:`.client`) speaks like obfs4proxy 0.0.14's meek_lite; the server
(:mod:`.server`) answers like Tor's meek-server v0.38.0.  Wire facts: ``meek-wire-notes.md``.
"""

from __future__ import annotations

from ..base import RawOptions, ServerContext, TransportSpec
from .client import MeekClient
from .options import CLIENT_KEYS, NAME, SERVER_KEYS, ClientOptions, ServerOptions
from .server import MeekServer, Tuning


def _client(raw: RawOptions) -> MeekClient:
    return MeekClient(ClientOptions.parse(raw))


def _server(raw: RawOptions, ctx: ServerContext) -> MeekServer:
    # Configured timeouts (ServerContext.timeouts, tests) bound how long a new session's first
    # answer waits for the application (its upstream dial): meek's one handshake-like wait.
    tuning = Tuning(dial_wait=ctx.timeouts.handshake) if ctx.timeouts is not None else None
    return MeekServer(ServerOptions.parse(raw), tuning, name=ctx.name or NAME)


SPEC = TransportSpec(
    name=NAME,
    client=_client,
    server=_server,
    client_keys=CLIENT_KEYS,
    server_keys=SERVER_KEYS,
    names_servers=True,  # the url names the server: no serverAddress, and the CONNECT address is not a server
    dials_without_destination=True,  # nor a destination: the session's first POST need not wait for it
    sessions_span_connections=True,  # a session's POSTs may come over any connection: one worker serves it
)

__all__ = ["SPEC", "ClientOptions", "MeekClient", "MeekServer", "ServerOptions", "Tuning"]
