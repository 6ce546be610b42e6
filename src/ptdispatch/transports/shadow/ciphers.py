"""Shadowsocks AEAD ciphers and key derivation, as shadowsocks-libev 3.3.5 does them.

* Master key: ``EVP_BytesToKey`` with MD5 and no salt (``password``), or the raw key given in
  URL-safe base64 (``key``, like ``ss-server --key``: a longer key is cut to size, as ss-libev does).
* Per-direction subkey: ``HKDF-SHA1(ikm=master key, salt=salt, info="ss-subkey", L=key size)``.
* The salt is as long as the key; every tag is 16 bytes; the nonce is a little-endian counter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

TAG_SIZE = 16
SUBKEY_INFO = b"ss-subkey"

Buffer = bytes | bytearray | memoryview


class Aead(Protocol):
    """The part of ``cryptography``'s AEAD objects we use; ``decrypt`` raises ``InvalidTag``."""

    def encrypt(self, nonce: bytes, data: Buffer, associated_data: None, /) -> bytes: ...

    def decrypt(self, nonce: bytes, data: Buffer, associated_data: None, /) -> bytes: ...

    def encrypt_into(self, nonce: bytes, data: Buffer, associated_data: None, buf: memoryview, /) -> int: ...

    def decrypt_into(self, nonce: bytes, data: Buffer, associated_data: None, buf: memoryview, /) -> int: ...


class XChaCha20Poly1305:
    """XChaCha20-Poly1305-IETF (libsodium's, through PyNaCl) with ``cryptography``'s interface."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, data: Buffer, associated_data: None, /) -> bytes:
        out: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(data), None, nonce, self._key)
        return out

    def decrypt(self, nonce: bytes, data: Buffer, associated_data: None, /) -> bytes:
        try:
            out: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(bytes(data), None, nonce, self._key)
        except nacl.exceptions.CryptoError:
            raise InvalidTag from None
        return out

    def encrypt_into(self, nonce: bytes, data: Buffer, associated_data: None, buf: memoryview, /) -> int:
        out = self.encrypt(nonce, data, None)
        buf[: len(out)] = out
        return len(out)

    def decrypt_into(self, nonce: bytes, data: Buffer, associated_data: None, buf: memoryview, /) -> int:
        out = self.decrypt(nonce, data, None)
        buf[: len(out)] = out
        return len(out)


@dataclass(frozen=True)
class CipherInfo:
    """One AEAD method: its ss-libev name, sizes, and how to build an AEAD object from a subkey."""

    name: str
    key_size: int
    nonce_size: int
    factory: Callable[[bytes], Aead]
    #: As long as the key (a field, not a property: it is read for every connection).
    salt_size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "salt_size", self.key_size)


CIPHERS: dict[str, CipherInfo] = {
    info.name: info
    for info in (
        CipherInfo("chacha20-ietf-poly1305", 32, 12, ChaCha20Poly1305),
        CipherInfo("aes-256-gcm", 32, 12, AESGCM),
        CipherInfo("aes-128-gcm", 16, 12, AESGCM),
        CipherInfo("aes-192-gcm", 24, 12, AESGCM),
        CipherInfo("xchacha20-ietf-poly1305", 32, 24, XChaCha20Poly1305),
    )
}
"""The methods we speak, by their shadowsocks-libev names."""

ALIASES: dict[str, str] = {
    # go-shadowsocks2 / Shapeshifter spellings
    "aead_chacha20_poly1305": "chacha20-ietf-poly1305",
    "aead_aes_256_gcm": "aes-256-gcm",
    "aead_aes_128_gcm": "aes-128-gcm",
    "aead_aes_192_gcm": "aes-192-gcm",
    "aead_xchacha20_poly1305": "xchacha20-ietf-poly1305",
}


def lookup_cipher(name: str) -> CipherInfo | None:
    """The cipher called ``name`` (any letter case, ss-libev or Go spelling), or ``None``."""
    key = name.strip().lower()
    return CIPHERS.get(ALIASES.get(key, key))


def evp_bytes_to_key(password: bytes, key_size: int) -> bytes:
    """OpenSSL's ``EVP_BytesToKey`` with MD5, one iteration, no salt: D1 = MD5(pw), Di = MD5(D(i-1) || pw)."""
    out = b""
    block = b""
    while len(out) < key_size:
        block = hashlib.md5(block + password).digest()
        out += block
    return out[:key_size]


def decode_key(text: str, key_size: int) -> bytes:
    """A raw master key from base64 (URL-safe or standard alphabet, padding optional).

    Raises ``ValueError`` when ``text`` is not base64 or decodes to fewer than ``key_size`` bytes.
    """
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(raw) < key_size:
        raise ValueError(f"decodes to {len(raw)} bytes; this cipher needs a {key_size}-byte key")
    return raw[:key_size]


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hkdf_sha1(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-1.

    The HMACs are written out over ``hashlib.sha1`` (RFC 2104: keys of at most 64 bytes are
    padded, longer ones hashed first): it runs for every salt, twice per connection on each
    side, and this is one Python call where ``cryptography``'s ``HKDF`` object costs several
    (its argument checks call back into Python) for the same hashing.
    """
    if length > 255 * 20:
        raise ValueError("HKDF-SHA1 output is limited to 5100 bytes")
    sha1 = hashlib.sha1
    key = salt or bytes(20)
    block = (sha1(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    prk = sha1(block.translate(_OPAD) + sha1(block.translate(_IPAD) + ikm).digest()).digest()
    block = prk.ljust(64, b"\0")
    inner, outer = block.translate(_IPAD), block.translate(_OPAD)
    out = t = b""
    counter = 0
    while len(out) < length:
        counter += 1
        t = sha1(outer + sha1(inner + t + info + bytes((counter,))).digest()).digest()
        out += t
    return out[:length]


def derive_subkey(master_key: bytes, salt: bytes) -> bytes:
    """HKDF-SHA1(ikm=master_key, salt=salt, info="ss-subkey"), as long as the master key."""
    return hkdf_sha1(master_key, salt, SUBKEY_INFO, len(master_key))
