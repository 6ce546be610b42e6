"""Vectors and bad input for the UDP framings (PT 3.0 section 1.5.4)."""

from __future__ import annotations

import pytest

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.udp.framing import (
    MAX_UDP_PAYLOAD,
    LengthPrefixDecoder,
    StunDecoder,
    encode_frame,
    encode_stun,
    is_stun,
    new_decoder,
    stun_mode_problem,
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
# TURN ChannelData (RFC 5766 section 11.4, RFC 8656 section 12.4): channel number, length, data.
ODD = bytes.fromhex("4000000568656c6c6f")  # channel 0x4000, 5 bytes "hello": 3 bytes of padding on a stream
ODD_PADDED = ODD + bytes(3)
EIGHT = bytes.fromhex("7fff0008") + b"8 bytes!"  # the highest channel, a length that needs no padding
EMPTY = bytes.fromhex("40000000")  # no data at all: the 4-byte header alone


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
        b"\x80" + bytes(19),  # top bits 10: neither STUN nor ChannelData (RTP, anything else)
        b"\x80\x00\x00\x00",  # channel 0x8000: beyond RFC 5766's 0x4000-0x7FFF
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


def test_channel_data_checks() -> None:
    for message in (ODD, ODD_PADDED, EIGHT, EMPTY, EMPTY[:1] + b"\x00\x00\x00"):
        assert stun_mode_problem(message) is None, message.hex()
        assert stun_mode_problem(message, classic=True) is None, message.hex()
        assert not is_stun(message)  # stun_problem and is_stun stay about STUN alone
    assert stun_mode_problem(BINDING) is None
    assert stun_mode_problem(CLASSIC, classic=True) is None
    assert "magic cookie" in (stun_mode_problem(CLASSIC) or "")
    # Padding over UDP is optional (RFC 8656 section 12.5), partial padding is still within it; more is not.
    assert stun_mode_problem(ODD + bytes(1)) is None
    assert "does not match" in (stun_mode_problem(ODD_PADDED + bytes(1)) or "")
    assert "does not match" in (stun_mode_problem(EIGHT + bytes(4)) or "")
    # Truncated: the length says more than the datagram holds; or not even a header.
    assert "does not match" in (stun_mode_problem(ODD[:-1]) or "")
    assert "does not match" in (stun_mode_problem(bytes.fromhex("40000006") + b"hello") or "")
    assert "shorter than a ChannelData header" in (stun_mode_problem(b"\x40\x00\x00") or "")
    # Channel numbers outside 0x4000-0x7FFF.
    assert "neither" in (stun_mode_problem(bytes.fromhex("80000005") + b"hello" + bytes(3)) or "")
    assert "neither" in (stun_mode_problem(bytes.fromhex("ffff0000")) or "")
    assert stun_mode_problem(bytes.fromhex("3fff0005") + b"hello") is not None  # read as STUN, and not STUN
    assert stun_mode_problem(bytes.fromhex("3fff0010") + bytes(16)) is not None
    assert stun_mode_problem(b"") is not None


def test_stream_form_pads_channel_data_to_4() -> None:
    assert encode_stun(ODD) == ODD_PADDED
    assert encode_stun(ODD_PADDED) == ODD_PADDED
    assert encode_stun(ODD + bytes(2)) == ODD_PADDED
    assert encode_stun(EIGHT) == EIGHT
    assert encode_stun(EMPTY) == EMPTY
    assert encode_stun(BINDING) == BINDING
    assert encode_stun(RFC5769_REQUEST) == RFC5769_REQUEST


def test_channel_data_stream_split() -> None:
    stream = BINDING + ODD_PADDED + EIGHT + EMPTY + RFC5769_REQUEST + ODD_PADDED
    expected = [BINDING, ODD, EIGHT, EMPTY, RFC5769_REQUEST, ODD]  # delivered without their padding
    d = StunDecoder()
    assert d.feed(stream) == expected
    assert d.buffered == 0
    d.close()
    one_by_one = StunDecoder(classic=True)
    out: list[bytes] = []
    for byte in stream:
        out += one_by_one.feed(bytes([byte]))
    assert out == expected
    one_by_one.close()


def test_small_channel_data_needs_no_stun_header_worth_of_bytes() -> None:
    d = StunDecoder()
    assert d.feed(BINDING) == [BINDING]
    assert d.feed(EMPTY) == [EMPTY]  # 4 bytes: whole, though a STUN header is 20
    assert d.feed(ODD_PADDED) == [ODD]
    assert d.feed(EMPTY[:2]) == []
    assert d.feed(EMPTY[2:]) == [EMPTY]
    assert d.feed(BINDING[:4]) == []
    assert d.feed(BINDING[4:] + EMPTY) == [BINDING, EMPTY]


def test_channel_data_waits_for_its_padding() -> None:
    d = StunDecoder()
    assert d.feed(ODD) == []  # on a stream the padding is not optional (RFC 5766 section 11.5)
    assert d.buffered == len(ODD)
    assert d.feed(bytes(2)) == []
    assert d.feed(bytes(1) + EMPTY) == [ODD, EMPTY]
    # The padding's content is not looked at (the RFCs leave it undefined).
    assert d.feed(ODD + b"xyz") == [ODD]


@pytest.mark.parametrize("tail", [ODD, ODD_PADDED[:-1], EIGHT[:5], EMPTY[:3], b"\x7f"])
def test_truncated_channel_data_at_close(tail: bytes) -> None:
    d = StunDecoder()
    assert d.feed(BINDING + tail) == [BINDING]
    with pytest.raises(RemoteProtocolError, match="inside a ChannelData message"):
        d.close()


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("80000005") + b"hello" + bytes(3),  # channel 0x8000
        bytes.fromhex("ffff0000"),  # channel 0xFFFF
        bytes.fromhex("3fff0005") + b"hello" + bytes(3) + BINDING,  # channel 0x3FFF: a STUN type, length 5
        bytes.fromhex("3fff0008") + b"8 bytes!" + BINDING,  # ... length 8, and no magic cookie
    ],
)
def test_channel_numbers_out_of_range_in_a_stream(garbage: bytes) -> None:
    d = StunDecoder()
    with pytest.raises(RemoteProtocolError, match="not a STUN stream"):
        d.feed(ODD_PADDED + garbage)


def test_largest_channel_data() -> None:
    data = bytes(range(256)) * 255 + bytes(range(255))  # 65,535 bytes: the largest a length can say
    message = b"\x40\x01\xff\xff" + data
    stream = encode_stun(message)
    assert len(stream) == 65_540
    d = StunDecoder()
    assert d.feed(stream[:100]) == []
    assert d.feed(stream[100:-1]) == []
    assert d.buffered == 65_539
    assert d.feed(stream[-1:]) == [message]
