"""Properties of the UDP framings: chunking never matters; garbage gives only RemoteProtocolError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.udp.framing import (
    STUN_MAGIC,
    Decoder,
    LengthPrefixDecoder,
    StunDecoder,
    encode_frame,
    encode_stun,
    is_stun,
    stun_mode_problem,
)
from tests.chunking import split

datagrams = st.lists(st.binary(max_size=3000), max_size=20)


@st.composite
def stun_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 0x3FFF))
    body = draw(st.binary(max_size=400))
    body += bytes(-len(body) % 4)
    txid = draw(st.binary(min_size=12, max_size=12))
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + STUN_MAGIC + txid + body


@st.composite
def channel_data(draw: st.DrawFn) -> bytes:
    """A TURN ChannelData datagram, with or without its padding (optional over UDP)."""
    channel = draw(st.integers(0x4000, 0x7FFF))
    data = draw(st.binary(max_size=400))
    message = channel.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
    return message + bytes(draw(st.integers(0, -len(message) % 4)))


def unpadded(message: bytes) -> bytes:
    """What the decoder delivers: ChannelData without padding, STUN as it is."""
    if message[0] & 0xC0 == 0x40:
        return message[: 4 + ((message[2] << 8) | message[3])]
    return message


def cut(data: bytes, points: list[int]) -> list[bytes]:
    return [piece for piece in split(data, points) if piece]


def run(decoder: Decoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


@given(datagrams, st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_gives_the_same_datagrams(items: list[bytes], points: list[int]) -> None:
    stream = b"".join(encode_frame(x) for x in items)
    decoder = LengthPrefixDecoder()
    assert run(decoder, cut(stream, points)) == items
    assert decoder.buffered == 0
    decoder.close()


@given(st.lists(stun_messages(), max_size=10), st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_gives_the_same_stun_messages(items: list[bytes], points: list[int]) -> None:
    assert all(is_stun(m) for m in items)
    decoder = StunDecoder()
    assert run(decoder, cut(b"".join(items), points)) == items
    decoder.close()


@given(
    st.lists(st.one_of(stun_messages(), channel_data()), max_size=12), st.lists(st.integers(min_value=0), max_size=40)
)
def test_any_chunking_gives_the_same_stun_and_channel_data(items: list[bytes], points: list[int]) -> None:
    assert all(stun_mode_problem(m) is None for m in items)
    stream = b"".join(encode_stun(m) for m in items)
    assert all(len(encode_stun(m)) % 4 == 0 for m in items)
    decoder = StunDecoder()
    assert run(decoder, cut(stream, points)) == [unpadded(m) for m in items]
    assert decoder.buffered == 0
    decoder.close()


@given(
    st.lists(st.one_of(stun_messages(), channel_data()), max_size=5),
    st.binary(min_size=1, max_size=200),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_good_messages_then_garbage(items: list[bytes], garbage: bytes, points: list[int]) -> None:
    """Whatever follows good messages, they come out and then only RemoteProtocolError is raised."""
    decoder = StunDecoder()
    assert run(decoder, cut(b"".join(encode_stun(m) for m in items), points)) == [unpadded(m) for m in items]
    try:
        out = run(decoder, cut(garbage, points))
        decoder.close()
    except RemoteProtocolError:
        return
    assert all(stun_mode_problem(m) is None for m in out)
    assert sum(len(encode_stun(m)) for m in out) == len(garbage)


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=20), st.booleans(), st.booleans())
def test_garbage_gives_only_remote_errors_or_need_more(
    garbage: bytes, points: list[int], stun: bool, classic: bool
) -> None:
    decoder: Decoder = StunDecoder(classic=classic) if stun else LengthPrefixDecoder()
    try:
        out = run(decoder, cut(garbage, points))
        decoder.close()
    except RemoteProtocolError:
        return
    # Whatever came out is exactly what the garbage framed, and nothing was left over.
    again = StunDecoder(classic=classic) if stun else LengthPrefixDecoder()
    assert again.feed(garbage) == out
    if stun:  # each message passes the UDP side's check, and took its padded length of the stream
        assert all(stun_mode_problem(m, classic=classic) is None for m in out)
        assert sum(len(encode_stun(x)) for x in out) == len(garbage)
    else:
        assert sum(len(x) + 2 for x in out) == len(garbage)


@given(datagrams, st.binary(min_size=1, max_size=100))
def test_a_truncated_tail_is_reported_at_close(items: list[bytes], tail: bytes) -> None:
    frame = encode_frame(tail)
    decoder = LengthPrefixDecoder()
    out = decoder.feed(b"".join(encode_frame(x) for x in items) + frame[: len(frame) - 1])
    assert out == items
    try:
        decoder.close()
    except RemoteProtocolError:
        return
    raise AssertionError("a truncated frame was accepted")
