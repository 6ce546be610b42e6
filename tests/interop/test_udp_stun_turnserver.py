"""A real STUN/TURN server (coturn's turnserver) and a real STUN client (`stun`, Debian's stun-client)
through our client and server in STUN mode, all on loopback (the TURN relay's peers too: hence
``--allow-loopback-peers``)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import need_binary
from tests.e2e.test_udp_e2e import dispatchers, recv, source

pytestmark = pytest.mark.interop

MAGIC = 0x2112A442


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (turnserver listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port: int = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def binding_request(txid: bytes) -> bytes:
    return struct.pack("!HHI", 0x0001, 0, MAGIC) + txid


def allocate_request(txid: bytes) -> bytes:
    requested_transport = struct.pack("!HHB3x", 0x0019, 4, 17)  # REQUESTED-TRANSPORT: UDP
    return struct.pack("!HHI", 0x0003, len(requested_transport), MAGIC) + txid + requested_transport


def xor_peer_address(host: str, port: int) -> bytes:
    """An XOR-PEER-ADDRESS value (RFC 8656 section 18.3) for an IPv4 peer."""
    address = int(ipaddress.IPv4Address(host)) ^ MAGIC
    return struct.pack("!xBH", 1, port ^ (MAGIC >> 16)) + address.to_bytes(4, "big")


def channel_bind_request(txid: bytes, channel: int, peer: tuple[str, int]) -> bytes:
    number = struct.pack("!HHH2x", 0x000C, 4, channel)  # CHANNEL-NUMBER
    address = xor_peer_address(*peer)
    attrs = number + struct.pack("!HH", 0x0012, len(address)) + address  # XOR-PEER-ADDRESS
    return struct.pack("!HHI", 0x0009, len(attrs), MAGIC) + txid + attrs


def channel_data(channel: int, data: bytes, *, padded: bool = False) -> bytes:
    """A TURN ChannelData message (RFC 8656 section 12.4); padding to 4 is optional over UDP."""
    message = struct.pack("!HH", channel, len(data)) + data
    return message + bytes(-len(message) % 4) if padded else message


def attributes(message: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 20
    while pos + 4 <= len(message):
        kind, size = struct.unpack_from("!HH", message, pos)
        out[kind] = message[pos + 4 : pos + 4 + size]
        pos += 4 + size + (-size % 4)
    return out


def xor_address(value: bytes) -> tuple[str, int]:
    family, xport = struct.unpack_from("!xBH", value)
    assert family == 1
    port = xport ^ (MAGIC >> 16)
    address = int.from_bytes(value[4:8], "big") ^ MAGIC
    return str(ipaddress.IPv4Address(address)), port


@contextlib.asynccontextmanager
async def turnserver(workdir: Path) -> AsyncIterator[int]:
    binary = need_binary("turnserver")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
        "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--no-auth", "--log-file=stdout", "--simple-log",
        f"--pidfile={workdir / 'turnserver.pid'}", f"--db={workdir / 'turndb'}",
        "--min-port=49152", "--max-port=65535",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_answering(port)
        yield port
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_answering(port: int, timeout: float = 15.0) -> None:
    sock = source()
    try:
        async with asyncio.timeout(timeout):
            while True:
                sock.sendto(binding_request(os.urandom(12)), ("127.0.0.1", port))
                with contextlib.suppress(TimeoutError):
                    await recv(sock, 0.2)
                    return
    finally:
        sock.close()


async def ask(sock: socket.socket, address: tuple[str, int], request: bytes) -> bytes:
    """Send ``request`` until its answer comes (the first is dropped while the session is Waiting)."""
    for _ in range(100):
        sock.sendto(request, address)
        with contextlib.suppress(TimeoutError):
            while True:
                answer = await recv(sock, 0.2)
                if answer[8:20] == request[8:20]:
                    return answer
    raise AssertionError("no answer from the TURN server")


@pytest.mark.parametrize("transport", ["plain", "obfs3"])
async def test_binding_request_through_our_client_and_server(transport: str, tmp_path: Path) -> None:
    async with turnserver(tmp_path) as turn_port, dispatchers(transport, "STUN", turn_port, tmp_path) as pair:
        sock = source()
        try:
            txid = os.urandom(12)
            answer = await ask(sock, pair.address, binding_request(txid))
        finally:
            sock.close()
    kind, length, magic = struct.unpack_from("!HHI", answer)
    assert kind == 0x0101, f"not a Binding success response: {answer.hex()}"  # Binding success
    assert magic == MAGIC and answer[8:20] == txid and len(answer) == 20 + length
    host, port = xor_address(attributes(answer)[0x0020])  # XOR-MAPPED-ADDRESS
    assert host == "127.0.0.1" and port > 0  # the server dispatcher's socket, as the TURN server sees it


async def test_turn_allocate_through_our_client_and_server(tmp_path: Path) -> None:
    async with turnserver(tmp_path) as turn_port, dispatchers("plain", "STUN", turn_port, tmp_path) as pair:
        sock = source()
        try:
            txid = os.urandom(12)
            answer = await ask(sock, pair.address, allocate_request(txid))
        finally:
            sock.close()
    kind = struct.unpack_from("!H", answer)[0]
    assert kind == 0x0103, f"not an Allocate success response: {answer.hex()}"
    relayed = xor_address(attributes(answer)[0x0016])  # XOR-RELAYED-ADDRESS
    assert relayed[0] == "127.0.0.1"


async def recv_channel_data(sock: socket.socket) -> bytes:
    """The next ChannelData to ``sock``, past late answers to retransmitted requests."""
    while (data := await recv(sock, 5))[0] & 0xC0 != 0x40:
        pass
    return data


@pytest.mark.parametrize("transport", ["plain", "obfs3"])
async def test_turn_channel_data_through_our_client_and_server(transport: str, tmp_path: Path) -> None:
    """Allocate, ChannelBind, then ChannelData both ways between the application and a peer of the
    relay, as WebRTC does once a channel is bound: intact, whatever padding each length needs."""
    channel = 0x4000
    async with turnserver(tmp_path) as turn_port, dispatchers(transport, "STUN", turn_port, tmp_path) as pair:
        app, peer = source(), source()
        try:
            answer = await ask(app, pair.address, allocate_request(os.urandom(12)))
            assert struct.unpack_from("!H", answer)[0] == 0x0103, f"not an Allocate success: {answer.hex()}"
            relayed = xor_address(attributes(answer)[0x0016])  # XOR-RELAYED-ADDRESS
            answer = await ask(app, pair.address, channel_bind_request(os.urandom(12), channel, peer.getsockname()))
            assert struct.unpack_from("!H", answer)[0] == 0x0109, f"not a ChannelBind success: {answer.hex()}"
            for i, size in enumerate((1, 6, 7, 8, 15, 1200)):  # 3, 2, 1, 0, 1 and 0 bytes of padding
                data = os.urandom(size)
                app.sendto(channel_data(channel, data, padded=bool(i % 2)), pair.address)
                assert await recv(peer, 5) == data, f"{size} bytes to the peer"
                reply = os.urandom(size)
                peer.sendto(reply, relayed)
                # coturn sends ChannelData unpadded over UDP, and so does our client.
                assert await recv_channel_data(app) == channel_data(channel, reply), f"{size} bytes from the peer"
        finally:
            app.close()
            peer.close()


async def test_stun_client_cli_through_our_client_and_server(tmp_path: Path) -> None:
    """Debian's `stun` 0.97 speaks RFC 3489 (no magic cookie): accepted with udpStunClassic on both sides."""
    stun = need_binary("stun")
    classic = {"udpStunClassic": True}
    async with (
        turnserver(tmp_path) as turn_port,
        dispatchers("plain", "STUN", turn_port, tmp_path, client_options=classic, server_options=classic) as pair,
    ):
        # The first request from each of its two ports creates a session and is dropped (Table 1);
        # `stun`'s full test (no test number) retransmits, so the answers come.
        address = f"{pair.address[0]}:{pair.address[1]}"
        process = await asyncio.create_subprocess_exec(
            stun, address, "-v", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(process.communicate(), 40)
    text = out.decode(errors="replace")
    assert "Received message of type 257" in text, text  # a Binding success response came back
    assert "MappedAddress = 127.0.0.1:" in text and "test I = 1" in text, text
