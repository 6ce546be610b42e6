"""Sans-IO SOCKS5 server: feed bytes with :meth:`Socks5Server.receive_data`, get one event.

Methods offered by the client are chosen in this order: 0x09 (PT 3.0 JSON parameter block),
0x02 (RFC 1929 user/password carrying Tor-style ``k=v;k=v`` arguments), 0x00 (none).
After 0x09 no status byte is sent: errors come back as SOCKS5 replies with the PT codes.
Only CONNECT is supported.  Nothing is allocated for a parameter block before its length is checked.
"""

from __future__ import annotations

import enum
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ...ipc.args import connection_args
from ...net.addr import Address

VERSION = 5
METHOD_NONE, METHOD_USERPASS, METHOD_JSON, METHOD_NO_ACCEPTABLE = 0x00, 0x02, 0x09, 0xFF
CMD_CONNECT = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
MAX_JSON_BLOCK = 64 * 1024


class Reply(enum.IntEnum):
    """RFC 1928 reply codes, and the PT 3.0 per-connection argument codes 0x10-0x13."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08
    ARGS_TOO_LARGE = 0x10
    ARGS_TIMEOUT = 0x11
    ARGS_NOT_JSON = 0x12
    ARGS_INVALID = 0x13


def reply(code: Reply | int) -> bytes:
    """A SOCKS5 reply with bound address 0.0.0.0:0."""
    return bytes((VERSION, int(code), 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0))


@dataclass(frozen=True)
class Request:
    """The client asked to CONNECT to ``address`` with per-connection ``args``."""

    address: Address
    args: dict[str, object] = field(default_factory=dict)
    #: Bytes the client sent after the request (optimistic data).
    leftover: bytes = b""


@dataclass(frozen=True)
class Failure:
    """The handshake failed; send :attr:`Socks5Server.data_to_send` output, then close."""

    message: str


class NeedData:
    """More bytes are needed."""


NEED_DATA = NeedData()
Event = Request | Failure | NeedData


class _State(enum.Enum):
    GREETING = "greeting"
    USERPASS = "userpass"
    JSON_BLOCK = "json-block"
    REQUEST = "request"
    DONE = "done"


class Socks5Server:
    """One SOCKS5 server-side handshake."""

    def __init__(self, *, max_json_block: int = MAX_JSON_BLOCK) -> None:
        self._buf = bytearray()
        self._out = bytearray()
        self._state = _State.GREETING
        self._args: dict[str, object] = {}
        self._max_json = max_json_block
        self.method: int | None = None

    @property
    def awaiting_json_block(self) -> bool:
        return self._state is _State.JSON_BLOCK

    @property
    def awaiting_request(self) -> bool:
        """The method (and its arguments, :attr:`args`) are settled; the CONNECT request is next."""
        return self._state is _State.REQUEST

    @property
    def args(self) -> dict[str, object]:
        """The per-connection arguments (final once :attr:`awaiting_request`)."""
        return self._args

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> Event:
        """Consume ``data``; return the next event (NEED_DATA until one is complete)."""
        if self._state is _State.DONE:
            return Failure("data after the handshake ended")
        self._buf += data
        while True:
            event = _STEPS[self._state](self)
            if event is None:
                continue  # state advanced; parse on
            if not isinstance(event, NeedData):
                self._state = _State.DONE
            return event

    def fail(self, code: Reply, message: str) -> Failure:
        """Queue an error reply (used by the frontend for timeouts and rejected args)."""
        self._out += reply(code)
        self._state = _State.DONE
        return Failure(message)

    # --- steps: each returns an event, or None after advancing the state -------------------------
    def _greeting(self) -> Event | None:
        buf = self._buf
        if len(buf) < 2:
            return NEED_DATA
        if buf[0] != VERSION:
            return Failure(f"not SOCKS5 (version byte {buf[0]:#04x})")
        if buf[1] == 0:
            return Failure("SOCKS5 greeting offers no methods")
        if len(buf) < 2 + buf[1]:
            return NEED_DATA
        offered = set(buf[2 : 2 + buf[1]])
        del buf[: 2 + buf[1]]
        method = next((m for m in (METHOD_JSON, METHOD_USERPASS, METHOD_NONE) if m in offered), None)
        if method is None:
            self._out += bytes((VERSION, METHOD_NO_ACCEPTABLE))
            return Failure("no acceptable SOCKS5 authentication method offered")
        state = {METHOD_JSON: _State.JSON_BLOCK, METHOD_USERPASS: _State.USERPASS}.get(method, _State.REQUEST)
        self.method = method
        self._out += bytes((VERSION, method))
        self._state = state
        return None

    def _userpass(self) -> Event | None:
        buf = self._buf
        if len(buf) < 2:
            return NEED_DATA
        if buf[0] != 1:
            return Failure(f"bad RFC 1929 version {buf[0]:#04x}")
        ulen = buf[1]
        if len(buf) < 3 + ulen:
            return NEED_DATA
        plen = buf[2 + ulen]
        if len(buf) < 3 + ulen + plen:
            return NEED_DATA
        user = bytes(buf[2 : 2 + ulen])
        password = bytes(buf[3 + ulen : 3 + ulen + plen])
        del buf[: 3 + ulen + plen]
        text = user + (b"" if password == b"\x00" else password)
        try:
            self._args = dict(connection_args(text.decode("utf-8")))
        except ValueError as exc:  # the text is secret: the codec's message would show a byte of it
            self._out += b"\x01\x01"
            problem = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
            return Failure(f"bad per-connection arguments in SOCKS5 user/password: {problem}")
        self._out += b"\x01\x00"
        self._state = _State.REQUEST
        return None

    def _json_block(self) -> Event | None:
        buf = self._buf
        if len(buf) < 4:
            return NEED_DATA
        (length,) = struct.unpack_from(">I", buf)
        if length > self._max_json:
            return self.fail(Reply.ARGS_TOO_LARGE, f"parameter block of {length} bytes exceeds {self._max_json}")
        if len(buf) < 4 + length:
            return NEED_DATA
        block = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        try:
            value = json.loads(block.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
            return self.fail(Reply.ARGS_NOT_JSON, "parameter block is not UTF-8 JSON")
        if not isinstance(value, dict):
            return self.fail(Reply.ARGS_NOT_JSON, f"parameter block is a JSON {type(value).__name__}, not an object")
        self._args = value
        self._state = _State.REQUEST
        return None

    def _request(self) -> Event | None:
        buf = self._buf
        if len(buf) < 5:
            return NEED_DATA
        if buf[0] != VERSION:
            return Failure(f"bad SOCKS5 request version {buf[0]:#04x}")
        cmd, atyp = buf[1], buf[3]
        if atyp == ATYP_IPV4:
            end = 4 + 4
        elif atyp == ATYP_IPV6:
            end = 4 + 16
        elif atyp == ATYP_DOMAIN:
            end = 5 + buf[4]
        else:
            return self.fail(Reply.ADDRESS_TYPE_NOT_SUPPORTED, f"address type {atyp} not supported")
        if len(buf) < end + 2:
            return NEED_DATA
        if cmd != CMD_CONNECT:
            return self.fail(Reply.COMMAND_NOT_SUPPORTED, f"SOCKS5 command {cmd} not supported (only CONNECT)")
        raw = bytes(buf[4:end]) if atyp != ATYP_DOMAIN else bytes(buf[5:end])
        (port,) = struct.unpack_from(">H", buf, end)
        leftover = bytes(buf[end + 2 :])
        buf.clear()
        if atyp == ATYP_DOMAIN:
            try:
                host = raw.decode("utf-8")
                host.encode("idna")  # what getaddrinfo does first; it raises UnicodeError, not gaierror
            except UnicodeError:
                return self.fail(Reply.HOST_UNREACHABLE, "domain name is not valid")
            if not host:
                return self.fail(Reply.HOST_UNREACHABLE, "empty domain name")
        else:
            host = socket.inet_ntop(socket.AF_INET if atyp == ATYP_IPV4 else socket.AF_INET6, raw)
        return Request(Address(host, port), self._args, leftover)


_STEPS: dict[_State, Callable[[Socks5Server], Event | None]] = {
    _State.GREETING: Socks5Server._greeting,
    _State.USERPASS: Socks5Server._userpass,
    _State.JSON_BLOCK: Socks5Server._json_block,
    _State.REQUEST: Socks5Server._request,
}
"""The parsing step for each state of the handshake."""
