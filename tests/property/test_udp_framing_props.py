"""Properties of the UDP framings: chunking never matters; garbage gives only RemoteProtocolError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.udp.framing import STUN_MAGIC, Decoder, LengthPrefixDecoder, StunDecoder, encode_frame, is_stun
from tests.chunking import split

datagrams = st.lists(st.binary(max_size=3000), max_size=20)


@st.composite
def stun_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 0x3FFF))
    body = draw(st.binary(max_size=400))
    body += bytes(-len(body) % 4)
    txid = draw(st.binary(min_size=12, max_size=12))
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + STUN_MAGIC + txid + body


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
    assert sum(len(x) for x in out) + (0 if stun else 2 * len(out)) == len(garbage)


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
