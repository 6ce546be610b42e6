"""UniformDH known answers, and an obfs3 handshake built from them.

Source of the vectors: obfs4proxy 0.0.14, ``common/uniformdh/uniformdh_test.go``
(https://gitlab.com/yawning/obfs4/-/blob/obfs4proxy-0.0.14/common/uniformdh/uniformdh_test.go),
which carries them over from obfsproxy's UniformDH tests.  ``X_PRIV`` is odd, so its owner sends
``p - X``; ``Y_PRIV`` is even, so its owner sends ``X`` itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ptdispatch.crypto import uniformdh
from ptdispatch.transports.obfs3 import Obfs3Engine

X_PRIV = bytes.fromhex(
    "6f592d676f536874746f20686e6b776f20736874206561676574202e6f592d67"
    "6f536874746f20687369742065686720"
    "74612e655920676f532d746f6f6868746920207368742065656b20796e612064"
    "7567726169646e616f20206668742065"
    "61676574202e61507473202c72707365"
    "6e652c746620747572752c6561206c6c612065726f20656e6920206e6f592d67"
    "6f536874746f2e68482020656e6b776f2073687772652065687420656c4f2064"
    "6e4f736562206f72656b74207268756f"
)
X_PUB = bytes.fromhex(
    "76a3d17d5c55b03e865fa3e8267990a724baa24b0bdd0cc4af93be8de30be120"
    "d5533c91bf63ef923b02edcb84b744383f7de232cca6eb46d07cad83dcaa317f"
    "becbc68ca13e2c4019e6a3653106745004aecc0be1dff0a78733fb0e7d5cb7c4"
    "97cab77b1331bf347e5f3a7847aa0bc0f4bc64146b48407fed7b931d16972d25"
    "fb4da5e6dc074ce2a58daa8de7624247cdf2ebe4e4dfec6d5989aac778c87559"
    "d3213d6040d4111ce3a2acae19f9ee1532509e037f69b252fdc30243cbbce9d0"
)
Y_PRIV = bytes.fromhex(
    "736562206f72656b74207268756f68676f2020666c6f2c646120646e77206568"
    "657254206568207968736c61206c72626165206b68746f726775206867616961"
    "2e6e482020656e6b776f2073687772652065685479656820766120657274646f"
    "652072616874732766206569646c2c736120646e772065686572542065682079"
    "74736c69206c72746165206468746d65202c6e612064687720796f6e6f20656e"
    "63206e61622068656c6f206468546d6561202073685479657420657264610a2e"
)
Y_PUB = bytes.fromhex(
    "d04e156e554c37ffd7aba749df6623501e4ff4466cb12be055617c1a36872237"
    "36d2c3fdce9ee0f9b27774350849112aa5aeb1f126811c9c2f3a9cb13d2f0c3a"
    "7e6fa2d3bf71baf50d839171534f227efbb2ce4227a38c25abdc5ba7fc430111"
    "3a2cb2069c9b305faac4b72bf21fec71578a9c369bcac84e1a7dcf0754e342f5"
    "bc8fe4917441b88254435e2abaf297e93e1e57968672d45bd7d4c8ba1bc3d314"
    "889b5bc3d3e4ea33d4f2dfdd34e5e5a72ff24ee46316d4757dad09366a0b66b3"
)
SHARED = bytes.fromhex(
    "78afaf5f457f1fdb832bebc397644a33038be9dba10ca2ce4a076f327f3a0ce3"
    "151d477b869ee7ac467755292ad8a77db9bd87ffbbc39955bcfb03b1583888c8"
    "fd037834ff3f401d463c10f899aa6378445140b7f8386a7d509e7b9db19b677f"
    "062a7a1a4e1509604d7a0839ccd5da6173e10afd9eab6dda74539d60493ca37f"
    "a5c98cd9640b409cd8bb3be2bc5136fd42e764fc3f3c0ddb8db3d87abcf2e659"
    "8d2b101bef7a56f50ebc658f9df1287da81359543e77e4a4cfa7598a4152e4c0"
)


def test_public_key_odd_private() -> None:
    assert X_PRIV[-1] & 1 == 1  # the vector is the odd case (the public key is then p - 2^x)
    assert uniformdh.PrivateKey(X_PRIV).public == X_PUB


def test_public_key_even_private() -> None:
    assert Y_PRIV[-1] & 1 == 0
    assert uniformdh.PrivateKey(Y_PRIV).public == Y_PUB


def test_shared_secret() -> None:
    x, y = uniformdh.PrivateKey(X_PRIV), uniformdh.PrivateKey(Y_PRIV)
    assert x.exchange(Y_PUB) == SHARED
    assert y.exchange(X_PUB) == SHARED


@pytest.mark.parametrize("modexp", [uniformdh._python_modexp, uniformdh.modexp], ids=["python", "default"])
def test_backends_agree_with_the_vectors(modexp: Callable[[int, int], int]) -> None:
    p = uniformdh.MODP_1536
    x = int.from_bytes(X_PRIV, "big") & ~1
    y = int.from_bytes(Y_PRIV, "big") & ~1
    assert p - modexp(2, x) == int.from_bytes(X_PUB, "big")
    assert modexp(2, y) == int.from_bytes(Y_PUB, "big")
    assert modexp(int.from_bytes(Y_PUB, "big"), x) == int.from_bytes(SHARED, "big")


def test_openssl_backend_is_in_use() -> None:
    """The OpenSSL path is ~8x faster than pow(); losing it silently would hurt handshakes."""
    assert uniformdh.BACKEND == "openssl"


@pytest.mark.parametrize("peer", [0, 1, 2, uniformdh.MODP_1536 - 1, uniformdh.MODP_1536, 2**1536 - 1])
def test_degenerate_peer_keys_are_computed_like_obfs4proxy(peer: int) -> None:
    """obfs4proxy does big.Int.Exp on whatever 192 bytes arrive; so do we (no exception)."""
    x = uniformdh.PrivateKey(Y_PRIV)
    expected = pow(peer, int.from_bytes(Y_PRIV, "big") & ~1, uniformdh.MODP_1536)
    assert x.exchange(peer.to_bytes(192, "big")) == expected.to_bytes(192, "big")


def _scripted(*values: bytes) -> Callable[[int], bytes]:
    queue = list(values)

    def rng(n: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == n
        return value

    return rng


def test_obfs3_handshake_from_the_vectors() -> None:
    """Client with X_PRIV and server with Y_PRIV, no padding: the wire bytes are all known."""
    client = Obfs3Engine(True, _scripted(X_PRIV, b"\x00\x00", b"\x00\x00"))
    server = Obfs3Engine(False, _scripted(Y_PRIV, b"\x00\x00", b"\x00\x00"))
    client.initiate()
    server.initiate()
    assert client.data_to_send() == X_PUB
    assert server.data_to_send() == Y_PUB
    client.receive_data(Y_PUB)
    server.receive_data(X_PUB)

    init = hmac.digest(SHARED, b"Initiator obfuscated data", hashlib.sha256)
    resp = hmac.digest(SHARED, b"Responder obfuscated data", hashlib.sha256)
    init_magic = hmac.digest(SHARED, b"Initiator magic", hashlib.sha256)
    resp_magic = hmac.digest(SHARED, b"Responder magic", hashlib.sha256)

    def ctr(secret: bytes, data: bytes) -> bytes:
        return Cipher(algorithms.AES(secret[:16]), modes.CTR(secret[16:])).encryptor().update(data)

    client.send_data(b"ping")
    assert client.data_to_send() == init_magic + ctr(init, b"ping")
    server.send_data(b"pong")
    assert server.data_to_send() == resp_magic + ctr(resp, b"pong")
    assert server.receive_data(init_magic + ctr(init, b"ping")) == b"ping"
    assert client.receive_data(resp_magic + ctr(resp, b"pong")) == b"pong"
