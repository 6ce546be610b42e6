"""The sans-IO SOCKS5 server core (RFC 1928, RFC 1929, PT 3.0 method 0x09)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptdispatch.frontends.socks.protocol import NEED_DATA, Failure, Reply, Request, Socks5Server, reply
from ptdispatch.net.addr import Address

CONNECT_V4 = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"


def feed(server: Socks5Server, data: bytes) -> object:
    return server.receive_data(data)


def test_no_auth_connect_ipv4() -> None:
    s = Socks5Server()
    assert feed(s, b"\x05\x01\x00") is NEED_DATA
    assert s.data_to_send() == b"\x05\x00"
    event = feed(s, CONNECT_V4 + b"early")
    assert event == Request(Address("127.0.0.1", 8080), {}, b"early")


def test_domain_and_ipv6() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x00")
    assert feed(s, b"\x05\x01\x00\x03\x0bexample.com\x00\x50") == Request(Address("example.com", 80))
    s = Socks5Server()
    feed(s, b"\x05\x01\x00")
    assert feed(s, b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x16") == Request(Address("::1", 22))


def test_userpass_tor_args() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x02\x00\x02")
    assert s.data_to_send() == b"\x05\x02"
    user = b"cert=AAAA;iat-mode=0"
    assert feed(s, b"\x01" + bytes([len(user)]) + user + b"\x01\x00") is NEED_DATA
    assert s.data_to_send() == b"\x01\x00"
    event = feed(s, CONNECT_V4)
    assert isinstance(event, Request) and event.args == {"cert": "AAAA", "iat-mode": "0"}


def test_userpass_split_across_user_and_password() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x02")
    user, password = b"cert=AB", b"CD;iat-mode=1"
    feed(s, b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
    event = feed(s, CONNECT_V4)
    assert isinstance(event, Request) and event.args == {"cert": "ABCD", "iat-mode": "1"}


def test_userpass_bad_args_fail_auth() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x02")
    s.data_to_send()
    assert isinstance(feed(s, b"\x01\x05nokey\x01\x00"), Failure)
    assert s.data_to_send() == b"\x01\x01"


def test_userpass_bad_args_do_not_log_the_secret() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x02")
    s.data_to_send()
    user = b"password=correct;horse battery staple"
    event = feed(s, b"\x01" + bytes([len(user)]) + user + b"\x01\x00")
    assert isinstance(event, Failure)
    assert event.message == (
        "bad per-connection arguments in SOCKS5 user/password: the 2nd argument has no '=' "
        "(a ';' in a value is written '\\;')"
    )
    assert s.data_to_send() == b"\x01\x01"
    s = Socks5Server()
    feed(s, b"\x05\x01\x02")
    user = b"password=correct \xffhorse"
    event = feed(s, b"\x01" + bytes([len(user)]) + user + b"\x01\x00")
    assert isinstance(event, Failure)
    assert event.message == "bad per-connection arguments in SOCKS5 user/password: not UTF-8"


def json_block(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def test_json_block_preferred_and_no_status_byte() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x03\x00\x02\x09")
    assert s.data_to_send() == b"\x05\x09"
    assert feed(s, json_block({"cert": "x", "iat-mode": 0})) is NEED_DATA
    assert s.data_to_send() == b""  # no status byte after 0x09
    event = feed(s, CONNECT_V4)
    assert isinstance(event, Request) and event.args == {"cert": "x", "iat-mode": 0}


def test_json_block_too_large_is_refused_before_allocation() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x09")
    s.data_to_send()
    assert isinstance(feed(s, b"\x7f\xff\xff\xff"), Failure)
    assert s.data_to_send() == reply(Reply.ARGS_TOO_LARGE)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b"\xff\xfe", b'"text"', b"[" * 3000 + b"]" * 3000, b'{"n": ' + b"9" * 5000 + b"}"]
)
def test_json_block_not_an_object(body: bytes) -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x09")
    s.data_to_send()
    assert isinstance(feed(s, struct.pack(">I", len(body)) + body), Failure)
    assert s.data_to_send() == reply(Reply.ARGS_NOT_JSON)


@pytest.mark.parametrize("name", [b"x" * 64 + b".example", b"a..b", b"..", "\ufffd.example".encode()])
def test_a_domain_name_the_idna_codec_rejects_is_host_unreachable(name: bytes) -> None:
    """getaddrinfo would raise UnicodeError for it (not gaierror): refused here like any bad name."""
    s = Socks5Server()
    feed(s, b"\x05\x01\x00")
    s.data_to_send()
    event = feed(s, b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x50")
    assert isinstance(event, Failure) and "not valid" in event.message
    assert s.data_to_send() == reply(Reply.HOST_UNREACHABLE)


def test_unsupported_command_and_address_type() -> None:
    s = Socks5Server()
    feed(s, b"\x05\x01\x00")
    s.data_to_send()
    assert isinstance(feed(s, b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"), Failure)
    assert s.data_to_send() == reply(Reply.COMMAND_NOT_SUPPORTED)
    s = Socks5Server()
    feed(s, b"\x05\x01\x00")
    s.data_to_send()
    assert isinstance(feed(s, b"\x05\x01\x00\x07\x00\x00"), Failure)
    assert s.data_to_send() == reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED)


def test_no_acceptable_method() -> None:
    s = Socks5Server()
    assert isinstance(feed(s, b"\x05\x01\x80"), Failure)
    assert s.data_to_send() == b"\x05\xff"


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"\x04\x01\x00\x50", b"\x05\x00"])
def test_garbage_greetings(garbage: bytes) -> None:
    assert isinstance(feed(Socks5Server(), garbage), Failure)


HANDSHAKES = [
    b"\x05\x01\x00" + CONNECT_V4 + b"tail",
    b"\x05\x01\x02\x01\x03a=b\x01\x00" + CONNECT_V4,
    b"\x05\x01\x09" + json_block({"k": "v"}) + b"\x05\x01\x00\x03\x09localhost\x00\x16",
]


@given(st.sampled_from(HANDSHAKES), st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_chunking_gives_the_same_result(handshake: bytes, cuts: list[int]) -> None:
    whole = Socks5Server()
    expected = whole.receive_data(handshake)
    expected_out = whole.data_to_send()
    s = Socks5Server()
    event: object = NEED_DATA
    out = b""
    rest = handshake
    for cut in [*cuts, len(handshake)]:
        if not rest or event is not NEED_DATA:
            break
        event = s.receive_data(rest[:cut])
        out += s.data_to_send()
        rest = rest[cut:]
    if isinstance(expected, Request) and isinstance(event, Request):
        assert (event.address, event.args) == (expected.address, expected.args)
        assert event.leftover + rest == expected.leftover  # what the core did not see is the caller's
    else:
        assert event == expected
    assert out == expected_out


@given(st.binary(max_size=300))
def test_garbage_gives_only_events(data: bytes) -> None:
    s = Socks5Server()
    event = s.receive_data(data)
    assert event is NEED_DATA or isinstance(event, Request | Failure)
    s.data_to_send()
