"""DarkStar vectors A and B (operator-foundation-notes section 2.6, canonical columns).

They were produced from the pinned Go code (go-shadowsocks2) and checked against a Python model;
the canonical column is what Swift ShadowSwift, Kotlin and Go <= v1.1.15 compute (32-byte X(K),
fixed 32-byte ECDH values).  The key pair is Go's ``TestDarkStar`` pair.
"""

from __future__ import annotations

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.transports.darkstar.engine import DarkStarClientEngine, DarkStarServerEngine, ServerKey
from ptdispatch.transports.darkstar.framing import FrameOpener, FrameSealer
from ptdispatch.transports.darkstar.handshake import (
    CLIENT,
    SERVER,
    confirmation_code,
    ecdh,
    server_identifier,
    session_keys,
)
from ptdispatch.transports.darkstar.keys import (
    decode_private,
    decode_public,
    encode_private,
    encode_public,
    private_from_scalar,
    x_of,
)
from ptdispatch.transports.darkstar.replay import ReplayFilter

K_PUBLIC = "AgSTYvjq/4FbVgjkD5B3hfeQ4aYwZ07llfZPo9XN5gtAYiCqKyrCHELiqQjQmwT8qfNHqyTJj0KwzS7b2htQ86xA"
K_PRIVATE_RAW = "huNfx28f8TOiY7XtpR71eHQbK5mB6AWx9WujA51UxSs="
k = "86e35fc76f1ff133a263b5eda51ef578741b2b9981e805b1f56ba3039d54c52b"
XK = "9362f8eaff815b5608e40f907785f790e1a630674ee595f64fa3d5cde60b4062"
s = "af422fb7dc1dc5b8187026cdbaa57e6ccbf613a95f3cda9b0bf9c0d215e51d60"
XS = "9ff15077f470a48754e16a123722cadac391b01ac5efa7305a2794aaa93840e9"
SID = "7f00000104d2"

VECTORS = {
    "A": dict(
        c="3564908822025d52aad73021bf6a891d0459f9307fcd6fb757418bcf1a86c2d4",
        xc="99234b981a340e5e346abec770c5182abefc9824c72320dce73bca33203def84",
        e_ephem="05a2911d1678f9939ce67d54a350e69b9b83904dfb5f717b9f03d82cfe275c76",
        e_static="55d0fa72fabce06e6b02c36ea6107dc4017f2c2a26e9d8653816b7b61047c851",
        client_code="bd28d07978cd5dd6fb2a8659f3b1b2ed6ffd2eb547404e5d780266fc880c9132",
        server_code="42ed2637790a26765ff57aee0b77a1333ed5cc3c8b73b8b31b1394f29f8ace03",
        c2s="3beb496ec0be2cc0874dbbb308e2e4e79e73065bec39fd758efdc3c9862f71d9",
        s2c="86daf569765c21b9ca8c60398926e9982c67303a7f20c932ba0148cf3cf7ddfc",
        frame0="d454888cee4f419f45af9e01bed67870223481cdfaaf018975c7f710835785049ef997cc3f8bfa",
    ),
    "B": dict(
        c="2359fc3ec033a9e0d7b3c487de845e40bc6a6e14b601726f0e92211f620a0b6d",
        xc="68b34ce4fd1c831809f5a2466718bf6f298ae27c608265f1ed81a24b99ddc4f0",
        e_ephem="2e4c345f2fc33b6be6ee5d34f2b6b1be1ad7e8ae97c36241fec0dd93f55210cb",
        e_static="00518eb836e7b3e6cf33141135f678108e7deae685f03f59616aeee5a23f405d",
        client_code="ac4d4fb2d1736a50d28ca1a8c25146eff0cf21d35963ea3cc9ec6af666e88b33",
        server_code="d2c9ca6fe0d87f04dd9b89f4f1ff94c4d3688b89c969e0f19c4a17daf99c4d44",
        c2s="87672a0aef98711362f722d349e1c278efb327f0767896e7996e5ea2cabb2073",
        s2c="607bf5523657d4a256c01cb51c3be519fb3f90ebb2dfdebdfd534a733c001626",
        frame0="52db9edc65bca0c95bbaa115a58423f800787a855f6777d7bc37409152a7b730e9c15b5dfb3ca5",
    ),
}
A_C2S_FRAME1 = "078a3059552e46788fdcfd6f35017965bd7531eee76e24e43375bbeafddb71a50d3eaf37abc31d6e"
A_S2C_FRAME0 = "63585421974d4237764326cdd94f5c791447b8e2bcf4d26a00f0c48e6af21d1ce1ddfc7d"


def scalar(text: str):  # type: ignore[no-untyped-def]
    return private_from_scalar(int(text, 16))


def test_keychain_pair_and_encodings() -> None:
    public = decode_public(K_PUBLIC)
    private = decode_private(K_PRIVATE_RAW)
    assert x_of(public).hex() == XK
    assert private.private_numbers().private_value == int(k, 16)
    assert private.public_key() == public
    assert encode_public(public) == K_PUBLIC
    typed = encode_private(private)
    assert decode_private(typed).private_numbers().private_value == int(k, 16)
    # older formats: bare X and scalar, hex or base64
    assert x_of(decode_public(XK)) == bytes.fromhex(XK)
    assert decode_private(k).private_numbers().private_value == int(k, 16)
    assert x_of(scalar(s).public_key()).hex() == XS


def test_server_identifier() -> None:
    assert server_identifier(Address("127.0.0.1", 1234)).hex() == SID
    assert server_identifier(Address("example.com", 1234)) == b""


@pytest.mark.parametrize("name", VECTORS)
def test_vector_computations(name: str) -> None:
    v = VECTORS[name]
    c, kk, ss = scalar(v["c"]), scalar(k), scalar(s)
    assert x_of(c.public_key()).hex() == v["xc"]
    e_static = ecdh(c, kk.public_key())
    assert e_static == ecdh(kk, c.public_key())
    assert e_static.hex() == v["e_static"] and len(e_static) == 32
    e_ephem = ecdh(c, ss.public_key())
    assert e_ephem.hex() == v["e_ephem"]
    sid, xk, xc, xs = (bytes.fromhex(t) for t in (SID, XK, v["xc"], XS))
    assert confirmation_code(e_static, sid, xk, xc, CLIENT).hex() == v["client_code"]
    assert confirmation_code(e_static, sid, xk, xc, SERVER).hex() == v["server_code"]
    c2s, s2c = session_keys(e_ephem, e_static, sid, xc, xs)
    assert (c2s.hex(), s2c.hex()) == (v["c2s"], v["s2c"])
    assert FrameSealer(c2s).seal(b"hello").hex() == v["frame0"]


def test_vector_a_frames() -> None:
    v = VECTORS["A"]
    sealer = FrameSealer(bytes.fromhex(v["c2s"]))
    assert sealer.seal(b"hello").hex() == v["frame0"]
    assert sealer.seal(b"world!").hex() == A_C2S_FRAME1
    assert FrameSealer(bytes.fromhex(v["s2c"])).seal(b"hi").hex() == A_S2C_FRAME0
    opener = FrameOpener(bytes.fromhex(v["c2s"]))
    assert opener.feed(bytes.fromhex(v["frame0"] + A_C2S_FRAME1)) == b"helloworld!"


@pytest.mark.parametrize("name", VECTORS)
def test_vector_through_the_engines(name: str) -> None:
    """The engines, given the vector's ephemerals, put exactly the vector's bytes on the wire."""
    v = VECTORS[name]
    sid = bytes.fromhex(SID)
    client = DarkStarClientEngine(decode_public(K_PUBLIC), sid, make_key=lambda: scalar(v["c"]))
    server = DarkStarServerEngine(
        ServerKey(scalar(k)), sid, ReplayFilter(), make_key=lambda: scalar(s), rng=lambda n: bytes(n)
    )
    client.initiate()
    hello = client.data_to_send()
    assert hello.hex() == v["xc"] + v["client_code"]
    assert server.receive_data(hello) == b"" and server.established
    reply = server.data_to_send()
    assert reply.hex() == XS + v["server_code"]
    client.send_data(b"hello")
    assert client.receive_data(reply) == b"" and client.established
    frame = client.data_to_send()
    assert frame.hex() == v["frame0"]
    assert server.receive_data(frame) == b"hello"
    if name == "A":
        server.send_data(b"hi")
        assert server.data_to_send().hex() == A_S2C_FRAME0
