"""The DarkStar handshake computations, canonical x-only form (notes section 2.3).

Swift ShadowSwift ``afcbbfb``, Kotlin ``4399ac6`` and Go go-shadowsocks2 <= v1.1.15 agree on these;
Go v1.2.x hashes the 66-byte server key in three places and cannot even talk to itself, so it is
not followed.  ECDH values are the fixed 32-byte X coordinate (Go strips leading zeros; about 1
handshake in 128 between Go and anyone else fails because of that).

::

    C->S  X(C) || SHA256(e_static || SID || X(K) || X(C) || "DarkStar" || "client")
    S->C  X(S) || SHA256(e_static || SID || X(K) || X(C) || "DarkStar" || "server")
    key_c2s = SHA256(e_ephem || e_static || SID || X(C) || X(S) || "DarkStar" || "server")
    key_s2c = SHA256(e_ephem || e_static || SID || X(C) || X(S) || "DarkStar" || "client")

with ``e_static = ECDH(c, K) = ECDH(k, C)`` and ``e_ephem = ECDH(c, S) = ECDH(s, C)``.
"""

from __future__ import annotations

import hashlib
import ipaddress

from cryptography.hazmat.primitives.asymmetric import ec

from ...net.addr import Address
from .keys import PrivateKey, PublicKey

LABEL = b"DarkStar"
CLIENT = b"client"
SERVER = b"server"
HELLO_SIZE = 64  # X (32) || confirmation code (32), each way

_ECDH = ec.ECDH()


def server_identifier(address: Address | None) -> bytes:
    """``IP || BE16(port)`` for an IP literal (4 bytes for IPv4, as every Operator peer;
    16 for IPv6, as Kotlin); empty for a host name or no address (as Go's nil SID)."""
    if address is None:
        return b""
    try:
        ip = ipaddress.ip_address(address.host.strip("[]"))
    except ValueError:
        return b""
    return ip.packed + address.port.to_bytes(2, "big")


def ecdh(private: PrivateKey, public: PublicKey) -> bytes:
    """The 32-byte X coordinate of ``private * public``."""
    return private.exchange(_ECDH, public)


def confirmation_code(e_static: bytes, sid: bytes, server_x: bytes, client_x: bytes, role: bytes) -> bytes:
    """The client's (``role=CLIENT``) or the server's (``role=SERVER``) confirmation code."""
    return hashlib.sha256(e_static + sid + server_x + client_x + LABEL + role).digest()


def session_keys(e_ephem: bytes, e_static: bytes, sid: bytes, client_x: bytes, server_x: bytes) -> tuple[bytes, bytes]:
    """``(key_c2s, key_s2c)``; the label names the destination of the traffic."""
    common = e_ephem + e_static + sid + client_x + server_x + LABEL
    return hashlib.sha256(common + SERVER).digest(), hashlib.sha256(common + CLIENT).digest()
