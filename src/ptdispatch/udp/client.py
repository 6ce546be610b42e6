"""Client side of the UDP modes (placeholder until implemented)."""

from __future__ import annotations

from ..frontends.dialer import ClientMethod
from ..net.addr import Address


class UdpListener:
    """A bound UDP socket feeding a pool of transport connections."""

    address: Address

    def close(self) -> None:
        raise NotImplementedError


async def start_udp_client(method: ClientMethod, listen: Address, *, stun: bool) -> UdpListener:
    raise OSError("UDP modes are not implemented yet")
