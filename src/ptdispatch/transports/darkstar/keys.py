"""DarkStar keys: P-256 points and scalars, in the encodings Operator's configs use.

Config encodings (notes section 1.1, Swift KeychainTypes):

* public key: base64 of ``0x02 || 0x04 || X || Y`` (66 bytes, "Keychain typed data");
* private key: base64 of ``0x02 || scalar`` (33 bytes).

Older configs (Go <= v1.1.15) carry a bare 32-byte X or a 32-byte scalar, in hex or base64; both
are accepted.  On the wire a public key is its 32-byte X coordinate only; the sign of Y never
matters, since only X coordinates enter ECDH outputs and hashes.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization as _ser
from cryptography.hazmat.primitives.asymmetric import ec

CURVE = ec.SECP256R1()
P = 2**256 - 2**224 + 2**192 + 2**96 - 1
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_TYPE_P256 = 0x02  # KeychainTypes KeyType.P256KeyAgreement
COORD = 32

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey

_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")


def _decode_text(text: str) -> bytes:
    """Hex (even length, hex digits only) or base64 (standard or URL-safe, padding optional)."""
    text = text.strip()
    if _HEX.match(text) and len(text) in (64, 66, 130, 132):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is neither base64 nor hex") from None


def x_of(key: PublicKey) -> bytes:
    """The 32-byte big-endian X coordinate (the wire form)."""
    return key.public_numbers().x.to_bytes(COORD, "big")


def public_from_x(x: bytes) -> PublicKey:
    """The point with X coordinate ``x`` (and even Y); ``ValueError`` if there is none."""
    if len(x) != COORD:
        raise ValueError(f"a public key X is {COORD} bytes, not {len(x)}")
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b"\x02" + x)


def decode_public(text: str) -> PublicKey:
    """A public key from config text; ``ValueError`` says what is wrong."""
    raw = _decode_text(text)
    if len(raw) == 66 and raw[0] == KEY_TYPE_P256:
        raw = raw[1:]
    if (len(raw) == 65 and raw[0] == 4) or (len(raw) == 33 and raw[0] in (2, 3)):
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, raw)
        except ValueError:
            raise ValueError("is not a point on P-256") from None
    if len(raw) == COORD:
        try:
            return public_from_x(raw)
        except ValueError:
            raise ValueError("is not the X coordinate of a point on P-256") from None
    raise ValueError(
        f"decodes to {len(raw)} bytes; expected 66 (0x02 || 0x04 || X || Y, Keychain format) or a bare 32-byte X"
    )


def decode_private(text: str) -> PrivateKey:
    """A private key from config text (33-byte typed or bare 32-byte scalar)."""
    raw = _decode_text(text)
    if len(raw) == COORD + 1 and raw[0] == KEY_TYPE_P256:
        raw = raw[1:]
    if len(raw) != COORD:
        raise ValueError(f"decodes to {len(raw)} bytes; expected 33 (0x02 || scalar, Keychain format) or 32")
    scalar = int.from_bytes(raw, "big")
    if not 0 < scalar < N:
        raise ValueError("is not a valid P-256 scalar")
    return private_from_scalar(scalar)


def private_from_scalar(scalar: int) -> PrivateKey:
    return ec.derive_private_key(scalar, CURVE)


def encode_public(key: PublicKey) -> str:
    """Canonical Keychain base64 (66 bytes, 88 characters)."""
    point = key.public_bytes(_ser.Encoding.X962, _ser.PublicFormat.UncompressedPoint)
    return base64.b64encode(bytes([KEY_TYPE_P256]) + point).decode()


def encode_private(key: PrivateKey) -> str:
    """Canonical Keychain base64 (33 bytes)."""
    scalar = key.private_numbers().private_value.to_bytes(COORD, "big")
    return base64.b64encode(bytes([KEY_TYPE_P256]) + scalar).decode()


def is_compact(key: PublicKey) -> bool:
    """CryptoKit's compact-representable condition: y <= p - y."""
    y = key.public_numbers().y
    return y <= P - y


def generate_compact() -> PrivateKey:
    """A fresh key whose public point is compact-representable (Swift clients require it for
    server static keys): if it is not, its negation is."""
    key = ec.generate_private_key(CURVE)
    if is_compact(key.public_key()):
        return key
    return private_from_scalar(N - key.private_numbers().private_value)
