"""Elligator 2 for Curve25519, and the "dirty" key pairs obfs4 sends as representatives.

A representative is 32 bytes that look uniformly random; it maps to a Curve25519 public key
(a u-coordinate).  Only about half the public keys have a representative, so key generation
retries.  obfs4 also adds a random low-order point to the public key ("dirty" key) so that
the decoded keys cover the whole curve as a random point would; X25519's scalar clamping
removes that point again, so Diffie-Hellman results are unchanged.

Pure Python big-integer arithmetic; ``gmpy2.powmod`` is used for the exponentiations when it
is installed (about ten times faster than :func:`pow`), and ``gmpy2.jacobi`` then tells a point
without a representative before any exponentiation is spent on it (about half the candidates of
a key generation).  The clean public key comes from libsodium's fixed-base scalar multiplication
(about 2.5 times faster than OpenSSL's, through ``cryptography``, on the machines measured).

Conventions match Monocypher's ``crypto_elligator_map`` / ``crypto_elligator_rev`` and
obfs4proxy's ``internal/x25519ell2``: representatives are little-endian with the top two bits
ignored on decode and filled from ``tweak & 0xC0`` on encode; ``tweak & 1`` picks which of the
two representatives of a key is produced; the root chosen is the one <= (p-1)/2.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable

import nacl.bindings

P = 2**255 - 19
A = 486662
_MASK254 = (1 << 254) - 1
_HALF = (P - 1) // 2
_EXP_INVSQRT = (P - 5) // 8
_EXP_SQRT = (P + 3) // 8
_EXP_INV = P - 2
_EXP_LEGENDRE = (P - 1) // 2
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _load_powmod() -> Callable[[int, int, int], int]:
    try:
        module = importlib.import_module("gmpy2")
    except ImportError:
        return pow
    powmod: Callable[[int, int, int], int] = module.powmod
    return powmod


def _load_jacobi() -> Callable[[int, int], int] | None:
    try:
        module = importlib.import_module("gmpy2")
    except ImportError:
        return None
    jacobi: Callable[[int, int], int] = module.jacobi
    return jacobi


_powmod = _load_powmod()
_jacobi = _load_jacobi()


def _nonsquare(x: int) -> bool:
    """True when ``x`` (nonzero mod p) is certainly not a square; False when it is, or unknown."""
    return _jacobi is not None and _jacobi(x, P) != 1


def _inv(x: int) -> int:
    return int(_powmod(x, _EXP_INV, P))


def _invsqrt(x: int) -> int | None:
    """``1/sqrt(x)`` (either root) if ``x`` is a square, 0 for 0, ``None`` if not a square."""
    z = int(_powmod(x, _EXP_INVSQRT, P))
    check = z * z % P * x % P
    if check == 1 or check == 0:
        return z
    if check == P - 1:
        return z * SQRT_M1 % P
    return None


def _sqrt(x: int) -> int | None:
    """A square root of ``x`` mod p, or ``None``."""
    z = int(_powmod(x, _EXP_SQRT, P))
    zz = z * z % P
    if zz == x % P:
        return z
    if zz == P - x % P:
        return z * SQRT_M1 % P
    return None


def _invsqrt_and_inverse(t: int) -> tuple[int | None, int]:
    """``(1/sqrt(t) or None if t is not a square, 1/t)`` from a single exponentiation.

    ``c = t^((p-5)/8)`` gives ``q = c^2 t``, a fourth root of unity: 1 or -1 when ``t`` is a
    square (then ``c`` or ``c*sqrt(-1)`` is ``1/sqrt(t)``), +-sqrt(-1) when it is not; in every
    case ``1/t = c^2 / q``.
    """
    c = int(_powmod(t, _EXP_INVSQRT, P))
    c2 = c * c % P
    q = c2 * t % P
    if q == 1:
        return c, c2
    if q == P - 1:
        return c * SQRT_M1 % P, P - c2
    if q == SQRT_M1:
        return None, c2 * (P - SQRT_M1) % P
    return None, c2 * SQRT_M1 % P


def representative_to_public(representative: bytes) -> bytes:
    """The Curve25519 public key (u, 32 bytes little-endian) that ``representative`` maps to.

    ``w = -A / (1 + 2r^2)``; ``u = w`` if ``w^3 + A w^2 + w`` is a square, else ``-A - w``.  With
    ``d = 1 + 2r^2`` and ``g = A^2 - A^2 d + d^2`` that value is ``-A g / d^3``, whose square-ness
    is that of ``t = -A g d^3``; one exponentiation of ``t`` gives both that and ``1/t``, hence
    ``1/d = -A g d^2 / t``.
    """
    r = int.from_bytes(representative, "little") & _MASK254
    d = (1 + 2 * r * r) % P
    if d == 0:
        return bytes(32)  # w = -A * 0 (the reference inverts 0 to 0), e = 0: a square
    g = (A * A - A * A * d + d * d) % P
    t = (P - A) * g % P * d % P * d % P * d % P
    root, inv_t = _invsqrt_and_inverse(t)
    w = (P - A) * (inv_t * (P - A) % P * g % P * d % P * d % P) % P
    if root is None:
        w = (P - A - w) % P
    return w.to_bytes(32, "little")


def _rev(u: int, v: int, z: int | None, tweak: int) -> bytes | None:
    """Finish the inverse map given ``z = 1/sqrt(-2u(u+A))`` (scaled alike) and the factor
    ``v`` standing for ``u`` and ``u + A`` chosen by the tweak."""
    if z is None:
        return None
    r = v * z % P
    if r > _HALF:
        r = P - r
    out = bytearray(r.to_bytes(32, "little"))
    out[31] |= tweak & 0xC0
    return bytes(out)


def public_to_representative(public: bytes, tweak: int) -> bytes | None:
    """A representative of public key ``public``, or ``None`` if it has none."""
    u = int.from_bytes(public, "little") % P
    upa = (u + A) % P
    z = _invsqrt((P - 2) * u % P * upa % P)
    return _rev(u, upa if tweak & 1 else u, z, tweak)


# --- points of order 8 (added to make keys "dirty") ----------------------------------------------

_ORDER8_U = int.from_bytes(bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little")


def _curve_v(u: int) -> int:
    v = _sqrt((u * u % P * u + A * u % P * u + u) % P)
    if v is None:
        raise ValueError("not on the curve")
    return v


def mont_add(p1: tuple[int, int] | None, p2: tuple[int, int] | None) -> tuple[int, int] | None:
    """Affine Montgomery-curve addition (``None`` is the point at infinity); for set-up and tests."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (u1, v1), (u2, v2) = p1, p2
    if u1 == u2:
        if (v1 + v2) % P == 0:
            return None
        lam = (3 * u1 * u1 + 2 * A * u1 + 1) * _inv(2 * v1) % P
    else:
        lam = (v2 - v1) * _inv(u2 - u1) % P
    u3 = (lam * lam - A - u1 - u2) % P
    v3 = (lam * (u1 - u3) - v1) % P
    return u3, v3


def _low_order_points() -> list[tuple[int, int] | None]:
    t8 = (_ORDER8_U, _curve_v(_ORDER8_U))
    points: list[tuple[int, int] | None] = [None]
    for _ in range(7):
        points.append(mont_add(points[-1], t8))
    return points


LOW_ORDER = _low_order_points()
"""``LOW_ORDER[k]`` is ``k * T`` for a point ``T`` of order 8 (index 0 is the identity)."""


def _dirty_representative(u: int, k: int, tweak: int) -> tuple[bytes, bytes] | None:
    """(public, representative) of ``P + LOW_ORDER[k]`` where ``P`` has u-coordinate ``u``."""
    low = LOW_ORDER[k]
    if low is None:
        upa = (u + A) % P
        x = (P - 2) * u % P * upa % P
        if x and _nonsquare(x):
            return None
        rep = _rev(u, upa if tweak & 1 else u, _invsqrt(x), tweak)
        return None if rep is None else (u.to_bytes(32, "little"), rep)
    ut, vt = low
    fu = (u * u % P * u + A * u % P * u + u) % P  # v^2
    if vt == 0:
        sq = fu  # (vt - v)^2 without knowing v
    else:
        v = _curve_v(u)  # either root: both signs give a uniformly random coset member
        sq = (vt - v) * (vt - v) % P
    # u3 = N / D^2 with D = ut - u, N = (vt - v)^2 - (A + u + ut) D^2, and the representative is
    # (N or N + A D^2) * D / sqrt(M D^2) with M = -2 N (N + A D^2).  One exponentiation of M D^2
    # gives that root and 1/(M D^2), so 1/D^2 = M / (M D^2) costs nothing more.
    d = (ut - u) % P
    d2 = d * d % P
    n = (sq - (A + u + ut) * d2) % P
    npad2 = (n + A * d2) % P
    m = (P - 2) * n % P * npad2 % P
    t = m * d2 % P
    if t == 0 or _nonsquare(t):
        return None
    root, inv_t = _invsqrt_and_inverse(t)
    if root is None:
        return None
    rep = _rev(0, npad2 if tweak & 1 else n, root * d % P, tweak)
    if rep is None:
        return None
    u3 = n * (m * inv_t % P) % P
    return u3.to_bytes(32, "little"), rep


def generate_keypair(rng: Callable[[int], bytes]) -> tuple[bytes, bytes, bytes]:
    """A fresh obfs4 session key: ``(private, public, representative)``.

    As obfs4proxy: ``d = SHA512(rng(32))``, private ``d[:32]``, tweak ``d[63]``; the public key
    is ``clamp(private) * B`` plus the low-order point picked by ``private[0] & 7``.
    """
    while True:
        digest = hashlib.sha512(rng(32)).digest()
        private = digest[:32]
        clean: bytes = nacl.bindings.crypto_scalarmult_base(private)  # clamps, as X25519 does
        found = _dirty_representative(int.from_bytes(clean, "little"), private[0] & 7, digest[63])
        if found is not None:
            return private, found[0], found[1]
