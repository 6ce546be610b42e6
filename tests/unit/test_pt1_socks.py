"""SOCKS as tor speaks it to a PT 1.0 client: SOCKS4/4a with args in USERID, SOCKS5 with args in
RFC 1929 user/password (pt-spec 3.5), through the sans-IO cores."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.frontends.socks.protocol import NEED_DATA, Failure, Reply, Request, Socks5Server
from ptdispatch.frontends.socks.socks4 import GRANTED, REJECTED, Socks4Server, reply
from ptdispatch.net.addr import Address

CERT = "lCScuyuYNqaC4AI86JmPGSQCPKhX0IhkynHhqfujJMKg/pHqzDtMPihunqqWl3mP6wNnbg"


def tor_args(args: dict[str, str]) -> bytes:
    """pt-spec 3.5: escape backslash, '=' and ';' in keys and values; join with ';'."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("=", "\\=").replace(";", "\\;")

    return ";".join(f"{esc(k)}={esc(v)}" for k, v in args.items()).encode()


def socks4(userid: bytes, *, ip: bytes = b"\x7f\x00\x00\x01", port: int = 443, host: bytes | None = None,
           cmd: int = 1) -> bytes:  # fmt: skip
    if host is not None:
        ip = b"\x00\x00\x00\x01"
    return bytes((4, cmd)) + struct.pack(">H", port) + ip + userid + b"\x00" + (host + b"\x00" if host else b"")


def feed(core: Socks4Server | Socks5Server, data: bytes, chunk: int) -> object:
    event: object = NEED_DATA
    for i in range(0, len(data), chunk):
        event = core.receive_data(data[i : i + chunk])
        if event is not NEED_DATA:
            break
    return event


# --- SOCKS4 / 4a ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_socks4_connect_with_tor_args(chunk: int) -> None:
    core = Socks4Server()
    args = {"cert": CERT, "iat-mode": "0"}
    event = feed(core, socks4(tor_args(args), port=5001) + b"early", chunk)
    assert isinstance(event, Request)
    assert event.address == Address("127.0.0.1", 5001)
    assert event.args == args
    if chunk == 1000:
        assert event.leftover == b"early"
    assert core.data_to_send() == b""  # the reply comes after the dial


def test_socks4a_host_name_and_escaped_args() -> None:
    core = Socks4Server()
    args = {"k;1": "a=b", "p": "c\\d;e"}
    event = core.receive_data(socks4(tor_args(args), host=b"bridge.example", port=80))
    assert isinstance(event, Request)
    assert event.address == Address("bridge.example", 80)
    assert event.args == args


def test_socks4_empty_userid_means_no_args() -> None:
    event = Socks4Server().receive_data(socks4(b"", ip=bytes((10, 1, 2, 3))))
    assert isinstance(event, Request)
    assert event.address == Address("10.1.2.3", 443) and event.args == {}


def test_socks4_ip_0_0_0_0_is_not_4a() -> None:
    event = Socks4Server().receive_data(socks4(b"", ip=bytes(4)))
    assert isinstance(event, Request) and event.address.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("request_bytes", "needle"),
    [
        (socks4(b"", cmd=2), "command 2"),
        (socks4(b"no-equals-sign"), "USERID"),
        (socks4(b"k=v\\"), "USERID"),
        (socks4(b"\xff=\xfe"), "USERID"),
        (socks4(b"", host=b"\xff\xfe"), "UTF-8"),
        (socks4(b"", host=b"x" * 256), "too long"),
        (socks4(b"", host=b"x" * 64 + b".example"), "not valid"),  # a label the IDNA codec rejects
    ],
)
def test_socks4_rejections_send_0x5b(request_bytes: bytes, needle: str) -> None:
    core = Socks4Server()
    event = core.receive_data(request_bytes)
    assert isinstance(event, Failure) and needle in event.message
    assert core.data_to_send() == bytes((0, REJECTED, 0, 0, 0, 0, 0, 0))
    assert isinstance(core.receive_data(b"more"), Failure)


@pytest.mark.parametrize(
    ("userid", "problem"),
    [
        (b"password=correct;horse battery staple", "the 2nd argument has no '='"),
        (b"password=correct \xffhorse", "not UTF-8"),
    ],
)
def test_socks4_bad_userid_is_not_quoted(userid: bytes, problem: str) -> None:
    event = Socks4Server().receive_data(socks4(userid))
    assert isinstance(event, Failure)
    assert event.message.startswith(f"bad per-connection arguments in SOCKS4 USERID: {problem}")
    assert "horse" not in event.message and "0xff" not in event.message


def test_socks4_userid_and_hostname_are_bounded() -> None:
    core = Socks4Server(max_userid=100)
    assert core.receive_data(bytes((4, 1, 0, 80, 127, 0, 0, 1)) + b"a" * 100) is NEED_DATA
    event = core.receive_data(b"a")
    assert isinstance(event, Failure) and "USERID longer" in event.message
    assert core.data_to_send()[1] == REJECTED
    core = Socks4Server()
    assert core.receive_data(bytes((4, 1, 0, 80, 0, 0, 0, 1)) + b"\x00" + b"h" * 255) is NEED_DATA
    event = core.receive_data(b"h")
    assert isinstance(event, Failure) and "host name longer" in event.message


def test_not_socks4_sends_nothing() -> None:
    core = Socks4Server()
    event = core.receive_data(b"\x05\x01\x00")
    assert isinstance(event, Failure) and core.data_to_send() == b""


def test_socks4_reply_bytes() -> None:
    assert reply(Reply.SUCCEEDED) == bytes((0, GRANTED, 0, 0, 0, 0, 0, 0))
    for code in (Reply.GENERAL_FAILURE, Reply.CONNECTION_REFUSED, Reply.ARGS_INVALID, Reply.TTL_EXPIRED):
        assert reply(code) == bytes((0, REJECTED, 0, 0, 0, 0, 0, 0))
    core = Socks4Server()
    assert core.fail(Reply.SUCCEEDED, "never a success on failure").message
    assert core.data_to_send()[1] == REJECTED
    assert core.awaiting_json_block is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_socks4_garbage_gives_only_events(data: bytes, chunk: int) -> None:
    core = Socks4Server(max_userid=64)
    event = feed(core, b"\x04" + data, chunk)
    assert event is NEED_DATA or isinstance(event, Request | Failure)


# --- SOCKS5 with args split into RFC 1929 user/password, exactly as tor sends them --------------------
def tor_socks5_auth(args: bytes) -> bytes:
    """tor: UNAME = the first 255 bytes; PASSWD = the rest, or one NUL when everything fit."""
    user, password = args[:255], args[255:] or b"\x00"
    return bytes((1, len(user))) + user + bytes((len(password),)) + password


def socks5_with_args(args: bytes) -> bytes:
    greeting = b"\x05\x02\x00\x02"  # tor offers "no auth" and "user/password" when a bridge has args
    connect = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", 5001)
    return greeting + tor_socks5_auth(args) + connect


@pytest.mark.parametrize("size", [100, 254, 255, 256, 300, 510])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_socks5_userpass_args_of_any_length(size: int, chunk: int) -> None:
    base = {"cert": CERT, "iat-mode": "0"}
    args = {**base, "pad": "x" * (size - len(tor_args({**base, "pad": ""})))}
    encoded = tor_args(args)
    assert len(encoded) == size
    core = Socks5Server()
    event = feed(core, socks5_with_args(encoded), chunk)
    assert isinstance(event, Request), event
    assert event.args == args
    assert event.address == Address("127.0.0.1", 5001)
    assert core.data_to_send() == b"\x05\x02" + b"\x01\x00"


def test_socks5_split_inside_an_escape_sequence() -> None:
    """The 255-byte cut may fall between a backslash and the byte it escapes."""
    value = "a" * 250 + "\\;b"
    encoded = tor_args({"k": value})  # "k=" + 250 a + "\\\\\\;b": the cut lands inside the escapes
    assert len(encoded) > 255
    event = Socks5Server().receive_data(socks5_with_args(encoded))
    assert isinstance(event, Request) and event.args == {"k": value}


def test_socks5_bad_args_are_refused_with_rfc1929_failure() -> None:
    core = Socks5Server()
    event = core.receive_data(b"\x05\x01\x02" + tor_socks5_auth(b"no-equals"))
    assert isinstance(event, Failure)
    assert core.data_to_send() == b"\x05\x02\x01\x01"
