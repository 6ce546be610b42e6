"""The sans-IO ExtORPort client against tor's own test vectors and hand-made server bytes."""

from __future__ import annotations

import pytest

from ptdispatch.errors import LocalProtocolError, RemoteProtocolError
from ptdispatch.extorport import (
    ExtOrClient,
    ExtOrPortAuthError,
    ExtOrPortDenied,
    ExtOrPortError,
    State,
    format_useraddr,
)
from ptdispatch.net.addr import Address

# Vectors from tor's src/test/test_extorport.c (test_ext_or_cookie_auth_testvec and
# test_ext_or_handshake): https://gitlab.torproject.org/tpo/core/tor/-/blob/main/src/test/test_extorport.c
TOR_COOKIE = b"Gliding wrapt in a brown mantle,"
TOR_CLIENT_NONCE = b"But when I look ahead up the whi"
TOR_SERVER_NONCE = b"te road There is always another "
TOR_SERVER_HASH = bytes.fromhex("ec80ed6e546d3b36fdfc22fe1315416b029f1ade7610d910878b62eeb7403821")
TOR_CLIENT_HASH = bytes.fromhex("ab391732dd2ed968cd40c087d1b1f25b33b3cd77ff79bd80c2074bbf438119a2")

OKAY = b"\x10\x00\x00\x00"
DENY = b"\x10\x01\x00\x00"


def fixed_rng(value: bytes):  # type: ignore[no-untyped-def]
    def rng(n: int) -> bytes:
        assert n == len(value)
        return value

    return rng


def tor_client(client_addr: Address | str | None = "1.2.3.4:5678", name: str = "rfc1149") -> ExtOrClient:
    return ExtOrClient(TOR_COOKIE, name, client_addr, fixed_rng(TOR_CLIENT_NONCE))


def state_of(client: ExtOrClient) -> State:
    """``client.state``, read through a call: mypy would keep the property narrowed by an earlier
    ``assert client.state is ...`` across the calls that change it."""
    return client.state


def authenticated(client: ExtOrClient) -> bytes:
    """Drive ``client`` through SAFE_COOKIE with tor's vectors; return the commands it then sent."""
    client.receive_data(b"\x01\x00")
    assert client.data_to_send() == b"\x01" + TOR_CLIENT_NONCE
    client.receive_data(TOR_SERVER_HASH + TOR_SERVER_NONCE)
    assert client.data_to_send() == TOR_CLIENT_HASH
    client.receive_data(b"\x01")
    return client.data_to_send()


def test_tor_vectors_every_byte() -> None:
    client = tor_client()
    assert client.state is State.AUTH_TYPES
    assert client.data_to_send() == b""
    commands = authenticated(client)
    assert commands == b"\x00\x01\x00\x0c1.2.3.4:5678" + b"\x00\x02\x00\x07rfc1149" + b"\x00\x00\x00\x00"
    assert state_of(client) is State.REPLY
    client.receive_data(OKAY)
    assert client.done
    assert client.leftover == b""
    assert client.data_to_send() == b""


def test_everything_in_one_chunk_and_leftover() -> None:
    client = tor_client()
    client.receive_data(b"\x01\x00")
    client.data_to_send()
    client.receive_data(TOR_SERVER_HASH + TOR_SERVER_NONCE + b"\x01" + OKAY + b"\x16\x03\x01OR")
    assert (
        client.data_to_send()
        == TOR_CLIENT_HASH + b"\x00\x01\x00\x0c1.2.3.4:5678\x00\x02\x00\x07rfc1149\x00\x00\x00\x00"
    )
    assert client.done
    assert client.leftover == b"\x16\x03\x01OR"


def test_several_auth_types_offered() -> None:
    client = tor_client()
    client.receive_data(b"\x07\x02\x01\xff\x00")
    assert client.data_to_send() == b"\x01" + TOR_CLIENT_NONCE


@pytest.mark.parametrize("offer", [b"\x00", b"\x02\x00", b"\x02\x03\xff\x00"])
def test_no_safe_cookie_offered(offer: bytes) -> None:
    client = tor_client()
    with pytest.raises(ExtOrPortAuthError, match="does not offer SAFE_COOKIE"):
        client.receive_data(offer)
    assert client.state is State.FAILED
    assert client.data_to_send() == b""


def test_endless_auth_type_list() -> None:
    client = tor_client()
    client.receive_data(b"\x01" * 255)
    with pytest.raises(ExtOrPortError, match="no end"):
        client.receive_data(b"\x02")


def test_wrong_cookie_detected_from_server_hash() -> None:
    client = ExtOrClient(b"x" * 32, "rfc1149", None, fixed_rng(TOR_CLIENT_NONCE))
    client.receive_data(b"\x01\x00")
    client.data_to_send()
    with pytest.raises(ExtOrPortAuthError, match=r"ExtORPort server hash mismatch: wrong cookie\?"):
        client.receive_data(TOR_SERVER_HASH + TOR_SERVER_NONCE)
    assert client.data_to_send() == b"", "no client hash may be sent to a server that failed to prove the cookie"


@pytest.mark.parametrize("status", [b"\x00", b"\x02", b"\xff"])
def test_auth_status_not_one(status: bytes) -> None:
    client = tor_client()
    client.receive_data(b"\x01\x00")
    client.receive_data(TOR_SERVER_HASH + TOR_SERVER_NONCE)
    client.data_to_send()
    with pytest.raises(ExtOrPortAuthError, match="rejected our authentication"):
        client.receive_data(status)
    assert client.data_to_send() == b"", "no USERADDR after a failed authentication"


def test_deny() -> None:
    client = tor_client()
    authenticated(client)
    with pytest.raises(ExtOrPortDenied, match="ExtORPort denied the connection"):
        client.receive_data(DENY)
    assert isinstance(ExtOrPortDenied("x"), RemoteProtocolError)


def test_deny_with_body() -> None:
    client = tor_client()
    authenticated(client)
    with pytest.raises(ExtOrPortDenied):
        client.receive_data(b"\x10\x01\x00\x03abc")


def test_unknown_and_control_commands_are_ignored() -> None:
    client = tor_client()
    authenticated(client)
    client.receive_data(b"\x10\x02\x00\x02hi" + b"\xff\xf0\x00\x03ABC" + b"\x00\x01\x00\x00")
    assert client.state is State.REPLY  # three commands skipped, still waiting for OKAY or DENY
    assert client.data_to_send() == b""  # and nothing said back
    client.receive_data(b"\x10\x00\x00\x06ignoredata")
    assert client.done
    assert client.leftover == b"data"


@pytest.mark.parametrize(
    "prefix",
    [b"", b"\x01", b"\x01\x00", b"\x01\x00" + b"h" * 40],
    ids=["nothing", "half-auth-types", "before-server-hash", "half-server-hash"],
)
def test_eof_mid_handshake(prefix: bytes) -> None:
    client = tor_client()
    if prefix:
        client.receive_data(prefix)
    with pytest.raises(ExtOrPortError, match="ExtORPort closed the connection while"):
        client.receive_data(b"")
    assert client.state is State.FAILED


def test_eof_after_status_and_mid_reply() -> None:
    client = tor_client()
    authenticated(client)
    client.receive_data(b"\x10\x00\x00")
    with pytest.raises(ExtOrPortError, match="waiting for OKAY or DENY"):
        client.receive_data(b"")


def test_use_after_end_is_a_local_error() -> None:
    client = tor_client()
    authenticated(client)
    client.receive_data(OKAY)
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"more")
    failed = tor_client()
    with pytest.raises(ExtOrPortError):
        failed.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        failed.receive_data(b"\x01\x00")


def test_no_client_addr_sends_no_useraddr() -> None:
    assert authenticated(tor_client(None, "obfs4")) == b"\x00\x02\x00\x05obfs4\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("given", "body"),
    [
        (Address("1.2.3.4", 5678), b"1.2.3.4:5678"),
        ("1.2.3.4:5678", b"1.2.3.4:5678"),
        (Address("::1", 443), b"[::1]:443"),
        ("[1:2:0:0:0:0:3:4]:5678", b"[1:2::3:4]:5678"),
        (Address("::ffff:10.0.0.1", 9), b"10.0.0.1:9"),
        (Address("fe80::1%eth0", 80), b"[fe80::1]:80"),
        (Address("0.0.0.0", 0), b"0.0.0.0:0"),
    ],
)
def test_useraddr_formats(given: Address | str, body: bytes) -> None:
    assert format_useraddr(given) == body


@pytest.mark.parametrize("bad", [Address("example.com", 80), "nohost", "1.2.3.4:99999", Address("1.2.3.4", 70000)])
def test_bad_client_addr(bad: Address | str) -> None:
    with pytest.raises(LocalProtocolError):
        ExtOrClient(TOR_COOKIE, "obfs4", bad, fixed_rng(TOR_CLIENT_NONCE))


@pytest.mark.parametrize("name", ["", "1abc", "rf*1149", "obfs4\x00", "héllo", "a b"])
def test_bad_transport_name(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="C identifier"):
        ExtOrClient(TOR_COOKIE, name, None, fixed_rng(TOR_CLIENT_NONCE))


@pytest.mark.parametrize("cookie", [b"", b"x" * 31, b"x" * 33])
def test_bad_cookie_length(cookie: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        ExtOrClient(cookie, "obfs4", None, fixed_rng(TOR_CLIENT_NONCE))
