"""The Shadowsocks (SOCKS5-style) target address header: ATYP || address || BE16 port.

ATYP 1 = IPv4 (4 bytes), 3 = host name (1 length byte, 1..255 bytes), 4 = IPv6 (16 bytes).
"""

from __future__ import annotations

import socket

from ...net.addr import Address

ATYP_IPV4 = 1
ATYP_DOMAIN = 3
ATYP_IPV6 = 4


def encode_address(address: Address) -> bytes:
    """The header for ``address``; raises ``ValueError`` for a name that cannot be sent."""
    host, port = address
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} is outside 0-65535")
    port_bytes = port.to_bytes(2, "big")
    literal = host.strip("[]")
    for family, atyp in ((socket.AF_INET, ATYP_IPV4), (socket.AF_INET6, ATYP_IPV6)):
        try:
            return bytes((atyp,)) + socket.inet_pton(family, literal) + port_bytes
        except OSError:
            pass
    try:
        name = host.encode("ascii")
    except UnicodeEncodeError:
        try:
            name = host.encode("idna")
        except UnicodeError:
            raise ValueError(f"host name {host!r} cannot be encoded") from None
    if not 1 <= len(name) <= 255:
        raise ValueError(f"host name {host!r} must be 1 to 255 bytes long")
    return bytes((ATYP_DOMAIN, len(name))) + name + port_bytes


def decode_address(data: bytes) -> tuple[Address, int] | None:
    """Parse a header at the start of ``data``: ``(address, header length)``.

    ``None`` when the header is malformed or incomplete (unknown ATYP, empty name, too short).
    """
    if not data:
        return None
    atyp = data[0]
    if atyp == ATYP_IPV4:
        end = 7
        host = socket.inet_ntop(socket.AF_INET, data[1:5]) if len(data) >= end else ""
    elif atyp == ATYP_IPV6:
        end = 19
        host = socket.inet_ntop(socket.AF_INET6, data[1:17]) if len(data) >= end else ""
    elif atyp == ATYP_DOMAIN and len(data) >= 2 and data[1] > 0:
        end = 2 + data[1] + 2
        host = data[2 : end - 2].decode("ascii", errors="backslashreplace")
    else:
        return None
    if len(data) < end:
        return None
    return Address(host, int.from_bytes(data[end - 2 : end], "big")), end
