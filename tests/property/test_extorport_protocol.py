"""Properties of the sans-IO ExtORPort client: chunking never matters, garbage gives only our error."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.errors import LocalProtocolError
from ptdispatch.extorport import ExtOrClient, ExtOrPortError, State
from tests import chunking

COOKIE = b"C" * 32
CLIENT_NONCE = b"n" * 32
SERVER_NONCE = b"s" * 32
SERVER_HASH = hmac.new(
    COOKIE, b"ExtORPort authentication server-to-client hash" + CLIENT_NONCE + SERVER_NONCE, hashlib.sha256
).digest()
OKAY = b"\x10\x00\x00\x00"


def rng(n: int) -> bytes:
    return CLIENT_NONCE[:n]


def new_client() -> ExtOrClient:
    return ExtOrClient(COOKIE, "obfs4", "10.1.2.3:4567", rng)


def state_of(client: ExtOrClient) -> State:
    """``client.state``, read through a call: mypy would keep the property narrowed by an earlier
    ``assert client.state is ...`` across the calls that change it."""
    return client.state


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    return [piece for piece in chunking.split(data, cuts) if piece]


def run(chunks: list[bytes]) -> tuple[str, bytes, bytes]:
    """Feed ``chunks``; return (outcome, everything sent, leftover)."""
    client = new_client()
    sent = bytearray()
    try:
        for index, chunk in enumerate(chunks):
            client.receive_data(chunk)
            sent += client.data_to_send()
            if client.done:  # later chunks are OR stream, read by whoever takes over the socket
                return client.state.name, bytes(sent), client.leftover + b"".join(chunks[index + 1 :])
    except ExtOrPortError as exc:
        return f"error: {exc}", bytes(sent), b""
    return client.state.name, bytes(sent), b""


unknown_command = st.builds(
    lambda cmd, body: cmd.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body,
    st.integers(0, 0xFFFF).filter(lambda c: c not in (0x1000, 0x1001)),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(
    auth_types=st.lists(st.integers(2, 255), max_size=5),
    ignored=st.lists(unknown_command, max_size=4),
    final=st.sampled_from([OKAY, b"\x10\x01\x00\x00", b"\x10\x00\x00\x02xy"]),
    trailing=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_chunking_gives_the_same_result(
    auth_types: list[int], ignored: list[bytes], final: bytes, trailing: bytes, cuts: list[int]
) -> None:
    wire = bytes([*auth_types, 1, 0]) + SERVER_HASH + SERVER_NONCE + b"\x01" + b"".join(ignored) + final + trailing
    whole = run([wire])
    chunked = run(split(wire, cuts))
    assert (chunked[0], chunked[2]) == (whole[0], whole[2])
    if whole[0] == "DONE":  # on an error, output still queued is dropped, so only success compares it
        assert chunked[1] == whole[1]
    if final == b"\x10\x01\x00\x00":
        assert whole[0] == "error: ExtORPort denied the connection"
    else:
        assert whole[0] == "DONE"
        assert whole[2] == trailing


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_random_bytes_give_only_our_error(chunks: list[bytes], then_eof: bool) -> None:
    client = new_client()
    try:
        for chunk in [*chunks, b""] if then_eof else chunks:
            if client.done:
                break
            client.receive_data(chunk)
            client.data_to_send()
    except ExtOrPortError:
        assert client.state is State.FAILED
    else:
        assert client.state is not State.FAILED
        assert not then_eof or client.done


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6), st.booleans())
def test_random_replies_after_authentication(chunks: list[bytes], then_eof: bool) -> None:
    """Past SAFE_COOKIE, random command streams still only ever raise ExtOrPortError."""
    client = new_client()
    client.receive_data(b"\x01\x00" + SERVER_HASH + SERVER_NONCE + b"\x01")
    assert client.state is State.REPLY
    try:
        for chunk in [*chunks, b""] if then_eof else chunks:
            if client.done:
                break
            client.receive_data(chunk)
    except ExtOrPortError:
        assert state_of(client) is State.FAILED


@given(st.sampled_from(list(State)), st.binary(max_size=80))
def test_every_state_and_input_transitions_or_errors(target: State, data: bytes) -> None:
    """Bring a client to ``target``, feed ``data``: it stays, advances, or raises one of our errors."""
    client = new_client()
    prefixes = {
        State.AUTH_TYPES: b"",
        State.SERVER_HASH: b"\x01\x00",
        State.AUTH_STATUS: b"\x01\x00" + SERVER_HASH + SERVER_NONCE,
        State.REPLY: b"\x01\x00" + SERVER_HASH + SERVER_NONCE + b"\x01",
        State.DONE: b"\x01\x00" + SERVER_HASH + SERVER_NONCE + b"\x01" + OKAY,
        State.FAILED: b"\x00",
    }
    order = list(State)
    try:
        if prefixes[target]:
            client.receive_data(prefixes[target])
    except ExtOrPortError:
        pass
    assert client.state is target
    try:
        client.receive_data(data)
    except LocalProtocolError:
        assert target in (State.DONE, State.FAILED)
    except ExtOrPortError:
        assert client.state is State.FAILED
    else:
        assert order.index(client.state) >= order.index(target)
