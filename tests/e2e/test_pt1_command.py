"""The real command as tor's managed proxy (PT 1.0): env in, lines out, bytes through.

Error lines go to stdout here (tor reads only stdout), after ``VERSION 1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ptdispatch.extorport import COOKIE_HEADER
from ptdispatch.transports import registry
from tests.conftest import CI
from tests.peers.dispatcher import Dispatcher, run_once, running
from tests.peers.fake_tor import COOKIE, DENY, OKAY, FakeTor, fake_tor
from tests.peers.managed import echo_server

pytestmark = pytest.mark.timeout(60)


def pt1(state: Path, **extra: str) -> dict[str, str]:
    return {"TOR_PT_MANAGED_TRANSPORT_VER": "1", "TOR_PT_STATE_LOCATION": str(state), **extra}


def tor_args(args: dict[str, str]) -> bytes:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("=", "\\=").replace(";", "\\;")

    return ";".join(f"{esc(k)}={esc(v)}" for k, v in args.items()).encode()


async def socks5(port: int, dest: tuple[str, int], args: dict[str, str] | None = None) -> asyncio.StreamReader:
    """Connect through our SOCKS5 port as tor does; returns the reader (the writer is ``reader.writer``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    encoded = tor_args(args) if args else b""
    writer.write(b"\x05\x02\x00\x02" if encoded else b"\x05\x01\x00")
    assert await reader.readexactly(2) == (b"\x05\x02" if encoded else b"\x05\x00")
    if encoded:
        user, password = encoded[:255], encoded[255:] or b"\x00"
        writer.write(bytes((1, len(user))) + user + bytes((len(password),)) + password)
        assert await reader.readexactly(2) == b"\x01\x00"
    writer.write(b"\x05\x01\x00\x01" + bytes(map(int, dest[0].split("."))) + struct.pack(">H", dest[1]))
    reply = await reader.readexactly(10)
    assert reply[:2] == b"\x05\x00", reply
    reader.writer = writer  # type: ignore[attr-defined]
    return reader


async def socks4a(port: int, dest: tuple[str, int], args: dict[str, str] | None = None) -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    userid = tor_args(args) if args else b""
    writer.write(
        b"\x04\x01" + struct.pack(">H", dest[1]) + b"\x00\x00\x00\x01" + userid + b"\x00" + dest[0].encode() + b"\x00"
    )
    reply = await reader.readexactly(8)
    assert reply[:2] == b"\x00\x5a", reply
    reader.writer = writer  # type: ignore[attr-defined]
    return reader


async def echo_through(reader: asyncio.StreamReader, size: int = 200_000) -> None:
    writer: asyncio.StreamWriter = reader.writer  # type: ignore[attr-defined]
    blob = os.urandom(size)
    writer.write(blob)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(size), 20) == blob
    writer.close()


@contextlib.asynccontextmanager
async def echo() -> AsyncIterator[int]:
    server, port = await echo_server()
    try:
        yield port
    finally:
        server.close()


def address(disp: Dispatcher, keyword: str, name: str) -> tuple[str, int]:
    return disp.method(keyword, name)


# --- bad environments --------------------------------------------------------------------------------
async def test_version_error_on_stdout_exit_78(tmp_path: Path) -> None:
    code, out, err = await run_once(
        env=pt1(tmp_path, TOR_PT_MANAGED_TRANSPORT_VER="2,1a", TOR_PT_CLIENT_TRANSPORTS="plain")
    )
    assert (code, out) == (78, ["VERSION-ERROR no-version"])
    assert not [line for line in err if "ERROR" in line]


CLIENT = {"TOR_PT_CLIENT_TRANSPORTS": "plain"}
SERVER = {"TOR_PT_SERVER_TRANSPORTS": "plain", "TOR_PT_SERVER_BINDADDR": "plain-127.0.0.1:0"}
ORPORT = {"TOR_PT_ORPORT": "127.0.0.1:1"}
EXT = "TOR_PT_EXTENDED_SERVER_PORT"


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({**CLIENT, "TOR_PT_EXIT_ON_STDIN_CLOSE": "true"}, "TOR_PT_EXIT_ON_STDIN_CLOSE"),
        ({"TOR_PT_CLIENT_TRANSPORTS": "pl ain"}, "TOR_PT_CLIENT_TRANSPORTS"),
        ({**CLIENT, "TOR_PT_OUTBOUND_BIND_ADDRESS_V4": "::1"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V4"),
        ({**CLIENT, "TOR_PT_OUTBOUND_BIND_ADDRESS_V6": "127.0.0.1"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V6"),
        ({**SERVER, **ORPORT, "TOR_PT_SERVER_BINDADDR": "plain127.0.0.1:0"}, "TOR_PT_SERVER_BINDADDR"),
        (SERVER, "TOR_PT_ORPORT"),
        ({**SERVER, "TOR_PT_ORPORT": "127.0.0.1:port"}, "TOR_PT_ORPORT"),
        ({**SERVER, **ORPORT, "TOR_PT_SERVER_TRANSPORT_OPTIONS": "plain"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
        ({**SERVER, "TOR_PT_EXTENDED_SERVER_PORT": "127.0.0.1:1"}, "TOR_PT_AUTH_COOKIE_FILE"),
        ({**SERVER, EXT: "h:1", "TOR_PT_AUTH_COOKIE_FILE": "/c"}, EXT),
        ({**SERVER, **CLIENT, **ORPORT}, "TOR_PT_CLIENT_TRANSPORTS"),
    ],
)  # fmt: skip
async def test_env_error_on_stdout_exit_64(tmp_path: Path, extra: dict[str, str], variable: str) -> None:
    code, out, _ = await run_once(env=pt1(tmp_path, **extra))
    assert code == 64
    assert out[0] == "VERSION 1"
    assert out[1].startswith(f"ENV-ERROR {variable}: "), out
    assert len(out) == 2


async def test_relative_state_location(tmp_path: Path) -> None:
    code, out, _ = await run_once(env=pt1(Path("state"), TOR_PT_CLIENT_TRANSPORTS="plain"))
    assert code == 64 and out[1].startswith("ENV-ERROR TOR_PT_STATE_LOCATION: ")


async def test_proxy_error_exit_69(tmp_path: Path) -> None:
    code, out, _ = await run_once(env=pt1(tmp_path, TOR_PT_CLIENT_TRANSPORTS="plain", TOR_PT_PROXY="socks5://host:1"))
    assert code == 69
    assert out[0] == "VERSION 1" and out[1].startswith("PROXY-ERROR ")


@pytest.mark.parametrize("userinfo", ["alice:", ":hunter2"])
async def test_socks5_proxy_credentials_with_an_empty_part_exit_69(tmp_path: Path, userinfo: str) -> None:
    environ = pt1(tmp_path, TOR_PT_CLIENT_TRANSPORTS="plain", TOR_PT_PROXY=f"socks5://{userinfo}@127.0.0.1:1080")
    code, out, _ = await run_once(env=environ)
    assert code == 69
    assert out[0] == "VERSION 1" and out[1].startswith("PROXY-ERROR a socks5 proxy's ") and "cannot be empty" in out[1]
    assert "alice" not in out[1] and "hunter2" not in out[1]


async def test_socks4_proxy_refused_exit_69(tmp_path: Path) -> None:
    environ = pt1(tmp_path, TOR_PT_CLIENT_TRANSPORTS="plain", TOR_PT_PROXY="socks4://127.0.0.1:1080")
    code, out, _ = await run_once(env=environ)
    assert code == 69
    assert out[:2] == ["VERSION 1", "PROXY-ERROR SOCKS 4 upstream proxies unsupported; use socks4a, socks5 or http"]


@pytest.mark.parametrize("content", [b"! Extended ORPort Auth Cookie !\r" + COOKIE, COOKIE_HEADER + COOKIE[:31]])
async def test_bad_cookie_file(tmp_path: Path, content: bytes) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_bytes(content)
    environ = pt1(
        tmp_path, TOR_PT_SERVER_TRANSPORTS="plain", TOR_PT_SERVER_BINDADDR="plain-127.0.0.1:0",
        TOR_PT_ORPORT="127.0.0.1:1", TOR_PT_EXTENDED_SERVER_PORT="127.0.0.1:2", TOR_PT_AUTH_COOKIE_FILE=str(cookie),
    )  # fmt: skip
    code, out, _ = await run_once(env=environ)
    assert code == 64
    assert out[1].startswith("ENV-ERROR TOR_PT_AUTH_COOKIE_FILE")


# --- running ------------------------------------------------------------------------------------------
async def test_server_plain_to_orport(tmp_path: Path) -> None:
    async with echo() as orport:
        environ = pt1(
            tmp_path / "state", TOR_PT_SERVER_TRANSPORTS="plain,nonesuch", TOR_PT_SERVER_BINDADDR="plain-127.0.0.1:0",
            TOR_PT_ORPORT=f"127.0.0.1:{orport}", TOR_PT_EXTENDED_SERVER_PORT="", TOR_PT_EXIT_ON_STDIN_CLOSE="1",
            PTDISPATCH_IPC_LOG_LEVEL="INFO",
        )  # fmt: skip
        async with running(env=environ) as server:
            assert server.lines[0] == "VERSION 1"
            assert server.lines[1].startswith("STATUS TYPE=version IMPLEMENTATION=ptdispatch VERSION=")
            assert server.lines[-1] == "SMETHODS DONE"
            assert not any(line.startswith("SMETHOD-ERROR") for line in server.lines)  # unknown: ignored
            host, port = address(server, "SMETHOD", "plain")
            reader, writer = await asyncio.open_connection(host, port)
            reader.writer = writer  # type: ignore[attr-defined]
            await echo_through(reader)
            assert (tmp_path / "state").is_dir()
            log = [line for line in server.lines if line.startswith("LOG ")]
            assert log and all(line.startswith('LOG SEVERITY=info MESSAGE="') for line in log)
            assert server.process.stdin is not None
            server.process.stdin.close()  # TOR_PT_EXIT_ON_STDIN_CLOSE=1: a graceful exit
            assert await asyncio.wait_for(server.process.wait(), 15) == 0


@pytest.mark.parametrize("role", ["CLIENT", "SERVER"])
async def test_a_repeated_transport_gets_one_method_line(tmp_path: Path, role: str) -> None:
    """Each transport once, by the name first given (in any letter case), with a WARN line for each
    repeat; aliases are names of their own (tor matches a bridge's transport by its exact name)."""
    environ = pt1(tmp_path / "state", PTDISPATCH_IPC_LOG_LEVEL="WARN")
    keyword = "CMETHOD" if role == "CLIENT" else "SMETHOD"
    environ[f"TOR_PT_{role}_TRANSPORTS"] = "obfs3,plain,OBFS3,obfs3,meek,meek_lite,Plain"
    if role == "SERVER":
        environ["TOR_PT_ORPORT"] = "127.0.0.1:9"
        environ["TOR_PT_SERVER_BINDADDR"] = ",".join(
            f"{n}-127.0.0.1:0" for n in ("obfs3", "plain", "meek", "meek_lite")
        )
    async with running(env=environ) as dispatcher:
        names = [line.split(" ")[1] for line in dispatcher.lines if line.startswith(f"{keyword} ")]
        assert names == ["obfs3", "plain", "meek", "meek_lite"], dispatcher.lines
        assert not any(line.startswith(f"{keyword}-ERROR") for line in dispatcher.lines), dispatcher.lines
        warned = [line for line in dispatcher.lines if line.startswith("LOG SEVERITY=warning")]
        assert warned == [
            "LOG SEVERITY=warning MESSAGE=\"transport 'OBFS3' is 'obfs3' again (names match in any letter case):"
            " started once, as 'obfs3'\"",
            "LOG SEVERITY=warning MESSAGE=\"transport 'obfs3' is listed more than once: started once\"",
            "LOG SEVERITY=warning MESSAGE=\"transport 'Plain' is 'plain' again (names match in any letter case):"
            " started once, as 'plain'\"",
        ]


@contextlib.asynccontextmanager
async def obfs3_pair(tmp_path: Path, orport: int) -> AsyncIterator[tuple[int, int]]:
    server_env = pt1(
        tmp_path / "s", TOR_PT_SERVER_TRANSPORTS="obfs3", TOR_PT_SERVER_BINDADDR="obfs3-127.0.0.1:0",
        TOR_PT_ORPORT=f"127.0.0.1:{orport}",
    )  # fmt: skip
    async with running(env=server_env) as server:
        _, sport = address(server, "SMETHOD", "obfs3")
        async with running(env=pt1(tmp_path / "c", TOR_PT_CLIENT_TRANSPORTS="obfs3")) as client:
            assert client.lines[:1] == ["VERSION 1"]
            words = next(line for line in client.lines if line.startswith("CMETHOD ")).split()
            assert words[:3] == ["CMETHOD", "obfs3", "socks5"]
            yield address(client, "CMETHOD", "obfs3")[1], sport


async def test_obfs3_client_and_server_socks5_and_socks4a(tmp_path: Path) -> None:
    async with echo() as orport, obfs3_pair(tmp_path, orport) as (cport, sport):
        await echo_through(await socks5(cport, ("127.0.0.1", sport)))
        await echo_through(await socks4a(cport, ("localhost", sport)))
        reader, writer = await asyncio.open_connection("127.0.0.1", cport)  # plain SOCKS4 to an IP
        writer.write(b"\x04\x01" + struct.pack(">H", sport) + bytes((127, 0, 0, 1)) + b"\x00")
        assert (await reader.readexactly(8))[:2] == b"\x00\x5a"
        reader.writer = writer  # type: ignore[attr-defined]
        await echo_through(reader, 1000)


async def test_socks4_refused_destination_gets_0x5b(tmp_path: Path) -> None:
    async with echo() as orport, obfs3_pair(tmp_path, orport) as (cport, _):
        probe, probe_port = await echo_server()
        probe.close()
        await probe.wait_closed()  # a port nobody listens on
        reader, writer = await asyncio.open_connection("127.0.0.1", cport)
        writer.write(b"\x04\x01" + struct.pack(">H", probe_port) + bytes((127, 0, 0, 1)) + b"\x00")
        assert (await asyncio.wait_for(reader.read(8), 15))[:2] == b"\x00\x5b"
        writer.close()


def _need_obfs4() -> None:
    try:
        registry.lookup("obfs4")
    except ImportError as exc:
        if CI:
            pytest.fail(f"obfs4 cannot be loaded: {exc}")
        pytest.skip(f"obfs4 is not available yet: {exc}")


async def test_obfs4_args_from_smethod_through_socks5_and_socks4(tmp_path: Path) -> None:
    _need_obfs4()
    async with echo() as orport:
        server_env = pt1(
            tmp_path / "s", TOR_PT_SERVER_TRANSPORTS="obfs4", TOR_PT_SERVER_BINDADDR="obfs4-127.0.0.1:0",
            TOR_PT_ORPORT=f"127.0.0.1:{orport}", TOR_PT_SERVER_TRANSPORT_OPTIONS="obfs4:iat-mode=1",
        )  # fmt: skip
        async with running(env=server_env) as server:
            _, sport = address(server, "SMETHOD", "obfs4")
            args = server.smethod_args("obfs4")
            assert args["iat-mode"] == "1" and len(args["cert"]) == 70
            assert "obfs4_bridgeline.txt" in os.listdir(tmp_path / "s")
            bridge = (tmp_path / "s" / "obfs4_bridgeline.txt").read_text().splitlines()[-1]
            assert bridge == f"Bridge obfs4 127.0.0.1:{sport} <FINGERPRINT> cert={args['cert']} iat-mode=1"
            async with running(env=pt1(tmp_path / "c", TOR_PT_CLIENT_TRANSPORTS="obfs4")) as client:
                _, cport = address(client, "CMETHOD", "obfs4")
                await echo_through(await socks5(cport, ("127.0.0.1", sport), args))
                await echo_through(await socks4a(cport, ("127.0.0.1", sport), args), 20_000)


async def test_bad_obfs4_state_file_costs_obfs4_alone(tmp_path: Path) -> None:
    _need_obfs4()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "obfs4_state.json").write_bytes(b'{"node-id":"\xff"}')  # not UTF-8
    server_env = pt1(
        tmp_path / "s", TOR_PT_SERVER_TRANSPORTS="obfs4,obfs3",
        TOR_PT_SERVER_BINDADDR="obfs4-127.0.0.1:0,obfs3-127.0.0.1:0", TOR_PT_ORPORT="127.0.0.1:1",
    )  # fmt: skip
    async with running(env=server_env) as server:
        assert server.lines[-1] == "SMETHODS DONE"
        assert address(server, "SMETHOD", "obfs3")
        errors = [line for line in server.lines if line.startswith("SMETHOD-ERROR ")]
        assert len(errors) == 1 and errors[0].startswith("SMETHOD-ERROR obfs4 ") and "not UTF-8" in errors[0]


# --- ExtORPort from TOR_PT_EXTENDED_SERVER_PORT -----------------------------------------------------------
class ScriptedTor(FakeTor):
    """A FakeTor answering each connection with the next reply (and cookie) from a script."""

    def __init__(self, script: list[tuple[bytes, bytes | None]]) -> None:
        super().__init__()
        self.script = script

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reply, self.server_cookie = self.script.pop(0) if self.script else (OKAY, None)
        self.received.clear()
        await super().handle(reader, writer)


async def test_extended_orport_deny_and_wrong_cookie_close_only_that_connection(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_bytes(COOKIE_HEADER + COOKIE)
    tor = ScriptedTor([(DENY, None), (OKAY, b"\x55" * 32), (OKAY, None)])
    async with fake_tor(tor) as ext:
        environ = pt1(
            tmp_path / "state", TOR_PT_SERVER_TRANSPORTS="plain", TOR_PT_SERVER_BINDADDR="plain-127.0.0.1:0",
            TOR_PT_ORPORT="127.0.0.1:1", TOR_PT_EXTENDED_SERVER_PORT=str(ext), TOR_PT_AUTH_COOKIE_FILE=str(cookie),
        )  # fmt: skip
        async with running(env=environ) as server:
            host, port = address(server, "SMETHOD", "plain")
            for _ in range(2):  # DENY, then a ServerHash made with another cookie: both closed
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"hello")
                with pytest.raises(ConnectionResetError):  # the failed dial onward resets it
                    await asyncio.wait_for(reader.read(100), 15)
                writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            reader.writer = writer  # type: ignore[attr-defined]
            await echo_through(reader)  # the process kept serving
    transport = [body for cmd, body in tor.commands if cmd == 2]
    useraddr = [body for cmd, body in tor.commands if cmd == 1]
    assert transport[-1] == b"plain"
    assert useraddr[-1].startswith(b"127.0.0.1:")
    assert tor.commands[-1] == (0, b"")
