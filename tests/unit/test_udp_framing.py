"""Vectors and bad input for the UDP framings (PT 3.0 section 1.5.4)."""

from __future__ import annotations

import pytest

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.udp.framing import (
    MAX_UDP_PAYLOAD,
    LengthPrefixDecoder,
    StunDecoder,
    encode_frame,
    is_stun,
    new_decoder,
    stun_problem,
)

# RFC 5769 section 2.1, "Sample Request" (checked below: its FINGERPRINT CRC is right).
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573"
    "7420636c69656e74002400046e0001ff80290008932ff9b151263b3600060009"
    "6576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249"
    "c1b571a280280004e57a3bcf"
)
# A minimal RFC 5389 Binding request (no attributes).
BINDING = bytes.fromhex("000100002112a4420102030405060708090a0b0c")
# What Debian's `stun` 0.97 sends (RFC 3489: no magic cookie; CHANGE-REQUEST attribute).
CLASSIC = bytes.fromhex("00010008019b4d7d64e3a116f459985e3e0716580003000400000000")


def test_frame_is_big_endian_length_then_payload() -> None:
    assert encode_frame(b"") == b"\x00\x00"
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(bytes(0x1234))[:2] == b"\x12\x34"  # network byte order, not little-endian
    assert encode_frame(bytes(65535))[:2] == b"\xff\xff"
    with pytest.raises(ValueError):
        encode_frame(bytes(65536))


def test_decoder_splits_frames_and_keeps_empty_datagrams() -> None:
    d = LengthPrefixDecoder()
    stream = b"".join(encode_frame(x) for x in (b"one", b"", b"three", bytes(MAX_UDP_PAYLOAD)))
    assert d.feed(stream) == [b"one", b"", b"three", bytes(MAX_UDP_PAYLOAD)]
    assert d.buffered == 0
    d.close()


def test_decoder_byte_by_byte() -> None:
    d = LengthPrefixDecoder()
    out: list[bytes] = []
    for byte in encode_frame(b"hello") + encode_frame(b"world"):
        out += d.feed(bytes([byte]))
    assert out == [b"hello", b"world"]


def test_need_more_is_an_empty_list() -> None:
    d = LengthPrefixDecoder()
    assert d.feed(b"\x00") == []
    assert d.feed(b"\x05ab") == []
    assert d.buffered == 4
    assert d.feed(b"cde\x00") == [b"abcde"]
    assert d.buffered == 1


@pytest.mark.parametrize("tail", [b"\x00", b"\x00\x05abc", b"\xff\xff" + bytes(100)])
def test_truncated_frame_at_eof_is_a_remote_error(tail: bytes) -> None:
    d = LengthPrefixDecoder()
    assert d.feed(encode_frame(b"ok") + tail) == [b"ok"]
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        d.close()


def test_stun_checks() -> None:
    assert is_stun(RFC5769_REQUEST)
    assert is_stun(BINDING)
    assert not is_stun(CLASSIC)
    assert is_stun(CLASSIC, classic=True)
    assert stun_problem(b"\x00" * 19) is not None
    assert "top two bits" in (stun_problem(b"\x40" + BINDING[1:]) or "")
    assert "multiple of 4" in (stun_problem(BINDING[:2] + b"\x00\x02" + BINDING[4:] + b"xx") or "")
    assert "does not match" in (stun_problem(BINDING + b"\x00" * 4) or "")
    assert "magic cookie" in (stun_problem(BINDING[:4] + b"\x00" * 4 + BINDING[8:]) or "")
    assert not is_stun(b"GET / HTTP/1.1\r\n\r\n\r\n")


def test_stun_stream_split() -> None:
    d = StunDecoder()
    stream = RFC5769_REQUEST + BINDING + RFC5769_REQUEST
    assert d.feed(stream[:30]) == []
    assert d.feed(stream[30:]) == [RFC5769_REQUEST, BINDING, RFC5769_REQUEST]
    d.close()
    classic = StunDecoder(classic=True)
    assert classic.feed(CLASSIC + BINDING) == [CLASSIC, BINDING]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x80" + bytes(19),  # top bits set (a TURN ChannelData / RTP / anything else)
        b"\x00\x01\x00\x03" + bytes(16),  # length not a multiple of 4
        b"\x00\x01\x00\x00" + b"\xde\xad\xbe\xef" + bytes(12),  # no magic cookie
        b"\xc0",  # detectably wrong from the first byte
    ],
)
def test_non_stun_in_stun_stream_is_a_remote_error(garbage: bytes) -> None:
    d = StunDecoder()
    with pytest.raises(RemoteProtocolError, match="not a STUN stream"):
        d.feed(BINDING + garbage)


def test_stun_length_larger_than_the_rest_at_close() -> None:
    d = StunDecoder()
    huge = RFC5769_REQUEST[:2] + b"\xff\xfc" + RFC5769_REQUEST[4:]
    assert d.feed(huge) == []
    with pytest.raises(RemoteProtocolError, match="inside a STUN message"):
        d.close()


def test_new_decoder_picks_the_framing() -> None:
    assert isinstance(new_decoder(stun=False), LengthPrefixDecoder)
    stun = new_decoder(stun=True, classic=True)
    assert isinstance(stun, StunDecoder) and stun.classic
