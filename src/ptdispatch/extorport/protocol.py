"""The client side of tor's Extended ORPort, as a sans-IO state machine.

A server-side pluggable transport connects to tor's ExtORPort, authenticates with SAFE_COOKIE,
tells tor the client's address (USERADDR) and the transport's name (TRANSPORT), sends DONE and
waits for OKAY; after that the connection carries the ordinary OR stream.  See torspec
``ext-orport-spec.txt`` (proposals 196 and 217)::

    tor -> PT   AuthTypes... 0x00
    PT  -> tor  0x01 (SAFE_COOKIE) || ClientNonce[32]
    tor -> PT   ServerHash[32] || ServerNonce[32]
    PT  -> tor  ClientHash[32]
    tor -> PT   Status[1]                    (1 = success)
    PT  -> tor  USERADDR, TRANSPORT, DONE    (u16 command || u16 length || body, big-endian)
    tor -> PT   OKAY | DENY                  (unknown commands are ignored, as the spec requires)

:class:`ExtOrClient` holds no socket: feed it what tor sends with :meth:`ExtOrClient.receive_data`
and write what :meth:`ExtOrClient.data_to_send` returns.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import re
import struct
from collections.abc import Callable

from ..errors import HandshakeTimeout, LocalProtocolError, RemoteProtocolError
from ..net.addr import Address, parse_hostport

COOKIE_LEN = 32
NONCE_LEN = 32
HASH_LEN = 32
AUTH_SAFE_COOKIE = 0x01
SERVER_HASH_CONST = b"ExtORPort authentication server-to-client hash"
CLIENT_HASH_CONST = b"ExtORPort authentication client-to-server hash"

CMD_DONE = 0x0000
CMD_USERADDR = 0x0001
CMD_TRANSPORT = 0x0002
CMD_OKAY = 0x1000
CMD_DENY = 0x1001
CMD_CONTROL = 0x1002  # "not used" by tor; ignored like any unknown command

#: AuthTypes are distinct values 1..255, so a longer list without its 0x00 end is garbage.
MAX_AUTH_TYPES = 255

_HEADER = struct.Struct(">HH")
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ExtOrPortError(RemoteProtocolError):
    """tor's Extended ORPort refused us or broke the protocol; the connection must be closed."""


class ExtOrPortAuthError(ExtOrPortError):
    """SAFE_COOKIE authentication failed (wrong cookie, no common auth type, status 0)."""


class ExtOrPortDenied(ExtOrPortError):
    """tor answered DENY: it wants no more traffic from this client address for a while."""


class ExtOrPortTimeout(ExtOrPortError, HandshakeTimeout):
    """The ExtORPort handshake did not complete in time."""


class State(enum.Enum):
    """Where the handshake stands; the value says what we are waiting for (used in messages)."""

    AUTH_TYPES = "waiting for the offered authentication types"
    SERVER_HASH = "waiting for ServerHash and ServerNonce"
    AUTH_STATUS = "waiting for the authentication status"
    REPLY = "waiting for OKAY or DENY"
    DONE = "done"
    FAILED = "failed"


def server_hash(cookie: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """HMAC-SHA256(cookie, "ExtORPort authentication server-to-client hash" | CN | SN)."""
    return hmac.digest(cookie, SERVER_HASH_CONST + client_nonce + server_nonce, "sha256")


def client_hash(cookie: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """HMAC-SHA256(cookie, "ExtORPort authentication client-to-server hash" | CN | SN)."""
    return hmac.digest(cookie, CLIENT_HASH_CONST + client_nonce + server_nonce, "sha256")


def encode_command(command: int, body: bytes = b"") -> bytes:
    """One Extended ORPort message: u16 command || u16 body length || body."""
    if len(body) > 0xFFFF:
        raise LocalProtocolError(f"ExtORPort command body of {len(body)} bytes exceeds 65535")
    return _HEADER.pack(command, len(body)) + body


def format_useraddr(client_addr: Address | str) -> bytes:
    """The USERADDR body: ``1.2.3.4:5678`` or ``[1:2::3:4]:5678`` (the only forms the spec allows).

    IPv4-mapped IPv6 addresses (from dual-stack sockets) become plain IPv4 and a scope id
    (``fe80::1%eth0``) is dropped, since tor parses neither.
    """
    if isinstance(client_addr, str):
        try:
            client_addr = parse_hostport(client_addr, require_ip=False)
        except ValueError as exc:
            raise LocalProtocolError(f"bad client address for USERADDR: {exc}") from None
    host, port = client_addr
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        raise LocalProtocolError(f"client address {host!r} for USERADDR is not an IP address") from None
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"client port {port} for USERADDR is outside 0-65535")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    text = f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"
    return text.encode("ascii")


class ExtOrClient:
    """SAFE_COOKIE authentication and USERADDR/TRANSPORT/DONE, from the transport's side.

    ``cookie`` is the 32-byte secret from tor's cookie file (see :mod:`.cookie`), ``client_addr``
    the address of the transport's client (``None`` sends no USERADDR), ``rng(n)`` gives ``n``
    random bytes for the client nonce.  Bad arguments raise
    :class:`~ptdispatch.errors.LocalProtocolError`; anything wrong on the wire raises an
    :class:`ExtOrPortError` and leaves the object in :attr:`State.FAILED`.
    """

    def __init__(
        self,
        cookie: bytes,
        transport_name: str,
        client_addr: Address | str | None,
        rng: Callable[[int], bytes],
    ) -> None:
        if len(cookie) != COOKIE_LEN:
            raise LocalProtocolError(f"the ExtORPort cookie must be {COOKIE_LEN} bytes, not {len(cookie)}")
        if not _C_IDENTIFIER.match(transport_name):
            raise LocalProtocolError(f"transport name {transport_name!r} is not a C identifier, which tor requires")
        self._cookie = bytes(cookie)
        self._commands = b"".join(
            [
                encode_command(CMD_USERADDR, format_useraddr(client_addr)) if client_addr is not None else b"",
                encode_command(CMD_TRANSPORT, transport_name.encode("ascii")),
                encode_command(CMD_DONE),
            ]
        )
        self._rng = rng
        self._client_nonce = b""
        self._state = State.AUTH_TYPES
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._leftover = b""
        #: How many commands tor sent that we did not understand (and ignored, per the spec).
        self.ignored_commands = 0

    @property
    def state(self) -> State:
        return self._state

    @property
    def done(self) -> bool:
        """tor answered OKAY: the connection now carries the OR stream."""
        return self._state is State.DONE

    @property
    def leftover(self) -> bytes:
        """Bytes tor sent after OKAY: the start of the OR stream, to be relayed first."""
        return self._leftover

    def data_to_send(self) -> bytes:
        """Take the bytes to write to tor now (maybe ``b""``)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Consume bytes from tor; ``b""`` means tor closed the connection."""
        if self._state in (State.DONE, State.FAILED):
            raise LocalProtocolError(f"receive_data() called on an ExtORPort handshake that is {self._state.value}")
        try:
            if not data:
                raise ExtOrPortError(f"ExtORPort closed the connection while {self._state.value}")
            self._buffer += data
            while self._step():
                pass
        except ExtOrPortError:
            self._state = State.FAILED
            self._buffer.clear()
            self._outgoing.clear()
            raise

    def _step(self) -> bool:
        """Advance by one message if the buffer holds it; return whether to try again."""
        state = self._state
        if state is State.AUTH_TYPES:
            return self._on_auth_types()
        if state is State.SERVER_HASH:
            return self._on_server_hash()
        if state is State.AUTH_STATUS:
            return self._on_status()
        if state is State.REPLY:
            return self._on_reply()
        return False

    def _on_auth_types(self) -> bool:
        end = self._buffer.find(0)
        if end < 0:
            if len(self._buffer) > MAX_AUTH_TYPES:
                raise ExtOrPortError("ExtORPort sent an authentication type list with no end")
            return False
        offered = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if AUTH_SAFE_COOKIE not in offered:
            raise ExtOrPortAuthError(
                f"ExtORPort does not offer SAFE_COOKIE authentication (offered: {list(offered) or 'none'})"
            )
        self._client_nonce = self._rng(NONCE_LEN)
        if len(self._client_nonce) != NONCE_LEN:
            raise LocalProtocolError(f"rng returned {len(self._client_nonce)} bytes instead of {NONCE_LEN}")
        self._outgoing += bytes([AUTH_SAFE_COOKIE]) + self._client_nonce
        self._state = State.SERVER_HASH
        return True

    def _on_server_hash(self) -> bool:
        if len(self._buffer) < HASH_LEN + NONCE_LEN:
            return False
        their_hash = bytes(self._buffer[:HASH_LEN])
        server_nonce = bytes(self._buffer[HASH_LEN : HASH_LEN + NONCE_LEN])
        del self._buffer[: HASH_LEN + NONCE_LEN]
        expected = server_hash(self._cookie, self._client_nonce, server_nonce)
        if not hmac.compare_digest(expected, their_hash):
            raise ExtOrPortAuthError("ExtORPort server hash mismatch: wrong cookie?")
        self._outgoing += client_hash(self._cookie, self._client_nonce, server_nonce)
        self._state = State.AUTH_STATUS
        return True

    def _on_status(self) -> bool:
        if not self._buffer:
            return False
        status = self._buffer[0]
        del self._buffer[:1]
        if status != 1:
            raise ExtOrPortAuthError(f"ExtORPort rejected our authentication (status {status}): wrong cookie?")
        self._outgoing += self._commands
        self._state = State.REPLY
        return True

    def _on_reply(self) -> bool:
        if len(self._buffer) < _HEADER.size:
            return False
        command, length = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return False
        del self._buffer[:end]
        if command == CMD_OKAY:
            self._state = State.DONE
            self._leftover = bytes(self._buffer)
            self._buffer.clear()
            return False
        if command == CMD_DENY:
            raise ExtOrPortDenied("ExtORPort denied the connection")
        # ext-orport-spec 3.1: "Parties MUST ignore command codes that they do not understand."
        self.ignored_commands += 1
        return True
