"""DarkStar, Starbridge and Replicant engines in memory: pairs, options, bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ptdispatch.errors import OptionsError, RemoteProtocolError
from ptdispatch.net.addr import Address
from ptdispatch.transports import registry
from ptdispatch.transports.base import Engine, ServerContext
from ptdispatch.transports.darkstar.engine import SERVER_TIMEOUTS
from ptdispatch.transports.darkstar.keys import (
    decode_private,
    decode_public,
    encode_private,
    encode_public,
    is_compact,
    x_of,
)
from ptdispatch.transports.darkstar.transport import DarkStarClient, DarkStarServer, state_path
from ptdispatch.transports.starburst import BANNER, GO_AHEAD, Starburst, client_script, server_script

ADDRESS = Address("127.0.0.1", 4433)
NAMES = ["shadow", "Starbridge", "Replicant"]
SERVER_OPTIONS: dict[str, dict[str, object]] = {
    "shadow": {"cipherName": "DarkStar", "serverAddress": "127.0.0.1:4433"},
    "Starbridge": {"serverAddress": "127.0.0.1:4433", "transport": "Starbridge", "bindAddress": None},
    "Replicant": {"serverAddress": "127.0.0.1:4433"},
}


def make_server(name: str, tmp: Path, options: dict[str, object] | None = None) -> DarkStarServer:
    spec = registry.lookup(name)
    assert spec is not None
    server = spec.server(options if options is not None else SERVER_OPTIONS[name], ServerContext(state_dir=tmp))
    assert isinstance(server, DarkStarServer)
    return server


def make_client(name: str, server: DarkStarServer, extra: dict[str, object] | None = None) -> DarkStarClient:
    spec = registry.lookup(name)
    assert spec is not None
    options = {**server.smethod_args(), "serverAddress": "127.0.0.1:4433", **(extra or {})}
    client = spec.client(options)
    assert isinstance(client, DarkStarClient)
    return client


def exchange(c: Engine, s: Engine, max_rounds: int = 10) -> None:
    """Run both engines against each other until both are established."""
    c.initiate()
    s.initiate()
    for _ in range(max_rounds):
        to_s, to_c = c.data_to_send(), s.data_to_send()
        if not to_s and not to_c and c.established and s.established:
            return
        if to_s:
            assert s.receive_data(to_s) == b""
        if to_c:
            assert c.receive_data(to_c) == b""
    assert c.established and s.established


@pytest.mark.parametrize("name", NAMES)
def test_pair_carries_data_both_ways(tmp_path: Path, name: str) -> None:
    server = make_server(name, tmp_path)
    c, s = make_client(name, server).new_engine(None), server.new_engine()
    exchange(c, s)
    blob = bytes(range(256)) * 300  # > 16383: several frames
    c.send_data(blob)
    assert s.receive_data(c.data_to_send()) == blob
    s.send_data(b"pong")
    assert c.receive_data(s.data_to_send()) == b"pong"


def test_starbridge_wire_starts_with_the_swift_script(tmp_path: Path) -> None:
    server = make_server("Starbridge", tmp_path)
    s = server.new_engine()
    s.initiate()
    assert s.data_to_send() == BANNER
    assert s.receive_data(b"EHLO any.domain.example\r") == b""
    assert s.receive_data(b"\n") == b""
    assert s.data_to_send().endswith(b"250-STARTTLS\r\n")
    s.receive_data(b"STARTTLS\r\n")
    assert s.data_to_send() == GO_AHEAD


def test_starburst_client_accepts_the_go_server_script() -> None:
    client = Starburst(client_script())
    client.start()
    assert client.feed(b"220 mail.imc.org SMTP service ready\r\n") == b""
    assert client.take() == b"EHLO mail.imc.org\r\n"
    assert client.feed(b"250-mail.imc.org Hello\r\n250-8BITMIME\r\n250-DSN\r\n250 STARTTLS\r\n") == b""
    assert client.take() == b"STARTTLS\r\n"
    assert client.feed(b"220 Go ahead\r\nXYZ") == b"XYZ"
    assert client.done


def test_starburst_server_and_client_scripts_agree() -> None:
    c, s = Starburst(client_script()), Starburst(server_script())
    c.start()
    s.start()
    for _ in range(5):
        s.feed(c.take())
        c.feed(s.take())
    assert c.done and s.done


@pytest.mark.parametrize(
    "junk",
    [b"x" * 10240, b"HELO foo\r\n", b"EHLO\r\n", b"GET / HTTP/1.1\r\n\r\n", b"EHLO a b\r\n"],
)
def test_starbridge_server_refuses_junk_with_linger(tmp_path: Path, junk: bytes) -> None:
    s = make_server("Starbridge", tmp_path).new_engine()
    s.initiate()
    s.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(junk)
    assert info.value.linger >= 10


def test_starburst_step_deadline() -> None:
    now = [0.0]
    s = Starburst(server_script(), clock=lambda: now[0])
    s.start()
    now[0] = 10.5
    with pytest.raises(ValueError, match="10 s"):
        s.feed(b"EHLO x\r\n")


@pytest.mark.parametrize("name", NAMES)
def test_wrong_server_key_fails_without_a_reply(tmp_path: Path, name: str) -> None:
    server = make_server(name, tmp_path)
    other = make_server(name, tmp_path / "other")
    c, s = make_client(name, other).new_engine(None), server.new_engine()
    with pytest.raises(RemoteProtocolError) as info:
        exchange(c, s)
    assert info.value.linger >= 10  # the server's prober treatment
    assert not s.established


def test_wrong_server_address_fails(tmp_path: Path) -> None:
    server = make_server("shadow", tmp_path)
    c = make_client("shadow", server, {"serverAddress": "127.0.0.2:4433"}).new_engine(None)
    with pytest.raises(RemoteProtocolError):
        exchange(c, server.new_engine())


def test_replayed_hello_is_refused(tmp_path: Path) -> None:
    server = make_server("shadow", tmp_path)
    c = make_client("shadow", server).new_engine(None)
    c.initiate()
    hello = c.data_to_send()
    first = server.new_engine()
    first.receive_data(hello)
    assert first.established
    with pytest.raises(RemoteProtocolError, match="replay") as info:
        server.new_engine().receive_data(hello)
    assert info.value.linger >= 10


def test_invalid_curve_point_is_refused(tmp_path: Path) -> None:
    server = make_server("shadow", tmp_path)
    with pytest.raises(RemoteProtocolError, match="not a point"):
        server.new_engine().receive_data(b"\xff" * 64)  # X >= p: no point


def test_truncated_hello_waits_then_times_out(tmp_path: Path) -> None:
    s = make_server("shadow", tmp_path).new_engine()
    assert s.receive_data(b"\x01" * 63) == b""
    assert not s.established
    s.start(100.0, SERVER_TIMEOUTS)
    timer = s.get_timer()
    assert timer is not None and 130 <= timer <= 160
    assert 10 <= s.linger_at(timer) <= 60  # then the linger, to the connection's one close time


def test_bad_tag_and_truncated_frames(tmp_path: Path) -> None:
    server = make_server("shadow", tmp_path)
    c, s = make_client("shadow", server).new_engine(None), server.new_engine()
    exchange(c, s)
    c.send_data(b"hello there")
    frame = bytearray(c.data_to_send())
    assert s.receive_data(bytes(frame[:-1])) == b""  # truncated: waits
    frame[-1] ^= 1
    with pytest.raises(RemoteProtocolError, match="authentication"):
        s.receive_data(bytes(frame[-1:]))


def test_server_key_is_generated_compact_and_kept(tmp_path: Path) -> None:
    first = make_server("Starbridge", tmp_path)
    again = make_server("Starbridge", tmp_path)
    assert first.smethod_args() == again.smethod_args()
    assert is_compact(first.key.public)
    saved = json.loads(state_path(tmp_path, "Starbridge").read_text())
    assert decode_private(saved["serverPrivateKey"]).public_key() == first.key.public
    assert state_path(tmp_path, "Starbridge").stat().st_mode & 0o777 == 0o600


def test_smethod_args_per_transport(tmp_path: Path) -> None:
    assert set(make_server("shadow", tmp_path).smethod_args()) == {"cipherName", "serverPublicKey"}
    assert set(make_server("Starbridge", tmp_path).smethod_args()) == {"serverPublicKey"}
    nested: dict[str, object] = {"polish": {"serverAddress": "x"}, "serverAddress": "127.0.0.1:4433"}
    assert make_server("Replicant", tmp_path, nested).smethod_args()["toneburst"] == "none"


def test_bound_address_becomes_the_identifier(tmp_path: Path) -> None:
    server = make_server("Starbridge", tmp_path, {})
    server.bound(ADDRESS)
    assert server.notes and "bound address" in server.notes[0]
    c = make_client("Starbridge", server).new_engine(None)
    exchange(c, server.new_engine())


def test_replicant_nested_config_pairs_with_flat(tmp_path: Path) -> None:
    key = make_server("Replicant", tmp_path).key
    spec = registry.lookup("replicant")
    assert spec is not None
    server_options = {
        "serverAddress": "127.0.0.1:4433",
        "toneburst": {"type": "starbridge", "mode": "SMTPServer"},
        "polish": {"serverAddress": "ignored", "serverPrivateKey": encode_private(key.private)},
        "transport": "Replicant",
        "bindAddress": None,
    }
    client_options = {
        "serverAddress": "127.0.0.1:4433",
        "toneburst": {"type": "starburst", "mode": "SMTPClient"},
        "polish": {"serverAddress": "ignored", "serverPublicKey": encode_public(key.public)},
    }
    server = spec.server(server_options, ServerContext(state_dir=tmp_path / "n"))
    client = spec.client(client_options)
    assert isinstance(server, DarkStarServer) and isinstance(client, DarkStarClient)
    exchange(client.new_engine(None), server.new_engine())


@pytest.mark.parametrize(
    "options, words",
    [
        ({"toneburst": {"type": "monotone", "mode": "SMTPClient"}, "polish": {}}, "monotone"),
        ({"toneburst": {"type": "starburst", "mode": "Whale"}, "polish": {}}, "Whale"),
        ({"polish": {"type": "silver", "serverPublicKey": "x"}}, "silver"),
        ({"toneburst": "whalesong"}, "whalesong"),
        ({}, "serverPublicKey"),
        ({"serverPublicKey": "AAAA"}, "serverPublicKey"),
        ({"serverPublicKey": "!!notbase64"}, "serverPublicKey"),
    ],
)
def test_replicant_bad_options_name_the_problem(options: dict[str, object], words: str) -> None:
    spec = registry.lookup("Replicant")
    assert spec is not None
    with pytest.raises(OptionsError, match=words) as info:
        spec.client(options)
    if "type" in str(options) or "toneburst" in options:
        assert "supported" in info.value.message


def test_key_formats_accepted() -> None:
    public = "AgSTYvjq/4FbVgjkD5B3hfeQ4aYwZ07llfZPo9XN5gtAYiCqKyrCHELiqQjQmwT8qfNHqyTJj0KwzS7b2htQ86xA"
    key = decode_public(public)
    bare_b64 = base64.b64encode(x_of(key)).decode()
    for text in (public, bare_b64, x_of(key).hex()):
        spec = registry.lookup("Starbridge")
        assert spec is not None
        client = spec.client({"serverPublicKey": text, "serverAddress": "127.0.0.1:1"})
        assert isinstance(client, DarkStarClient) and x_of(client.server_key) == x_of(key)
    with pytest.raises(ValueError, match="not the X coordinate"):
        decode_public("ff" * 32)


def test_shadow_still_shadowsocks_without_darkstar() -> None:
    spec = registry.lookup("shadow")
    assert spec is not None
    assert not isinstance(spec.client({"password": "x", "cipherName": "aes-256-gcm"}), DarkStarClient)
    assert isinstance(
        spec.client(
            {
                "cipherName": "DARKSTAR",
                "serverPublicKey": "9362f8eaff815b5608e40f907785f790e1a630674ee595f64fa3d5cde60b4062",
            }
        ),
        DarkStarClient,
    )
