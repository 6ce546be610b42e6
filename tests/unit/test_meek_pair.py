"""Our meek client against our meek server, in one process (the Python API)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

import ptdispatch
from ptdispatch.errors import OptionsError
from tests.peers.managed import echo_handler

pytestmark = pytest.mark.timeout(60)


async def _echo_server() -> tuple[asyncio.Server, str]:
    server = await ptdispatch.start_server(echo_handler, "meeklite", "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/"


async def _roundtrip(url: str, size: int) -> None:
    reader, writer = await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})
    payload = os.urandom(size)
    writer.write(payload)
    got = await asyncio.wait_for(reader.readexactly(size), 30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    writer.close()


async def test_echo_one_mib() -> None:
    server, url = await _echo_server()
    try:
        await _roundtrip(url, 1 << 20)
    finally:
        server.close()


async def test_concurrent_connections() -> None:
    server, url = await _echo_server()
    try:
        await asyncio.gather(*(_roundtrip(url, 100_000 + i) for i in range(8)))
    finally:
        server.close()


async def test_dead_server_fails_the_dial() -> None:
    server, url = await _echo_server()
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await ptdispatch.open_connection("meeklite", ("192.0.2.1", 1), {"url": url})


def test_options() -> None:
    from ptdispatch.transports.meek.options import ClientOptions

    opts = ClientOptions.parse({"url": "https://meek.invalid:9999/x?y=1", "front": "localhost:8443"})
    assert opts.url.host_header == "meek.invalid:9999"
    assert opts.url.target == "/x?y=1"
    assert tuple(opts.dial_address) == ("localhost", 8443)
    assert tuple(ClientOptions.parse({"url": "https://a.example:9/", "front": "b.example"}).dial_address) == (
        "b.example",
        443,
    )
    assert ClientOptions.parse({"url": "http://a/", "front": ""}).front is None
    bad_hosts = ({"url": "http://a b/"}, {"url": "http://a\x0bb/"}, {"url": "http://\u00e9.example/"})  # written raw
    for bad in ({}, {"url": "ftp://a/"}, {"url": "http:///"}, {"url": "http://a/", "front": "h:0"}, *bad_hosts):
        with pytest.raises(OptionsError):
            ClientOptions.parse(bad)


def test_utls_is_accepted_and_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from ptdispatch.transports.meek.options import ClientOptions

    with caplog.at_level("WARNING", logger="ptdispatch.meek"):
        opts = ClientOptions.parse({"url": "https://a.example/", "utls": "HelloRandomizedALPN"})
    assert opts == ClientOptions.parse({"url": "https://a.example/"})
    assert "utls=HelloRandomizedALPN is ignored" in caplog.text


def test_registered_names_and_keys() -> None:
    from ptdispatch.transports import registry

    specs = {registry.lookup(name) for name in ("meeklite", "meek_lite", "meek", "MEEK_LITE")}
    assert len(specs) == 1
    spec = specs.pop()
    assert spec is not None
    assert spec.client_keys == frozenset({"url", "front", "utls"})
    assert spec.server_keys == frozenset({"url", "front", "cert", "key", "maxSessions"})


async def test_ipv6_loopback_url() -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = await ptdispatch.start_server(echo_handler, "meeklite", "::1", 0)
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    try:
        port = server.sockets[0].getsockname()[1]
        await _roundtrip(f"http://[::1]:{port}/", 10_000)
    finally:
        server.close()
