"""tor's Extended ORPort, client side: cookie file, sans-IO SAFE_COOKIE handshake, asyncio helper."""

from .client import open_extorport
from .cookie import COOKIE_HEADER, parse_cookie_file, read_cookie_file
from .protocol import (
    ExtOrClient,
    ExtOrPortAuthError,
    ExtOrPortDenied,
    ExtOrPortError,
    ExtOrPortTimeout,
    State,
    format_useraddr,
)

__all__ = [
    "COOKIE_HEADER",
    "ExtOrClient",
    "ExtOrPortAuthError",
    "ExtOrPortDenied",
    "ExtOrPortError",
    "ExtOrPortTimeout",
    "State",
    "format_useraddr",
    "open_extorport",
    "parse_cookie_file",
    "read_cookie_file",
]
