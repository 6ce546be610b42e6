"""shadow against shadowsocks-libev 3.3.5, both directions, every AEAD cipher ss-libev has.

(a) our client -> ``ss-server`` -> loopback echo server;
(b) SOCKS5 client -> ``ss-local`` -> our server (echoing);
(c) our server refuses a replay of bytes that ``ss-local`` sent (captured by a loopback tap).

ss-libev closes both directions when one side sends FIN (no half-close), so these tests read the
whole echo before closing instead of writing EOF first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from python_socks.async_.asyncio import Proxy

import ptdispatch
from ptdispatch.api import listen
from ptdispatch.transports.shadow import ServerTimeouts, ShadowServer, parse_config
from tests.conftest import need_binary
from tests.peers.managed import echo_handler as echo
from tests.peers.managed import echo_server
from tests.peers.procs import free_port

pytestmark = pytest.mark.interop

SS_CIPHERS = ["chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm", "aes-192-gcm", "xchacha20-ietf-poly1305"]
PASSWORD = "interop-pw"
BIG = 64 << 20


async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


@contextlib.asynccontextmanager
async def ss_process(binary: str, *args: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run an ss-libev program until the block ends; stop it by its PID."""
    proc = await asyncio.create_subprocess_exec(
        need_binary(binary), *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_port(port)
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
    """Write ``size`` random bytes and read them all back, concurrently."""
    blob = os.urandom(size)

    async def send() -> None:
        view = memoryview(blob)
        for offset in range(0, size, 1 << 20):
            writer.write(view[offset : offset + (1 << 20)])
            await writer.drain()

    sender = asyncio.create_task(send())
    got = bytearray()
    try:
        while len(got) < size:
            data = await asyncio.wait_for(reader.read(1 << 20), 20)
            assert data, f"closed after {len(got)} of {size} bytes"
            got += data
        await sender
    finally:
        sender.cancel()
    assert got == blob
    writer.close()


async def via_ss_server(cipher: str, size: int) -> None:
    echo_srv, echo_port = await echo_server()
    port = free_port()
    try:
        async with ss_process("ss-server", "-s", "127.0.0.1", "-p", str(port), "-k", PASSWORD, "-m", cipher, port=port):
            reader, writer = await ptdispatch.open_connection(
                "shadow",
                f"127.0.0.1:{port}",
                {"password": PASSWORD, "cipherName": cipher},
                destination=f"127.0.0.1:{echo_port}",
            )
            await exchange(reader, writer, size)
    finally:
        echo_srv.close()


async def through_ss_local(cipher: str, size: int, server_port: int) -> None:
    local = free_port()
    args = ("-s", "127.0.0.1", "-p", str(server_port), "-l", str(local), "-k", PASSWORD, "-m", cipher)
    async with ss_process("ss-local", *args, port=local):
        sock = await Proxy.from_url(f"socks5://127.0.0.1:{local}").connect(
            dest_host="example.com", dest_port=443, timeout=10
        )
        reader, writer = await asyncio.open_connection(sock=sock)
        await exchange(reader, writer, size)


async def via_ss_local(cipher: str, size: int) -> None:
    options = {"password": PASSWORD, "cipherName": cipher.upper()}
    server = await ptdispatch.start_server(echo, "shadow", "127.0.0.1", 0, options)
    try:
        await through_ss_local(cipher, size, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("cipher", SS_CIPHERS)
async def test_our_client_to_ss_server(cipher: str) -> None:
    await via_ss_server(cipher, 3 << 20)


@pytest.mark.parametrize("cipher", SS_CIPHERS)
async def test_ss_local_to_our_server(cipher: str) -> None:
    await via_ss_local(cipher, 3 << 20)


@pytest.mark.slow
async def test_our_client_to_ss_server_64_mib() -> None:
    await via_ss_server("chacha20-ietf-poly1305", BIG)


@pytest.mark.slow
async def test_ss_local_to_our_server_64_mib() -> None:
    await via_ss_local("chacha20-ietf-poly1305", BIG)


async def test_ss_local_stream_replayed_to_our_server() -> None:
    cipher = "chacha20-ietf-poly1305"
    errors: list[Exception] = []
    config = parse_config({"password": PASSWORD, "cipherName": cipher})
    transport = ShadowServer(config, bounds=ServerTimeouts(handshake=(1.0, 1.0), linger=(1.0, 1.0)))

    def factory() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), echo)

    server = await listen(transport, "127.0.0.1", 0, factory, on_error=errors.append)
    target_port = server.sockets[0].getsockname()[1]
    recorded = bytearray()

    async def tap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(1 << 16):
                    if record:
                        recorded.extend(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    tap_server = await asyncio.start_server(tap, "127.0.0.1", 0)
    try:
        await through_ss_local(cipher, 100_000, tap_server.sockets[0].getsockname()[1])
        assert len(recorded) > 100_000
        assert errors == []
        # The replay: same bytes, straight to our server.  No echo may come back.
        reader, writer = await asyncio.open_connection("127.0.0.1", target_port)
        writer.write(bytes(recorded))
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(1), 5) == b""
        writer.close()
        assert len(errors) == 1
        assert "salt" in str(errors[0])
    finally:
        tap_server.close()
        server.close()
        await server.wait_closed()


async def test_raw_key_option_matches_ss_server_key_flag() -> None:
    key = "3-_" + "A" * 40  # URL-safe base64 of a 32-byte key, as ss-libev prints them
    echo_srv, echo_port = await echo_server()
    port = free_port()
    try:
        args = ("-s", "127.0.0.1", "-p", str(port), "--key", key, "-m", "aes-256-gcm")
        async with ss_process("ss-server", *args, port=port):
            reader, writer = await ptdispatch.open_connection(
                "shadow",
                f"127.0.0.1:{port}",
                {"key": key, "cipherName": "AEAD_AES_256_GCM"},
                destination=f"127.0.0.1:{echo_port}",
            )
            await exchange(reader, writer, 100_000)
    finally:
        echo_srv.close()
