"""The obfs4 server identity on disk, in obfs4proxy's formats.

``<state>/obfs4_state.json``: ``{"node-id":hex20,"private-key":hex32,"public-key":hex32,
"drbg-seed":hex24,"iat-mode":int}`` (mode 0600), created on first start; options ``node-id``,
``private-key``, ``drbg-seed`` (all three or none) and ``iat-mode`` override it and are written
back, as obfs4proxy does.  ``<state>/obfs4_bridgeline.txt`` is the same text obfs4proxy writes;
once the listener is bound it is rewritten with the real port (and the address, unless it is a
wildcard such as 0.0.0.0), leaving only ``<FINGERPRINT>`` (and the wildcard's ``<IP ADDRESS>``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...errors import OptionsError
from ...net.addr import Address
from ..base import Rng
from .framing import MAX_SEGMENT
from .probdist import distribution

STATE_FILE = "obfs4_state.json"
BRIDGE_FILE = "obfs4_bridgeline.txt"
NODE_ID_LENGTH = 20
KEY_LENGTH = 32
SEED_LENGTH = 24
CERT_LENGTH = NODE_ID_LENGTH + KEY_LENGTH

_BRIDGE_HEADER = (
    "# obfs4 torrc client bridge line\n"
    "#\n"
    "# This file is an automatically generated bridge line based on\n"
    "# the current obfs4proxy configuration.  EDITING IT WILL HAVE\n"
    "# NO EFFECT.\n"
    "#\n"
    "# Before distributing this Bridge, edit the placeholder fields\n"
    "# to contain the actual values:\n"
)
_PLACEHOLDERS = {
    "<IP ADDRESS>": "#  <IP ADDRESS>  - The public IP address of your obfs4 bridge.\n",
    "<PORT>": "#  <PORT>        - The TCP/IP port of your obfs4 bridge.\n",
    "<FINGERPRINT>": "#  <FINGERPRINT> - The bridge's fingerprint.\n",
}
BRIDGE_PREFIX = _BRIDGE_HEADER + "".join(_PLACEHOLDERS.values()) + "\n"
"""The comment obfs4proxy writes above the line (all three fields are placeholders there)."""


def _public_host(host: str) -> str:
    """The host to print: a placeholder for a wildcard bind (0.0.0.0, ::), IPv6 in brackets."""
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return "<IP ADDRESS>"
    except ValueError:
        pass
    return f"[{host}]" if ":" in host else host


def encode_cert(node_id: bytes, public: bytes) -> str:
    """base64(NODEID || B) without the trailing ``==`` (70 characters)."""
    return base64.b64encode(node_id + public).decode().removesuffix("==")


def decode_cert(cert: str) -> tuple[bytes, bytes]:
    """``(node_id, public_key)`` from a cert; raises ``ValueError`` with a readable message."""
    try:
        raw = base64.b64decode(cert + "==", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"cert {cert!r} is not valid base64") from None
    if len(raw) != CERT_LENGTH:
        raise ValueError(f"cert decodes to {len(raw)} bytes, expected {CERT_LENGTH} (node id 20 + public key 32)")
    return raw[:NODE_ID_LENGTH], raw[NODE_ID_LENGTH:]


def public_key_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


@dataclass(frozen=True)
class ServerState:
    """A server's long-term identity."""

    node_id: bytes
    private_key: bytes
    public_key: bytes
    drbg_seed: bytes
    iat_mode: int

    @property
    def cert(self) -> str:
        return encode_cert(self.node_id, self.public_key)

    def to_json(self) -> str:
        return json.dumps(
            {
                "node-id": self.node_id.hex(),
                "private-key": self.private_key.hex(),
                "public-key": self.public_key.hex(),
                "drbg-seed": self.drbg_seed.hex(),
                "iat-mode": self.iat_mode,
            },
            separators=(",", ":"),
        )

    def bridge_line(self, address: Address | None = None) -> str:
        """obfs4proxy's text; once the listener is bound (``address``), its port, and its host
        unless it is a wildcard, replace the placeholders (the fingerprint stays one)."""
        host = "<IP ADDRESS>" if address is None else _public_host(address.host)
        port = "<PORT>" if address is None else str(address.port)
        line = f"Bridge obfs4 {host}:{port} <FINGERPRINT> cert={self.cert} iat-mode={self.iat_mode}\n"
        notes = "".join(text for field, text in _PLACEHOLDERS.items() if field in line)
        return f"{_BRIDGE_HEADER}{notes}\n{line}"


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_FROMHEX_SPACE = frozenset(" \t\n\r\v\f")  # what bytes.fromhex skips between bytes


def _hex_fault(value: str) -> str:
    """What makes ``value`` unreadable to ``bytes.fromhex``, without quoting any of it (the
    values are secret keys)."""
    i = 0
    while i < len(value):
        if value[i] in _FROMHEX_SPACE:
            i += 1
        elif value[i] not in _HEX_DIGITS:
            return f"a non-hex character at offset {i}"
        elif i + 1 == len(value):
            return "an odd number of hex digits"
        elif value[i + 1] in _FROMHEX_SPACE:
            return f"whitespace inside a byte at offset {i + 1}"
        elif value[i + 1] not in _HEX_DIGITS:
            return f"a non-hex character at offset {i + 1}"
        else:
            i += 2
    return "not hex"  # not reached: bytes.fromhex accepts what the loop does


def _hex(value: object, key: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise OptionsError("obfs4", f"{key!r} must be a hex string of {length} bytes")
    try:
        raw = bytes.fromhex(value)
    except ValueError:  # the value is a secret (private key, DRBG seed): say where, not what
        raise OptionsError("obfs4", f"{key!r} is not valid hex: {_hex_fault(value)}") from None
    if len(raw) != length:
        raise OptionsError("obfs4", f"{key!r} must be {length} bytes ({2 * length} hex digits), got {len(raw)}")
    return raw


def new_drbg_seed(rng: Rng) -> bytes:
    """A random DRBG seed whose length distribution does not contain 0.

    obfs4proxy 0.0.14 clients in iat-mode 2 panic ("BUG: Write(), iat length was 0") when the
    server's distribution can yield 0, which happens for a few percent of seeds; such seeds are
    redrawn (about one in 30 is), so every obfs4proxy client can use bridges we create.
    """
    while True:
        seed = rng(SEED_LENGTH)
        if 0 not in distribution(seed, 0, MAX_SEGMENT)[0]:
            return seed


def new_state(rng: Rng) -> ServerState:
    """Fresh keys as obfs4proxy makes them (private key = SHA-512(random)[:32])."""
    private = hashlib.sha512(rng(32)).digest()[:KEY_LENGTH]
    return ServerState(rng(NODE_ID_LENGTH), private, public_key_of(private), new_drbg_seed(rng), 0)


def state_from_fields(fields: dict[str, object]) -> ServerState:
    node_id = _hex(fields.get("node-id"), "node-id", NODE_ID_LENGTH)
    private = _hex(fields.get("private-key"), "private-key", KEY_LENGTH)
    seed = _hex(fields.get("drbg-seed"), "drbg-seed", SEED_LENGTH)
    iat = fields.get("iat-mode", 0)
    if isinstance(iat, bool) or not isinstance(iat, int) or not 0 <= iat <= 2:
        raise OptionsError("obfs4", f"invalid iat-mode {iat!r} (0, 1 or 2)")
    return ServerState(node_id, private, public_key_of(private), seed, iat)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (replacing it atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_file(state_dir: Path, rng: Rng) -> dict[str, object]:
    """The state file's fields, creating the file with new keys if it does not exist."""
    # Every failure here is an OptionsError, so that a bad state directory costs obfs4 alone an
    # SMETHOD-ERROR rather than taking the whole dispatcher (and its other transports) down.
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fresh = new_state(rng)
        text = fresh.to_json()
        try:
            make_state_dir(state_dir)
            _write_private(path, text)
        except OSError as exc:
            raise OptionsError("obfs4", f"cannot write the obfs4 state in {state_dir}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise OptionsError("obfs4", f"failed to load statefile {str(path)!r}: not UTF-8") from None
    except OSError as exc:
        raise OptionsError("obfs4", f"cannot read {path}: {exc.strerror}") from None
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise OptionsError("obfs4", f"failed to load statefile {str(path)!r}: {exc}") from None
    if not isinstance(fields, dict):
        raise OptionsError("obfs4", f"failed to load statefile {str(path)!r}: not a JSON object")
    return fields


def make_state_dir(state_dir: Path) -> None:
    """Create ``state_dir`` (mode 0700) if it does not exist; raises OSError."""
    with contextlib.suppress(FileExistsError):
        state_dir.mkdir(mode=0o700, parents=True)


def save(state_dir: Path, state: ServerState) -> None:
    """Write the state file and the bridge line back (as obfs4proxy does on every start)."""
    try:
        make_state_dir(state_dir)
        _write_private(state_dir / STATE_FILE, state.to_json())
        write_bridge_line(state_dir, state)
    except OSError as exc:
        raise OptionsError("obfs4", f"cannot write the obfs4 state in {state_dir}: {exc.strerror}") from None


def write_bridge_line(state_dir: Path, state: ServerState, address: Address | None = None) -> None:
    _write_private(state_dir / BRIDGE_FILE, state.bridge_line(address))
