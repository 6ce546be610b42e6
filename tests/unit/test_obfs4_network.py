"""obfs4 over real loopback sockets through the library API (our client and our server)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import ptdispatch
from tests.peers.managed import echo_handler as _echo
from tests.peers.managed import exchange as _exchange


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Finalize leftover sockets (a lingering probe connection outlives its test) right away,
    not at some later garbage collection."""
    yield
    gc.collect()


async def test_probe_gets_silence_and_others_are_served(tmp_path: Path) -> None:
    """A prober's bytes get no answer and the connection stays open (the linger); others still work."""
    server = await ptdispatch.start_server(_echo, "obfs4", "127.0.0.1", 0, state_dir=tmp_path)
    port = server.sockets[0].getsockname()[1]
    cert = ptdispatch.server_transport("obfs4", {}, tmp_path).smethod_args()["cert"]
    loop = asyncio.get_running_loop()
    probe = socket.create_connection(("127.0.0.1", port))
    try:
        probe.setblocking(False)
        await loop.sock_sendall(probe, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(9000))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(probe, 100), 1.0)  # no answer, no close
        reader, writer = await asyncio.wait_for(
            ptdispatch.open_connection("obfs4", ("127.0.0.1", port), {"cert": cert}), 10
        )
        await asyncio.wait_for(_exchange(reader, writer, 50_000), 10)
    finally:
        probe.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("iat_mode", [0, 1, 2])
async def test_our_client_to_our_server(tmp_path: Path, iat_mode: int) -> None:
    server = await ptdispatch.start_server(_echo, "obfs4", "127.0.0.1", 0, {"iat-mode": iat_mode}, state_dir=tmp_path)
    args = ptdispatch.server_transport("obfs4", {}, tmp_path).smethod_args()
    assert args["iat-mode"] == str(iat_mode)
    try:
        reader, writer = await asyncio.wait_for(
            ptdispatch.open_connection("obfs4", server.sockets[0].getsockname()[:2], args), 10
        )
        await asyncio.wait_for(_exchange(reader, writer, 200_000), 30)
    finally:
        server.close()
        await server.wait_closed()


async def test_wrong_cert_times_out_silently(tmp_path: Path) -> None:
    """A client with the wrong cert gets no reply at all (the server keeps waiting for a mark)."""
    server = await ptdispatch.start_server(_echo, "obfs4", "127.0.0.1", 0, state_dir=tmp_path)
    other = ptdispatch.server_transport("obfs4", {}, tmp_path / "other").smethod_args()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ptdispatch.open_connection("obfs4", server.sockets[0].getsockname()[:2], other), 1.5)
    finally:
        server.close()
        await server.wait_closed()
