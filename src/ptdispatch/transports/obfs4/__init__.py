"""obfs4, byte-compatible with obfs4proxy 0.0.14 / lyrebird.

:mod:`.handshake` (ntor + Elligator 2 messages), :mod:`.framing` (secretbox frames),
:mod:`.probdist` (seeded padding / delay shapes), :mod:`.engine` (client and server engines),
:mod:`.state` (``obfs4_state.json`` / ``obfs4_bridgeline.txt``), :mod:`.options`.
"""

from __future__ import annotations

from ..base import TransportSpec
from .options import CLIENT_KEYS, SERVER_OPTION_KEYS, Obfs4Client, Obfs4Server, parse_client, parse_server

SPEC = TransportSpec(
    name="obfs4",
    client=parse_client,
    server=parse_server,
    client_keys=CLIENT_KEYS,
    server_keys=SERVER_OPTION_KEYS,
)

__all__ = ["SPEC", "Obfs4Client", "Obfs4Server"]
