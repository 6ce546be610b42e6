"""Connect to tor's Extended ORPort and run the handshake with asyncio.

:func:`open_extorport` returns a connected, authenticated, non-blocking socket plus any OR bytes
tor already sent after OKAY; the caller splices it to the transport connection, for example with
``loop.create_connection(factory, sock=sock)``, relaying ``leftover`` first.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from ..net.addr import Address
from .protocol import ExtOrClient, ExtOrPortTimeout

#: Bytes asked of each recv during the handshake (tor's messages are tiny).
_RECV_SIZE = 65536


async def open_extorport(
    address: Address,
    cookie: bytes,
    transport_name: str,
    client_addr: Address | str | None,
    timeout: float = 30.0,
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> tuple[socket.socket, bytes]:
    """Connect to the ExtORPort at ``address`` and complete SAFE_COOKIE, USERADDR, TRANSPORT, DONE.

    Returns ``(sock, leftover)``: the socket (non-blocking, now carrying the OR stream) and the
    bytes tor sent after OKAY (usually ``b""``).  On any failure the socket is closed and:
    ``OSError`` if the port cannot be reached, :class:`~.protocol.ExtOrPortDenied` on DENY,
    :class:`~.protocol.ExtOrPortAuthError` on a wrong cookie, :class:`~.protocol.ExtOrPortTimeout`
    after ``timeout`` seconds, :class:`~.protocol.ExtOrPortError` for anything else tor got wrong
    (all of them are ``RemoteProtocolError``, hence ``ConnectionError``).  Bad arguments raise
    ``LocalProtocolError`` before any connection is made.
    """
    client = ExtOrClient(cookie, transport_name, client_addr, rng)
    loop = asyncio.get_running_loop()
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            sock = await _connect(loop, address)
            try:
                await _handshake(loop, sock, client)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        if not deadline.expired():
            raise
        raise ExtOrPortTimeout(
            f"ExtORPort {address} did not complete the handshake within {timeout:g}s ({client.state.value})"
        ) from None
    return sock, client.leftover


async def _connect(loop: asyncio.AbstractEventLoop, address: Address) -> socket.socket:
    """A connected non-blocking TCP socket to ``address`` (each resolved address tried in turn)."""
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"cannot resolve ExtORPort address {address}")
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise ConnectionError(f"cannot connect to the ExtORPort at {address}: {error.strerror or error}") from error


async def _handshake(loop: asyncio.AbstractEventLoop, sock: socket.socket, client: ExtOrClient) -> None:
    while not client.done:
        client.receive_data(await loop.sock_recv(sock, _RECV_SIZE))
        out = client.data_to_send()
        if out:
            await loop.sock_sendall(sock, out)
