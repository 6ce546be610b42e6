"""meek through the real command: our client process against our server process (socks5,
transparent-TCP, transparent-UDP), several connections at once, 1 MiB echoes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.test_udp_e2e import (
    Dispatcher,
    exchange,
    hostport,
    smethod_args,
    source,
    spawn,
    udp_echo,
    until_connected,
)
from tests.peers.managed import echo_server
from tests.peers.obfs4proxy import echo_roundtrip, socks5_connect

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def meek_server(target_port: int, state: Path, mode: str = "transparent-TCP",
                      options: dict[str, str] | None = None) -> AsyncIterator[tuple[Dispatcher, str]]:  # fmt: skip
    server = await spawn(
        "-server", "-transport", "meeklite", "-mode", mode, "-bindaddr", "meeklite-127.0.0.1:0",
        "-target", f"127.0.0.1:{target_port}", "-state", str(state / "server"), "-options", json.dumps(options or {}),
    )  # fmt: skip
    try:
        await server.read_until("SMETHODS DONE")
        words = server.first("SMETHOD")
        host, port = hostport(words[2])
        yield server, f"http://{host}:{port}/"
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def meek_client(state: Path, mode: str, options: Mapping[str, object]) -> AsyncIterator[tuple[str, int]]:
    client = await spawn(
        "-client", "-transport", "meeklite", "-mode", mode, "-options", json.dumps(options), "-state", str(state),
    )  # fmt: skip
    try:
        await client.read_until("CMETHODS DONE")
        words = client.first("CMETHOD")
        assert words[1:3] == ["meeklite", mode], client.lines
        yield hostport(words[3])
    finally:
        await client.stop()


async def test_socks5_per_connection_url_and_concurrent_echoes(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    try:
        async with meek_server(echo_port, tmp_path) as (_, url), meek_client(tmp_path / "c", "socks5", {}) as socks:

            async def one(size: int) -> None:
                reader, writer = await socks5_connect(socks, ("192.0.2.20", 80), {"url": url})
                try:
                    await echo_roundtrip(reader, writer, size, timeout=60)
                finally:
                    writer.close()

            await asyncio.gather(one(1 << 20), *(one(50_000 * (i + 1)) for i in range(5)))
    finally:
        echo.close()


async def test_socks5_dead_server_is_a_socks_error(tmp_path: Path) -> None:
    from python_socks import ProxyError

    async with meek_client(tmp_path, "socks5", {"url": "http://127.0.0.1:9/"}) as socks:
        with pytest.raises(ProxyError):
            await socks5_connect(socks, ("192.0.2.20", 80), timeout=20)


async def test_transparent_tcp(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    try:
        async with meek_server(echo_port, tmp_path) as (_, url):
            options = {"url": url}  # the url names the server: no serverAddress needed
            async with meek_client(tmp_path / "c", "transparent-TCP", options) as listen:
                reader, writer = await asyncio.open_connection(*listen)
                try:
                    await echo_roundtrip(reader, writer, 1 << 20, timeout=60)
                finally:
                    writer.close()
    finally:
        echo.close()


async def test_upstream_refused_ends_the_stream(tmp_path: Path) -> None:
    async with meek_server(9, tmp_path) as (_, url):  # port 9 on loopback: connection refused
        options = {"url": url, "serverAddress": "192.0.2.20:80"}
        async with meek_client(tmp_path / "c", "transparent-TCP", options) as listen:
            reader, writer = await asyncio.open_connection(*listen)
            writer.write(b"hello")
            with pytest.raises(ConnectionResetError):  # the failed meek dial resets the application's connection
                await asyncio.wait_for(reader.read(), 20)
            writer.close()


async def test_smethod_args_publish_url_and_front(tmp_path: Path) -> None:
    options = {"url": "https://meek.example/x", "front": "cdn.example"}
    async with meek_server(9, tmp_path, options=options) as (server, _):
        words = server.first("SMETHOD")
        assert smethod_args(words) == options
        assert all(line.split(" ")[0] in ("VERSION", "SMETHOD", "SMETHODS", "LOG", "STATUS") for line in server.lines)


async def test_transparent_udp(tmp_path: Path) -> None:
    with udp_echo() as echo_port:
        async with meek_server(echo_port, tmp_path, "transparent-UDP") as (_, url):
            options = {"url": url}
            async with meek_client(tmp_path / "c", "transparent-UDP", options) as address:
                sock = source()
                try:
                    await until_connected(sock, address, b"probe")
                    payloads = [bytes([i]) * (100 + i * 7) for i in range(100)]
                    await exchange(sock, address, payloads, window=8)
                finally:
                    sock.close()


async def test_garbage_leaves_stdout_to_protocol_lines(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    try:
        async with meek_server(echo_port, tmp_path) as (server, url):
            host, port = hostport(url.removeprefix("http://").rstrip("/"))
            for garbage in (
                b"GARBAGE\r\n\r\n",
                b"\x16\x03\x01" + bytes(200),
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(garbage)
                assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 Bad Request\r\n")
                writer.close()
            options = {"url": url, "serverAddress": "192.0.2.20:80"}
            async with meek_client(tmp_path / "c", "transparent-TCP", options) as listen:
                reader, writer = await asyncio.open_connection(*listen)
                await echo_roundtrip(reader, writer, 10_000, timeout=20)
                writer.close()
            await server.stop()
            assert server.process.stdout is not None
            rest = (await server.process.stdout.read()).decode().splitlines()
        keywords = {"VERSION", "SMETHOD", "SMETHODS", "LOG", "STATUS"}
        assert all(line.split(" ")[0] in keywords for line in server.lines + rest), server.lines + rest
    finally:
        echo.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_64_mib_each_way(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    try:
        async with meek_server(echo_port, tmp_path) as (_, url):
            options = {"url": url, "serverAddress": "192.0.2.20:80"}
            async with meek_client(tmp_path / "c", "transparent-TCP", options) as listen:
                reader, writer = await asyncio.open_connection(*listen)
                try:
                    await echo_roundtrip(reader, writer, 64 << 20, timeout=200)
                finally:
                    writer.close()
    finally:
        echo.close()


async def test_socks5_json_parameter_block(tmp_path: Path) -> None:
    echo, echo_port = await echo_server()
    try:
        async with meek_server(echo_port, tmp_path) as (_, url), meek_client(tmp_path / "c", "socks5", {}) as socks:
            reader, writer = await asyncio.open_connection(*socks)
            block = json.dumps({"url": url}).encode()
            writer.write(
                b"\x05\x01\x09" + len(block).to_bytes(4, "big") + block + b"\x05\x01\x00\x01\xc0\x00\x02\x14\x00\x50"
            )
            assert await asyncio.wait_for(reader.readexactly(2), 10) == b"\x05\x09"
            reply = await asyncio.wait_for(reader.readexactly(10), 10)
            assert reply[:2] == b"\x05\x00", reply
            writer.write(b"json-configured")
            assert await asyncio.wait_for(reader.readexactly(15), 10) == b"json-configured"
            writer.close()
    finally:
        echo.close()


async def test_ignored_utls_is_a_log_warning(tmp_path: Path) -> None:
    """The library's own warnings (Python logging) reach the parent as LOG lines."""
    options = {"url": "http://127.0.0.1:9/", "utls": "HelloChrome_Auto"}
    client = await spawn(
        "-client", "-transport", "meeklite", "-mode", "socks5", "-ipcLogLevel", "WARN",
        "-options", json.dumps(options), "-state", str(tmp_path),
    )  # fmt: skip
    try:
        await client.read_until("CMETHODS DONE")
        warning = "LOG WARN meek: option utls=HelloChrome_Auto is ignored"
        assert any(line.startswith(warning) for line in client.lines), client.lines
    finally:
        await client.stop()
