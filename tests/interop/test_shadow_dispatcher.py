"""The ptdispatch command with the shadow transport against shadowsocks-libev 3.3.5.

* socks5 mode with ``serverAddress``: the SOCKS CONNECT host name goes into the address header,
  so our client works as an ss-local (like ``curl --socks5-hostname``) in front of ``ss-server``;
* transparent-TCP mode: the header carries the client option ``target``;
* server mode behind ``ss-local``: forwards to its own -target whatever the header says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from python_socks.async_.asyncio import Proxy

from tests.conftest import need_binary
from tests.interop.test_shadow_ss_libev import ss_process
from tests.peers.dispatcher import running
from tests.peers.managed import echo_server
from tests.peers.procs import free_port

pytestmark = pytest.mark.interop

CIPHER = "aes-128-gcm"
PASSWORD = "dispatcher-pw"
BODY = b"hello through shadow\n"


@contextlib.asynccontextmanager
async def ptdispatch(*args: str, state: Path) -> AsyncIterator[tuple[str, int]]:
    """Run ``python -m ptdispatch ARGS``; yield the address of its first METHOD line."""
    async with running(*args, "-state", str(state)) as disp:
        line = next((line for line in disp.lines if line.startswith(("CMETHOD ", "SMETHOD "))), None)
        assert line is not None, f"no METHOD line: {disp.lines}"
        words = line.split(" ")
        host, _, port = words[3 if words[0] == "CMETHOD" else 2].rpartition(":")
        yield host.strip("[]"), int(port)


async def http_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> bytes:
    writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    return response


async def test_socks_hostname_through_our_client_and_ss_server(tmp_path: Path) -> None:
    web, web_port = await http_server()
    ss_port = free_port()
    options = {"password": PASSWORD, "cipherName": CIPHER, "serverAddress": f"127.0.0.1:{ss_port}"}
    try:
        async with (
            ss_process("ss-server", "-s", "127.0.0.1", "-p", str(ss_port), "-k", PASSWORD, "-m", CIPHER, port=ss_port),
            ptdispatch("-client", "-transport", "shadow", "-options", json.dumps(options), state=tmp_path) as socks,
        ):
            proxy = Proxy.from_url(f"socks5://{socks[0]}:{socks[1]}", rdns=True)
            sock = await proxy.connect(dest_host="localhost", dest_port=web_port, timeout=10)
            response = await http_get(*await asyncio.open_connection(sock=sock), host="localhost")
            assert response.startswith(b"HTTP/1.0 200") and response.endswith(BODY)
    finally:
        web.close()


async def test_transparent_tcp_uses_target_option(tmp_path: Path) -> None:
    web, web_port = await http_server()
    ss_port = free_port()
    options = {
        "password": PASSWORD,
        "cipherName": CIPHER,
        "serverAddress": f"127.0.0.1:{ss_port}",
        "target": f"127.0.0.1:{web_port}",
    }
    args = ("-client", "-transport", "shadow", "-mode", "transparent-TCP", "-options", json.dumps(options))
    try:
        async with (
            ss_process("ss-server", "-s", "127.0.0.1", "-p", str(ss_port), "-k", PASSWORD, "-m", CIPHER, port=ss_port),
            ptdispatch(*args, state=tmp_path) as listen,
        ):
            response = await http_get(*await asyncio.open_connection(*listen), host="example")
            assert response.endswith(BODY)
    finally:
        web.close()


async def test_ss_local_through_our_dispatcher_server(tmp_path: Path) -> None:
    need_binary("ss-local")
    echo, echo_port = await echo_server()
    options = json.dumps({"password": PASSWORD, "cipherName": CIPHER})
    args = ("-server", "-transport", "shadow", "-bindaddr", "shadow-127.0.0.1:0", "-target", f"127.0.0.1:{echo_port}")
    try:
        async with ptdispatch(*args, "-options", options, state=tmp_path) as server:
            local = free_port()
            ss_args = ("-s", "127.0.0.1", "-p", str(server[1]), "-l", str(local), "-k", PASSWORD, "-m", CIPHER)
            async with ss_process("ss-local", *ss_args, port=local):
                proxy = Proxy.from_url(f"socks5://127.0.0.1:{local}")
                sock = await proxy.connect(dest_host="192.0.2.1", dest_port=25, timeout=10)  # not obeyed
                reader, writer = await asyncio.open_connection(sock=sock)
                blob = os.urandom(1 << 20)
                writer.write(blob)
                assert await asyncio.wait_for(reader.readexactly(len(blob)), 20) == blob
                writer.close()
    finally:
        echo.close()


@pytest.mark.parametrize("side", ["-client", "-server"])
async def test_unknown_cipher_is_a_method_error_naming_our_ciphers(tmp_path: Path, side: str) -> None:
    # PT 3.0 reports METHOD-ERROR lines on stderr (PT 1.0 would put them on stdout for tor).
    options = json.dumps({"password": PASSWORD, "cipherName": "rc4-md5"})
    args = [side, "-transport", "shadow", "-options", options, "-state", str(tmp_path)]
    if side == "-server":
        args += ["-bindaddr", "shadow-127.0.0.1:0", "-target", "127.0.0.1:9"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ptdispatch", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            while line := (await proc.stderr.readline()).decode():
                if "METHOD-ERROR" in line:
                    break
        assert line.startswith(("CMETHOD-ERROR shadow", "SMETHOD-ERROR shadow")), line
        for name in ("rc4-md5", "chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm", "AEAD_CHACHA20_POLY1305"):
            assert name in line
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
        await proc.wait()
