"""Datagrams in a byte stream (PT 3.0 section 1.5.4), sans-IO.

Two framings:

* **transparent-UDP**: each datagram is prefixed with its length as 2 bytes in network byte order
  (big-endian).  Any payload of 0 to 65,535 bytes can be carried; UDP itself stops at 65,507
  (IPv4) so every datagram fits.
* **STUN**: STUN messages (RFC 5389 section 6) carry their own length, so they are concatenated
  unframed.  The 20-byte header is a 2-byte type whose two top bits are 0, a 2-byte body length
  (a multiple of 4), the magic cookie ``0x2112A442`` and a 12-byte transaction id; the message is
  ``20 + length`` bytes.  With ``classic=True`` the RFC 3489 form (no magic cookie; the 16-byte
  transaction id starts where the cookie would be) is accepted too.

  TURN's ChannelData messages (RFC 5766 section 11.4, RFC 8656 section 12.4) travel the same way:
  the mode is there for TURN servers (PT 3.0 section 1.5.5), and TURN clients (WebRTC's among
  them) send their data as ChannelData as soon as a ChannelBind succeeds.  Its 4-byte header is a
  2-byte channel number in 0x4000-0x7FFF (so the first byte is 0x40-0x7F: top bits 01, where
  STUN's are 00) and a 2-byte length of the data that follows.  On a stream it is padded to a
  multiple of 4 (RFC 5766 section 11.5), the padding not counted in the length, so it takes
  ``4 + length`` rounded up to 4 bytes there; over UDP the padding is optional.  Numbers from
  0x5000 up, reserved by RFC 8656, are still accepted: TURN servers (coturn) take RFC 5766's range,
  and a relay should not refuse what they accept.

Decoders take whatever chunks the stream delivers and return the complete datagrams; an empty list
means "need more".  Bytes that cannot be a frame raise :class:`~ptdispatch.errors.RemoteProtocolError`
and nothing else; so does :meth:`close` when the stream ends inside a frame.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import RemoteProtocolError

MAX_FRAME = 0xFFFF
"""The largest payload a 2-byte length can announce."""
MAX_UDP_PAYLOAD = 65_507
"""The largest UDP payload over IPv4 (65,535 - 8 - 20)."""
STUN_HEADER = 20
CHANNEL_HEADER = 4
"""A TURN ChannelData header: channel number, then length."""
STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_MAGIC_INT = 0x2112A442


def encode_frame(datagram: bytes) -> bytes:
    """``datagram`` with its 2-byte big-endian length in front."""
    size = len(datagram)
    if size > MAX_FRAME:
        raise ValueError(f"a datagram of {size} bytes does not fit a 2-byte length")
    return size.to_bytes(2, "big") + datagram


def stun_problem(data: bytes, *, classic: bool = False) -> str | None:
    """Why ``data`` is not one whole STUN message, or None when it is."""
    if len(data) < STUN_HEADER:
        return f"{len(data)} bytes is shorter than a STUN header"
    problem = _header_problem(data, 0, classic)
    if problem is not None:
        return problem
    body = (data[2] << 8) | data[3]
    if STUN_HEADER + body != len(data):
        return f"STUN length {body} does not match a datagram of {len(data)} bytes"
    return None


def is_stun(data: bytes, *, classic: bool = False) -> bool:
    """True when ``data`` is exactly one well-formed STUN message (header checks only)."""
    return stun_problem(data, classic=classic) is None


def channel_data_problem(data: bytes) -> str | None:
    """Why ``data``, which starts with a channel number, is not one whole ChannelData datagram, or None.

    The datagram holds the message and at most its padding: ``4 + length`` up to that rounded up to 4."""
    if len(data) < CHANNEL_HEADER:
        return f"{len(data)} bytes is shorter than a ChannelData header"
    size = CHANNEL_HEADER + ((data[2] << 8) | data[3])
    if not size <= len(data) <= _padded(size):
        return f"ChannelData length {size - CHANNEL_HEADER} does not match a datagram of {len(data)} bytes"
    return None


def stun_mode_problem(data: bytes, *, classic: bool = False) -> str | None:
    """Why ``data`` may not travel in STUN mode, or None when it is one STUN or ChannelData message.

    The first byte tells them apart: its top two bits are 00 in STUN, 01 in ChannelData."""
    if not data:
        return "an empty datagram"
    if _starts_channel_data(data[0]):
        return channel_data_problem(data)
    if data[0] & 0x80:
        return _neither(data[0])
    return stun_problem(data, classic=classic)


def encode_stun(datagram: bytes) -> bytes:
    """The stream form of a datagram that passed :func:`stun_mode_problem`: ChannelData padded to 4.

    STUN messages are a multiple of 4 already and go as they are; so does padded ChannelData.  The
    padding added is zeros."""
    pad = -len(datagram) % 4
    return datagram + bytes(pad) if pad else datagram


def _starts_channel_data(first: int) -> bool:
    """True when a message starting with the byte ``first`` is TURN ChannelData (channels 0x4000-0x7FFF)."""
    return first & 0xC0 == 0x40


def _padded(size: int) -> int:
    return (size + 3) & ~3


def _neither(first: int) -> str:
    return f"first byte 0x{first:02x} is neither a STUN message type nor a TURN channel number"


def _header_problem(buf: bytes | bytearray, pos: int, classic: bool) -> str | None:
    if buf[pos] & 0xC0:
        return f"first byte 0x{buf[pos]:02x} is not a STUN message type (top two bits must be 0)"
    body = (buf[pos + 2] << 8) | buf[pos + 3]
    if body & 3:
        return f"STUN length {body} is not a multiple of 4"
    if not classic and buf[pos + 4 : pos + 8] != STUN_MAGIC:
        return "no STUN magic cookie"
    return None


class Decoder(Protocol):
    """What both framings offer to the I/O layer."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def close(self) -> None: ...

    @property
    def buffered(self) -> int: ...


class _Buffered:
    """Holds the tail of the stream that does not yet make a whole frame.

    Small chunks are collected in a list and joined only once enough bytes are there for the next
    frame, so a large frame arriving in many pieces costs one copy, not one per piece.
    """

    __slots__ = ("_have", "_need", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0  # bytes needed in total before parsing can make progress

    @property
    def buffered(self) -> int:
        return self._have

    def _take(self, data: bytes) -> bytes | None:
        """Add ``data``; return everything buffered when it is worth parsing, else None."""
        if not self._parts:
            if len(data) >= self._need:
                return data
            self._park(data)
            return None
        self._parts.append(data)
        self._have += len(data)
        if self._have < self._need:
            return None
        joined = b"".join(self._parts)
        self._parts = []
        self._have = 0
        return joined

    def _park(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self._have = len(data)

    def _keep(self, buf: bytes, pos: int, need: int) -> None:
        """Keep ``buf[pos:]``; parsing resumes once ``need`` bytes are buffered."""
        self._need = need
        if pos < len(buf):
            rest = buf[pos:] if pos else buf
            self._parts = [rest]
            self._have = len(rest)


class LengthPrefixDecoder(_Buffered):
    """Splits a stream of 2-byte-length frames into datagrams."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._take(data)
        if buf is None:
            return []
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
            if stop > end:
                self._keep(buf, pos, stop - pos)
                return out
            out.append(buf[pos + 2 : stop])
            pos = stop
        self._keep(buf, pos, 2)
        return out

    def close(self) -> None:
        """The stream ended: complain about a partial frame left behind."""
        if self._have:
            raise RemoteProtocolError(f"stream ended inside a frame ({self._have} bytes left over)")


class StunDecoder(_Buffered):
    """Splits a stream of concatenated STUN and ChannelData messages; anything else is an error.

    ChannelData takes its padded length of the stream (the length field does not count the padding)
    and comes out without the padding, ``4 + length`` bytes, to be sent over UDP as that.  Padded and
    unpadded are both allowed over UDP (RFC 8656 section 12.5); unpadded is the one no receiver can
    take for something else: the datagram is exactly the message its length announces, where
    padding leaves 1 to 3 bytes a receiver must know to ignore.  It is also what coturn sends over
    UDP, so a TURN server's ChannelData reaches the application byte for byte as it was sent, and
    it costs no bytes on the UDP side.  The padding's content is not looked at: the RFCs set no value
    for it.
    """

    __slots__ = ("classic",)

    def __init__(self, *, classic: bool = False) -> None:
        super().__init__()
        self.classic = classic

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._take(data)
        if buf is None:
            return []
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while pos < end:
            first = buf[pos]
            if first & 0x80:
                raise RemoteProtocolError(f"not a STUN stream: {_neither(first)}")
            channel = _starts_channel_data(first)
            header = CHANNEL_HEADER if channel else STUN_HEADER
            if end - pos < header:
                self._keep(buf, pos, header)
                return out
            if not channel:
                problem = _header_problem(buf, pos, self.classic)
                if problem is not None:
                    raise RemoteProtocolError(f"not a STUN stream: {problem}")
            size = header + ((buf[pos + 2] << 8) | buf[pos + 3])
            stop = pos + (_padded(size) if channel else size)
            if stop > end:
                self._keep(buf, pos, stop - pos)
                return out
            out.append(buf[pos : pos + size])
            pos = stop
        self._keep(buf, pos, CHANNEL_HEADER)  # the smallest header: a 4-byte ChannelData is whole
        return out

    def close(self) -> None:
        if self._have:
            kind = "ChannelData" if _starts_channel_data(self._parts[0][0]) else "STUN"
            raise RemoteProtocolError(f"stream ended inside a {kind} message ({self._have} bytes left over)")


def new_decoder(*, stun: bool, classic: bool = False) -> Decoder:
    return StunDecoder(classic=classic) if stun else LengthPrefixDecoder()
