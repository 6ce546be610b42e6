"""Optimizer through the real command, over two real ptdispatch servers of different transports.

An obfs4 server forwards to a TCP (or UDP) echo that answers with the tag ``A`` first, a shadow
server to one that answers with ``B``: the tag tells which child carried each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from python_socks import ProxyError

from tests.conftest import need_binary
from tests.peers.dispatcher import Dispatcher, running, stop
from tests.peers.obfs4proxy import socks5_connect
from tests.peers.procs import free_port, process

SHADOW = {"password": "optimizer e2e", "cipherName": "aes-256-gcm"}
STRATEGIES = ["first", "random", "rotate", "track", "minimizeDialDuration"]
CONNECTIONS = 8


async def tagged_echo(tag: bytes) -> tuple[asyncio.Server, int]:
    """A TCP server that writes ``tag`` and then echoes until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(tag)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.contextmanager
def tagged_udp_echo(tag: bytes) -> Iterator[int]:
    """A UDP echo (in a thread) that answers each message with its byte 8 replaced by ``tag``
    (for STUN messages, the first byte of the transaction ID: the answer is still STUN)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data[:8] + tag + data[9:], peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        done.set()
        thread.join(2)
        sock.close()


@dataclass
class Servers:
    obfs4: Dispatcher
    shadow: Dispatcher

    def children(self) -> list[dict[str, object]]:
        host, port = self.obfs4.method("SMETHOD", "obfs4")
        shost, sport = self.shadow.method("SMETHOD", "shadow")
        return [
            {"name": "obfs4", "config": {"serverAddress": f"{host}:{port}", **self.obfs4.smethod_args("obfs4")}},
            # target: the address header for modes without a destination (the server forwards to its -target)
            {"name": "shadow", "config": {"serverAddress": f"{shost}:{sport}", **SHADOW, "target": "127.0.0.1:9"}},
        ]

    async def stop_first(self) -> None:
        await stop(self.obfs4.process)


@contextlib.asynccontextmanager
async def servers(tmp: Path, targets: tuple[int, int], mode: str = "transparent-TCP") -> AsyncIterator[Servers]:
    """An obfs4 server forwarding to ``targets[0]``, a shadow server forwarding to ``targets[1]``."""
    common = ["-server", "-mode", mode, "-state"]
    async with (
        running(*common, str(tmp / "obfs4"), "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0",
                "-target", f"127.0.0.1:{targets[0]}") as obfs4,
        running(*common, str(tmp / "shadow"), "-transport", "shadow", "-bindaddr", "shadow-127.0.0.1:0",
                "-target", f"127.0.0.1:{targets[1]}", "-options", json.dumps({"shadow": SHADOW})) as shadow,
    ):  # fmt: skip
        yield Servers(obfs4, shadow)


def client(servers: Servers, strategy: str, mode: str, tmp: Path):  # type: ignore[no-untyped-def]
    options = {"transports": servers.children(), "strategy": strategy}
    return running(
        "-client", "-transport", "Optimizer", "-mode", mode, "-options", json.dumps(options), "-state", str(tmp / "c")
    )


async def one_tcp(cmethod: tuple[str, int], *, socks: bool) -> bytes:
    """One connection through the client: returns the tag of the echo that answered."""
    if socks:
        reader, writer = await socks5_connect(cmethod, ("127.0.0.1", 9), timeout=20)
    else:
        reader, writer = await asyncio.open_connection(*cmethod)
    try:
        tag = await asyncio.wait_for(reader.readexactly(1), 20)
        payload = bytes(range(256)) * 64
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 20) == payload
    finally:
        writer.close()
    return tag


def check_choices(strategy: str, tags: bytes) -> None:
    assert set(tags) <= set(b"AB"), tags
    if strategy in ("first", "track"):
        assert tags == b"A" * len(tags)  # nothing failed: always the first child
    elif strategy == "rotate":
        assert tags == b"AB" * (len(tags) // 2)
    elif strategy == "minimizeDialDuration":
        assert tags[:2] == b"AB"  # each child measured once, in order
    elif strategy == "random":
        assert len(tags) >= CONNECTIONS  # both children: random picks the same one 2x8 times with p = 2^-7


@pytest.mark.parametrize("mode", ["socks5", "transparent-TCP"])
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_strategy_every_connection(tmp_path: Path, strategy: str, mode: str) -> None:
    a, a_port = await tagged_echo(b"A")
    b, b_port = await tagged_echo(b"B")
    try:
        async with servers(tmp_path, (a_port, b_port)) as both, client(both, strategy, mode, tmp_path) as c:
            cmethod = c.method("CMETHOD", "Optimizer")
            socks = mode == "socks5"
            count = CONNECTIONS * (2 if strategy == "random" else 1)
            tags = b"".join([await one_tcp(cmethod, socks=socks) for _ in range(count)])
            check_choices(strategy, tags)
            if strategy == "random":
                assert set(tags) == set(b"AB"), tags
            await both.stop_first()
            after = b"".join([await one_tcp(cmethod, socks=socks) for _ in range(CONNECTIONS)])
            assert after == b"B" * CONNECTIONS  # the first child's server is gone: every connection fails over
    finally:
        a.close()
        b.close()


BINDING = bytes.fromhex("000100002112a442")


def message(session: int, i: int) -> bytes:
    """A STUN binding request (valid in both UDP modes) with byte 8 left for the echo's tag."""
    return BINDING + b"\x00" + session.to_bytes(4, "big") + i.to_bytes(7, "big")


async def udp_session(address: tuple[str, int], session: int) -> bytes:
    """Open a UDP session from a fresh source port; returns the tag of the echo that answered."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    probe = message(session, 0)
    try:
        for _ in range(100):  # the first datagrams are dropped while the session dials
            sock.sendto(probe, address)
            with contextlib.suppress(TimeoutError):
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.2)
                tag = reply[8:9]
                assert reply == probe[:8] + tag + probe[9:], reply
                for i in range(1, 20):  # the session now carries datagrams both ways
                    sent = message(session, i)
                    sock.sendto(sent, address)
                    while (got := await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)) == reply:
                        pass  # a late answer to an earlier probe
                    assert got == sent[:8] + tag + sent[9:]
                return tag
        raise AssertionError("the UDP session never came up")
    finally:
        sock.close()


@pytest.mark.parametrize("mode", ["transparent-UDP", "STUN"])
async def test_udp_modes_rotate_and_fail_over(tmp_path: Path, mode: str) -> None:
    with tagged_udp_echo(b"A") as a_port, tagged_udp_echo(b"B") as b_port:
        async with servers(tmp_path, (a_port, b_port), mode) as both, client(both, "rotate", mode, tmp_path) as c:
            address = c.method("CMETHOD", "Optimizer")
            assert [await udp_session(address, i) for i in range(4)] == [b"A", b"B", b"A", b"B"]
            await both.stop_first()
            assert [await udp_session(address, 10 + i) for i in range(3)] == [b"B"] * 3


async def test_server_side_is_smethod_error(tmp_path: Path) -> None:
    async with running("-server", "-transports", "Optimizer,plain", "-bindaddr",
                       "Optimizer-127.0.0.1:0,plain-127.0.0.1:0", "-target", "127.0.0.1:9",
                       "-state", str(tmp_path)) as server:  # fmt: skip
        assert server.method("SMETHOD", "plain")
    assert any(e.startswith("SMETHOD-ERROR Optimizer ") and "client-only" in e for e in server.errors), server.errors


async def test_bad_child_is_cmethod_error_naming_it(tmp_path: Path) -> None:
    bad = {"serverAddress": "127.0.0.1:9", "cert": "short"}
    options = {"transports": [{"name": "plain", "config": {"serverAddress": "127.0.0.1:9"}},
                              {"name": "obfs4", "config": bad}]}  # fmt: skip
    async with running("-transports", "Optimizer,plain", "-state", str(tmp_path),
                       "-options", json.dumps({"optimizer": options, "plain": {}})) as c:  # fmt: skip
        assert c.method("CMETHOD", "plain")
    assert any(e.startswith("CMETHOD-ERROR Optimizer transports[1] (obfs4)") for e in c.errors), c.errors


async def test_per_connection_json_block_keeps_the_strategy_state(tmp_path: Path) -> None:
    """No -options: every connection brings the same Optimizer options (SOCKS5 method 0x09); the
    client parsed from them is kept, so rotate still alternates."""
    a, a_port = await tagged_echo(b"A")
    b, b_port = await tagged_echo(b"B")
    try:
        async with servers(tmp_path, (a_port, b_port)) as both, running("-transport", "Optimizer") as c:
            block = json.dumps({"transports": both.children(), "strategy": "rotate"}).encode()
            tags = b""
            for _ in range(4):
                reader, writer = await asyncio.open_connection(*c.method("CMETHOD", "Optimizer"))
                writer.write(b"\x05\x01\x09" + struct.pack(">I", len(block)) + block)
                writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x09")
                assert await asyncio.wait_for(reader.readexactly(12), 20) == b"\x05\x09\x05\x00\x00\x01" + bytes(6)
                tags += await asyncio.wait_for(reader.readexactly(1), 20)
                writer.close()
            assert tags == b"ABAB"
    finally:
        a.close()
        b.close()


async def test_every_child_dials_through_the_upstream_proxy(tmp_path: Path) -> None:
    """-proxy carries every child's connection: through microsocks both children work, and once
    the proxy is gone no connection gets through although both servers are up."""
    a, a_port = await tagged_echo(b"A")
    b, b_port = await tagged_echo(b"B")
    port = free_port()
    try:
        async with servers(tmp_path, (a_port, b_port)) as both:
            options = json.dumps({"transports": both.children(), "strategy": "rotate"})
            with process([need_binary("microsocks"), "-i", "127.0.0.1", "-p", str(port)], port) as proxy:
                proxy_url = f"socks5://127.0.0.1:{port}"
                async with running("-transport", "Optimizer", "-proxy", proxy_url, "-options", options) as c:
                    cmethod = c.method("CMETHOD", "Optimizer")
                    assert [await one_tcp(cmethod, socks=True) for _ in range(2)] == [b"A", b"B"]
                    proxy.terminate()
                    proxy.wait(5)
                    with pytest.raises(ProxyError):
                        await one_tcp(cmethod, socks=True)
    finally:
        a.close()
        b.close()
