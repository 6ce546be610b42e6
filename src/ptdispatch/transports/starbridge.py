"""``Starbridge``: the Starburst SMTP toneburst, then DarkStar, on one TCP connection.

Options as Operator's: client ``serverAddress`` + ``serverPublicKey``; server ``serverPrivateKey``
(optional: a generated key is kept in the state directory) + ``serverAddress`` (the public
``IP:PORT``); ``transport`` and ``bindAddress`` are accepted and ignored.  The server publishes
``serverPublicKey`` in ``SMETHOD ... ARGS:``, so a client needs only that and ``serverAddress``.
See :mod:`ptdispatch.transports.starburst` and :mod:`ptdispatch.transports.darkstar`.
"""

from __future__ import annotations

from .base import RawOptions, ServerContext, TransportSpec
from .darkstar.transport import DarkStarClient, DarkStarServer, client_from, server_from

NAME = "Starbridge"
IGNORED = frozenset({"transport", "bindAddress"})


def _client(raw: RawOptions) -> DarkStarClient:
    return client_from(raw, NAME, toned=True)


def _server(raw: RawOptions, ctx: ServerContext) -> DarkStarServer:
    return server_from(raw, ctx, NAME, toned=True)


SPEC = TransportSpec(
    name=NAME,
    client=_client,
    server=_server,
    client_keys=frozenset({"serverPublicKey"}) | IGNORED,
    server_keys=frozenset({"serverPrivateKey"}) | IGNORED,
)
