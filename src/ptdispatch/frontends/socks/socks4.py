"""Sans-IO SOCKS4 / SOCKS4a server: the same events as :mod:`.protocol`.

Request: ``VN=4 CD=1 DSTPORT(2) DSTIP(4) USERID NUL`` and, for SOCKS4a (``DSTIP`` = 0.0.0.x with
x != 0), ``HOSTNAME NUL`` after it.  Tor and pt-spec 3.5 carry a transport's per-connection
arguments in ``USERID`` as ``k=v;k=v`` (``\\`` escaping); an empty ``USERID`` means no arguments.
Replies are 8 bytes: ``0 CD DSTPORT DSTIP`` with CD 0x5A (granted) or 0x5B (rejected or failed).
Only CONNECT is supported.  ``USERID`` and ``HOSTNAME`` are bounded before anything is buffered
past the limit, so a client that never sends the NUL costs at most that much memory.
"""

from __future__ import annotations

import enum
import ipaddress
import struct

from ...ipc.args import connection_args
from ...net.addr import Address
from .protocol import NEED_DATA, Event, Failure, Reply, Request

VERSION = 4
CMD_CONNECT = 1
GRANTED, REJECTED = 0x5A, 0x5B
MAX_USERID = 8192
MAX_HOSTNAME = 255
_HEADER = 8  # VN CD DSTPORT DSTIP


def reply(code: Reply | int) -> bytes:
    """A SOCKS4 reply: 0x5A for :attr:`Reply.SUCCEEDED`, 0x5B for every failure."""
    status = GRANTED if int(code) == Reply.SUCCEEDED else REJECTED
    return bytes((0, status, 0, 0, 0, 0, 0, 0))


class _State(enum.Enum):
    REQUEST = "request"
    DONE = "done"


class Socks4Server:
    """One SOCKS4/4a server-side handshake (same surface as ``Socks5Server``)."""

    def __init__(self, *, max_userid: int = MAX_USERID) -> None:
        self._buf = bytearray()
        self._out = bytearray()
        self._state = _State.REQUEST
        self._max_userid = max_userid

    @property
    def awaiting_json_block(self) -> bool:
        """SOCKS4 has no PT 3.0 parameter block (present for the frontend's sake)."""
        return False

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def fail(self, code: Reply, message: str) -> Failure:
        """Queue a rejection (any non-success ``code``) and end the handshake."""
        self._out += reply(code if int(code) != Reply.SUCCEEDED else Reply.GENERAL_FAILURE)
        self._state = _State.DONE
        return Failure(message)

    def receive_data(self, data: bytes) -> Event:
        """Consume ``data``; return the next event (NEED_DATA until the request is complete)."""
        if self._state is _State.DONE:
            return Failure("data after the handshake ended")
        self._buf += data
        event = self._request()
        if event is not NEED_DATA:
            self._state = _State.DONE
        return event

    def _request(self) -> Event:
        buf = self._buf
        if buf and buf[0] != VERSION:
            return Failure(f"not SOCKS4 (version byte {buf[0]:#04x})")
        if len(buf) < _HEADER + 1:
            return NEED_DATA
        end = buf.find(b"\x00", _HEADER)
        if end < 0:
            if len(buf) - _HEADER > self._max_userid:
                return self.fail(Reply.GENERAL_FAILURE, f"SOCKS4 USERID longer than {self._max_userid} bytes")
            return NEED_DATA
        if end - _HEADER > self._max_userid:
            return self.fail(Reply.GENERAL_FAILURE, f"SOCKS4 USERID longer than {self._max_userid} bytes")
        cmd = buf[1]
        (port,) = struct.unpack_from(">H", buf, 2)
        ip = bytes(buf[4:8])
        userid = bytes(buf[_HEADER:end])
        found = self._host(ip, end + 1)
        if not isinstance(found, tuple):
            return found
        host, rest = found
        leftover = bytes(buf[rest:])
        buf.clear()
        if cmd != CMD_CONNECT:
            return self.fail(Reply.COMMAND_NOT_SUPPORTED, f"SOCKS4 command {cmd} not supported (only CONNECT)")
        try:
            args: dict[str, object] = dict(connection_args(userid.decode("utf-8"))) if userid else {}
        except ValueError as exc:  # the text is secret: the codec's message would show a byte of it
            problem = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
            return self.fail(Reply.ARGS_INVALID, f"bad per-connection arguments in SOCKS4 USERID: {problem}")
        return Request(Address(host, port), args, leftover)

    def _host(self, ip: bytes, start: int) -> tuple[str, int] | Event:
        """The destination host and where the request ends (SOCKS4a: a host name at ``start``)."""
        if ip[:3] != b"\x00\x00\x00" or ip[3] == 0:
            return str(ipaddress.IPv4Address(ip)), start
        buf = self._buf
        end = buf.find(b"\x00", start)
        if end < 0:
            if len(buf) - start > MAX_HOSTNAME:
                return self.fail(Reply.GENERAL_FAILURE, f"SOCKS4a host name longer than {MAX_HOSTNAME} bytes")
            return NEED_DATA
        raw = bytes(buf[start:end])
        try:
            host = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self.fail(Reply.HOST_UNREACHABLE, "SOCKS4a host name is not valid UTF-8")
        if not host or len(raw) > MAX_HOSTNAME:
            return self.fail(Reply.HOST_UNREACHABLE, "SOCKS4a host name is empty or too long")
        try:
            host.encode("idna")  # what getaddrinfo does first; it raises UnicodeError, not gaierror
        except UnicodeError:
            return self.fail(Reply.HOST_UNREACHABLE, "SOCKS4a host name is not valid")
        return host, end + 1
