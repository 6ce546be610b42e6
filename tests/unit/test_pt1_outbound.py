"""TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6: the source address of direct dials and of dials to an upstream proxy
(never for loopback)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.net.upstream import OutboundBind, UpstreamProxy, open_socket

V4, V6 = socket.AF_INET, socket.AF_INET6


@pytest.mark.parametrize(
    ("bind", "family", "ip", "source"),
    [
        (OutboundBind("203.0.113.4", "2001:db8::4"), V4, "198.51.100.1", ("203.0.113.4", 0)),
        (OutboundBind("203.0.113.4", "2001:db8::4"), V6, "2001:db8::99", ("2001:db8::4", 0)),
        (OutboundBind("203.0.113.4", None), V6, "2001:db8::99", None),
        (OutboundBind(None, "2001:db8::4"), V4, "198.51.100.1", None),
        (OutboundBind("203.0.113.4", "2001:db8::4"), V4, "127.0.0.1", None),  # loopback: ignored
        (OutboundBind("203.0.113.4", "2001:db8::4"), V4, "127.9.9.9", None),
        (OutboundBind("203.0.113.4", "2001:db8::4"), V6, "::1", None),
    ],
)
def test_source_choice(bind: OutboundBind, family: int, ip: str, source: tuple[str, int] | None) -> None:
    assert bind.source(family, ip) == source


class Forced(OutboundBind):
    """Binds even for loopback, so the bind itself can be seen on 127.0.0.0/8."""

    def source(self, family: int, ip: str) -> tuple[str, int] | None:
        return (self.v4, 0) if family == V4 and self.v4 else None


async def _peer_of_dial(bind: OutboundBind | None, scheme: str | None = None) -> str:
    """The source address the listener sees, dialled directly or as the upstream proxy ``scheme``."""
    peers: list[str] = []

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if scheme is None:
        sock = await open_socket(Address("127.0.0.1", port), None, timeout=5, bind=bind)
        sock.close()
    else:  # the listener closes at once: the dial fails, once it has been seen
        proxy = UpstreamProxy.parse(f"{scheme}://127.0.0.1:{port}")
        with pytest.raises(OSError):
            await open_socket(Address("example.com", 443), proxy, timeout=5, bind=bind)
    for _ in range(100):
        if peers:
            break
        await asyncio.sleep(0.01)
    server.close()
    return peers[0]


async def test_open_socket_binds_the_chosen_source() -> None:
    assert await _peer_of_dial(Forced("127.0.0.2")) == "127.0.0.2"


async def test_loopback_destination_is_not_bound() -> None:
    # 203.0.113.4 is not ours: binding to it would fail, so success shows it was not used.
    assert await _peer_of_dial(OutboundBind("203.0.113.4")) == "127.0.0.1"


async def test_unusable_source_fails_the_dial() -> None:
    with pytest.raises(OSError):
        await open_socket(Address("127.0.0.1", 9), None, timeout=5, bind=Forced("203.0.113.4"))


@pytest.mark.parametrize("scheme", ["socks5", "socks4a", "http"])
async def test_connection_to_the_proxy_binds_the_chosen_source(scheme: str) -> None:
    """pt-spec: the bind address holds for all outgoing packets, but those to loopback."""
    assert await _peer_of_dial(Forced("127.0.0.2"), scheme) == "127.0.0.2"


@pytest.mark.parametrize("scheme", ["socks5", "socks4a", "http"])
async def test_loopback_proxy_is_not_bound(scheme: str) -> None:
    assert await _peer_of_dial(OutboundBind("203.0.113.4"), scheme) == "127.0.0.1"
