"""The obfs4 variant of Tor's ntor handshake (curve25519, HMAC-SHA256, HKDF-SHA256).

As obfs4proxy's ``common/ntor``: ``secret_input = EXP(Y,x) || EXP(B,x)`` (client) =
``EXP(X,y) || EXP(X,b)`` (server), followed by the suffix ``B || B || X || Y || PROTOID || ID``
(the identity key ``B`` appears twice: a quirk of the Go code that peers depend on).
"""

from __future__ import annotations

import hmac

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

PROTO_ID = b"ntor-curve25519-sha256-1"
T_MAC = PROTO_ID + b":mac"
T_KEY = PROTO_ID + b":key_extract"
T_VERIFY = PROTO_ID + b":key_verify"
M_EXPAND = PROTO_ID + b":key_expand"

KEY_SEED_LENGTH = 32
AUTH_LENGTH = 32


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def exchange(private: X25519PrivateKey | bytes, public: bytes) -> bytes | None:
    """X25519, or ``None`` when the result is all zero (a low-order peer key).

    A raw 32-byte private key goes through libsodium (cheaper per call than building OpenSSL
    key objects); both clamp the scalar and refuse the keys whose product is zero.
    """
    if isinstance(private, bytes):
        try:
            shared: bytes = nacl.bindings.crypto_scalarmult(private, public)
        except RuntimeError:  # libsodium refuses low-order points (their product is all zero)
            return None
        return shared
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return None


def _common(secret: bytes, node_id: bytes, b: bytes, x: bytes, y: bytes) -> tuple[bytes, bytes]:
    suffix = b + b + x + y + PROTO_ID + node_id
    secret_input = secret + suffix
    key_seed = _hmac(T_KEY, secret_input)
    verify = _hmac(T_VERIFY, secret_input)
    auth = _hmac(T_MAC, verify + suffix + b"Server")
    return key_seed, auth


def client_handshake(
    x_private: X25519PrivateKey | bytes, x_public: bytes, y_public: bytes, b_public: bytes, node_id: bytes
) -> tuple[bytes, bytes] | None:
    """``(KEY_SEED, AUTH)`` from the client's view, or ``None`` if a DH result was zero."""
    s1 = exchange(x_private, y_public)
    s2 = exchange(x_private, b_public)
    if s1 is None or s2 is None:
        return None
    return _common(s1 + s2, node_id, b_public, x_public, y_public)


def server_handshake(
    x_public: bytes,
    y_private: X25519PrivateKey | bytes,
    y_public: bytes,
    b_private: X25519PrivateKey | bytes,
    b_public: bytes,
    node_id: bytes,
) -> tuple[bytes, bytes] | None:
    """``(KEY_SEED, AUTH)`` from the server's view, or ``None`` if a DH result was zero."""
    s1 = exchange(y_private, x_public)
    s2 = exchange(b_private, x_public)
    if s1 is None or s2 is None:
        return None
    return _common(s1 + s2, node_id, b_public, x_public, y_public)


def kdf(key_seed: bytes, length: int) -> bytes:
    """HKDF-SHA256(ikm=KEY_SEED, salt=t_key, info=m_expand), ``length`` bytes."""
    prk = _hmac(T_KEY, key_seed)
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac(prk, block + M_EXPAND + bytes([counter]))
        out += block
        counter += 1
    return out[:length]
