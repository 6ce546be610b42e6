"""nginx as the CDN: TLS on nginx, proxy_pass with X-Forwarded-For to our plain meek server (PT 1.0
``meek``, tor's ExtORPort); our client with ``url=https://meek.test/`` fronted by nginx's address."""

from __future__ import annotations

from pathlib import Path

import pytest

import ptdispatch
from ptdispatch.extorport import COOKIE_HEADER
from tests.peers.certs import make_test_ca
from tests.peers.dispatcher import running
from tests.peers.fake_tor import COOKIE, FakeTor, fake_tor
from tests.peers.nginx import nginx_front
from tests.peers.obfs4proxy import echo_roundtrip

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


async def test_useraddr_is_the_address_nginx_saw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = make_test_ca(tmp_path / "ca")
    for key, value in ca.env().items():
        monkeypatch.setenv(key, value)
    cookie = tmp_path / "cookie"
    cookie.write_bytes(COOKIE_HEADER + COOKIE)
    tor = FakeTor()
    async with fake_tor(tor) as extor:
        env = {
            "TOR_PT_MANAGED_TRANSPORT_VER": "1",
            "TOR_PT_STATE_LOCATION": str(tmp_path / "state"),
            "TOR_PT_SERVER_TRANSPORTS": "meek",
            "TOR_PT_SERVER_BINDADDR": "meek-127.0.0.1:0",
            "TOR_PT_ORPORT": "127.0.0.1:1",
            "TOR_PT_EXTENDED_SERVER_PORT": str(extor),
            "TOR_PT_AUTH_COOKIE_FILE": str(cookie),
        }
        async with running(env=env) as server:
            _, origin = server.method("SMETHOD", "meek")
            async with nginx_front(
                tmp_path / "nginx", origin=origin, cert=ca.cert, key=ca.key, name="meek.test"
            ) as port:
                options = {"url": "https://meek.test/", "front": f"127.0.0.1:{port}"}
                reader, writer = await ptdispatch.open_connection("meek_lite", ("192.0.2.20", 80), options)
                try:
                    await echo_roundtrip(reader, writer, 1 << 20, timeout=60)
                finally:
                    writer.close()
                access = (tmp_path / "nginx" / "access.log").read_text()
    assert (1, b"127.0.0.1:1") in tor.commands  # nginx saw 127.0.0.1; our server's TCP peer was 127.0.0.3
    assert (2, b"meek") in tor.commands
    assert tor.commands[-1] == (0, b"")
    assert '"POST / HTTP/1.1" 200' in access
