"""UniformDH, the obfs3 (and ScrambleSuit) key exchange.

Spec: obfsproxy ``doc/obfs3/obfs3-protocol-spec.txt``; behaviour matched to obfs4proxy 0.0.14
``common/uniformdh``:

* the group is RFC 3526 group 5 (1536-bit MODP), generator 2;
* a private key is 192 random bytes read big-endian with the low bit cleared (so ``x`` is even);
* the public key is ``X = g^x mod p`` or ``p - X``; the coin is the low bit of the random bytes
  before clearing (even -> ``X``, odd -> ``p - X``), exactly as obfs4proxy flips it;
* public keys and the shared secret are 192 bytes, big-endian, left-padded with zeros.

Because ``x`` is even, ``(p - X)^x = X^x``, so either public form gives the same secret.  Any 192
bytes are accepted as a peer key (obfs4proxy does no range check either).

Modular exponentiation of a 1536-bit exponent costs ~11 ms in pure Python but ~1.3 ms in OpenSSL,
so OpenSSL is used through ``cryptography``'s (deprecated, hence the silenced warning) finite-field
DH API; the pure-Python ``pow`` is the fallback for degenerate peer values OpenSSL refuses
(0, 1, p - 1, >= p) and for a ``cryptography`` that no longer ships FFDH.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

SIZE = 192
"""Bytes in a private key, a public key and a shared secret."""

MODP_1536 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)
GENERATOR = 2


def _python_modexp(base: int, exponent: int) -> int:
    return pow(base, exponent, MODP_1536)


def _openssl_modexp_factory() -> Callable[[int, int], int] | None:
    """``base^exponent mod p`` through OpenSSL, or ``None`` when the API is unavailable."""
    try:
        from cryptography.hazmat.primitives.asymmetric import dh
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # pragma: no cover - depends on the installed cryptography
        return None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            numbers = dh.DHParameterNumbers(MODP_1536, GENERATOR)
            numbers.parameters()
    except (ValueError, TypeError, AttributeError):  # pragma: no cover - FFDH removed or refused
        return None

    def modexp(base: int, exponent: int) -> int:
        # OpenSSL derives base^x from a private key x and a peer key base.  The private key's
        # public half is never used by a derivation, so a placeholder spares computing it.
        if not 1 < base < MODP_1536 - 1 or exponent < 2:
            return _python_modexp(base, exponent)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                private = dh.DHPrivateNumbers(exponent, dh.DHPublicNumbers(GENERATOR, numbers)).private_key()
                peer = dh.DHPublicNumbers(base, numbers).public_key()
                secret = private.exchange(peer)
            except ValueError:
                return _python_modexp(base, exponent)
        return int.from_bytes(secret, "big")

    return modexp


_openssl_modexp = _openssl_modexp_factory()
modexp: Callable[[int, int], int] = _openssl_modexp or _python_modexp
"""``base^exponent mod p`` for the 1536-bit group, by the fastest backend available."""
BACKEND = "openssl" if _openssl_modexp is not None else "python"


class PrivateKey:
    """A UniformDH key pair made from 192 random bytes."""

    __slots__ = ("_x", "public")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != SIZE:
            raise ValueError(f"a UniformDH private key is {SIZE} bytes, not {len(raw)}")
        value = int.from_bytes(raw, "big")
        send_complement = value & 1  # obfs4proxy's coin: the bit the key clears anyway
        self._x = value & ~1
        pub = modexp(GENERATOR, self._x)
        if send_complement:
            pub = MODP_1536 - pub
        #: The 192-byte public key to send.
        self.public: bytes = pub.to_bytes(SIZE, "big")

    @classmethod
    def generate(cls, rng: Callable[[int], bytes]) -> PrivateKey:
        return cls(rng(SIZE))

    def exchange(self, peer_public: bytes) -> bytes:
        """The 192-byte shared secret with ``peer_public`` (any 192 bytes are accepted)."""
        if len(peer_public) != SIZE:
            raise ValueError(f"a UniformDH public key is {SIZE} bytes, not {len(peer_public)}")
        peer = int.from_bytes(peer_public, "big")
        return modexp(peer, self._x).to_bytes(SIZE, "big")
