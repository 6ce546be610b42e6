"""ptdispatch: a Pluggable Transports 3.0 dispatcher, and the transports it dispatches.

The transports are usable from asyncio code directly; see :mod:`ptdispatch.api`.
"""

from .api import Address, Timeouts, client_transport, connect, listen, open_connection, server_transport, start_server
from .errors import ConfigError, OptionsError, PTError, RemoteProtocolError

__all__ = [
    "Address",
    "ConfigError",
    "OptionsError",
    "PTError",
    "RemoteProtocolError",
    "Timeouts",
    "client_transport",
    "connect",
    "listen",
    "open_connection",
    "server_transport",
    "start_server",
]
__version__ = "0.1.0"
