"""Vectors for obfs4's crypto: Elligator 2 (Monocypher), ntor and the hash DRBG (jmwample/ptrs).

Sources:
- Monocypher tests/gen/vectors/elligator_dir and elligator_inv
  (https://github.com/LoupVaillant/Monocypher/tree/master/tests/gen/vectors).
- jmwample/ptrs crates/obfs4/src/common/drbg.rs ``sample_compat_compare`` (values produced by obfs4proxy's Go code).
- jmwample/ptrs obfs4 handshake tests ``test_obfs4_testvec_compat`` (ntor KEY_SEED / AUTH).
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ptdispatch.crypto import elligator2, ntor
from ptdispatch.crypto.drbg import HashDrbg

# representative, then its public key, one a line
ELLIGATOR_DIR = """
d3c41ec20dbe9fc33ccc14823d898066f433a892994ffbcc921e9f5ace519d02
170a436471aaa00d817436197fde47fa3320aa040b48d1d2a9f155e15ce3975e
e03a05ebde6ca000cdc5c539bf48a1d08222483b87693046e00a411a8d93dd34
b8e22e654ae391c44be4760a30d13950651d454c7ec71f0bdf7c5669bb22b564
ec3afb86e23aff9a05c54b4274abb5daf77ad956b5a4a38caf7529866e5f5a3e
c1f0588b07c7624ff31b1465354d7a55eee0ce4302f4d91fa88236cfd808501f
4bdb87edb62cc3b3bf55ff767ac7e3c801c7954d2b5c03d3a26811dd6a8ad929
9208e81f3ae66b2cae22b4e0f25ca380ad211a5d44284dc1b741401f0decf964
b41d9ff0d16193a77fb6d68f5fe9d2dc3f8c722a4511ec3e95a184db3aebe617
e5bd8597bf26ef88a9e759495fa74288822ffc2ab77dc344d7641b8fb543fc56
9a8871e5d563da6919f1f24a91c2cad92ed02412ab1aa8b321d1a84459bb8e2a
68df2c7c319d39ea9c0fa1e53da178cb5668989f2657f6d25bdda489da83ea16
82a4c02a4d8041d5f8899c126bd3889fcff3d5cd63ee8e70bbd64b585fade926
bb963159d8ecc37772b0cf00d9ca0ed37a76d9b306a6f8f64ebefc8f861d5f5b
02712da5a7ed5c4ad4117eff95b84cad5b76e67f7dfbcab69215295a7aac4228
d7c1d9ee82b24eac542594a44c6f6653c9a8e19918d612f27f99351b30b8d864
140b05608cf89a4c4cb822f59ba8b25b300e9a36108d21e5c26a03240b5b2a31
058070e8efd599be224ba79dc4ee86823c41c14d89e651a7cd968293753f151a
ab98be98602474dedc91d15346bcb65bb833dd75518871f70bd26e5bfe712931
215524de571c221e08edb912dbe9d9c386d971e4239835ad155de6fa1ff82f28
538155639021f156812c473ed3abff75063fc4bc5e1e78ecf7f1f7fed8594a33
d47e10faef70170b6a3ba0ae4727ba6cb86f16f29a7e7747084310a0f466933f
d261f7d0d6ce68b6d698c4c61d54ec301dfc94e99b5f47df34a3def8e6568233
ce674898f882e57c6cdb41a58171cd75233a082def385ef326e35e99e1c1102d
6cbb36ab7acb90459bd526f6177bc20c49cdcecb156a14a1f65924c7c219211f
119a846d3fd2387621eb3e22bfa95eb7ee3abfda1cf5466ba9401ba08de0152b
664498366a736b04bc592cf18b8ac7bf94b7fcb985d4b77252844e2eeeb4811f
64a92a41815b38eb01e4f6e9aee7e34fa2f8d221e9da0502af542c3c203d262a
11bef745f0f627555fa65787043ea5231e057fc3bb2afc1903b13f88b494cb00
94ce42fb8d978dae1d353ad166b2b5ed24b6967bc0ea90f792f49b841952b844
dbe6aa62ba71ccef606f3cea913ee21b1c98f46c1a9b4ee33c843cba7cea4127
2a3bf5765ba945c5c7df871cecfc7374e0b655260f5eb0553e5901442cfca879
a8b34d537d591177ed521aaacb4d0917eb6d49b60353d9044d4c6d5fc09fb20d
d9fb40edd0f4532024fbdfd74fefe50739820085d0d9f6d9c5e9e9523a05b37d
c5cc85bd95d812d739c704e80c03416f75ae5f6ff01c929548feee5e599cd907
a9b74c3c12e4efb31a1d26c7677773bf223d8cb120bd552a8b6f92eadd35ed48
949523d0fa2e180612d9a776c655d08e0b16d37dff8457218e3d31eba4531413
1bc05bdc88c88eba38270af970abff204cfa8b07bd7fa78ea4ab5c04d1ab317c
2430a2b8a95d2f415f2f2a2a9257ff03a305ad9f2ecdd84ba0aa6760e4b1bf1d
7e73a15142ab131d176716129e69161b33c34ca2464b79703f47ba4cf0dcf92d
ec76eba0794f9a6215194d5c1bbd6b17502ec6b80d9af029d36c30a705e2291a
5563bf02a1878455a049ea1bc3c608f69f215aaac8a678977626daa451e14112
f9ce1ac470f31bbf3010c779b0a8419634052b28bd8e9ad1f07547d70f609313
bacf5302a799ac7f459139f6379efa3083457679dd3d2de7431aa1c7d958c725
e87526cc0db1adad5d496e25949461c13bc0573e4cccf2e76c2eb535ce40223e
b1acbbf9410113a467ae0d3731894cc67a131208af70e2f16758a4be0bb6706c
7a48adebb692fdb8e5a2176389f3f0bcbdc1956b0d57acac4a8eda87b577e618
22997bed0e3c6023e73fb371e6d3c5c3661a87c6f3f787ba6054e699aef5aa64
e73507d38bae63992b3f57aac48c0abc14509589288457995a2b4ca3490aa207
1e8afffed6bf53fe271ad572473262ded8faec68e5e67ef45ebb82eeba52604f
95a16019041dbefed9832048ede11928d90365f24a38aa7aef1b97e23954101b
794f05ba3e3a72958022468c88981e0be5782be1e1145ce2c3c6fde16ded5363
f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff3f
9cdb525555555555555555555555555555555555555555555555555555555555
f7ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff3f
9cdb525555555555555555555555555555555555555555555555555555555555
"""

# public key, tweak, representative ("" = the key has none)
ELLIGATOR_INV = [
    ("e6f66fdf6e230c603c5e6e59a254ea1476a13eb9511b9549846781e12e52230a", 0x00, ""),
    (
        "46951964003c940878063ccfd0348af42150ca16d2646f2c5856e8338377d800",
        0x00,
        "2820b6b241e0f68a6c4a7fee3d978228ef3ae45533cd410aa91a415331d8612d",
    ),
    (
        "46951964003c940878063ccfd0348af42150ca16d2646f2c5856e8338377d800",
        0x01,
        "3cfb87c46c0b4575ca8175e0ed1c0ae9dae79db78df86997c4847b9f20b27718",
    ),
    ("00" * 32, 0x00, "00" * 32),
]

DRBG_CASES = [
    (
        "000000000000000000000000000000000000000000000000",
        [7432626515892259304, 5773523046280711756, 4537542203639783680],
    ),
    (
        "0c10867722204c856e78315d669449dcb6e66f2fe5247a80",
        [9059004827137905928, 6853924365612632173, 1485252377529977150],
    ),
    (
        "ddbb886aefbe2a65c2509dfc3bb0932c5e881965afca80a0",
        [3952461850862704951, 6715353867928838006, 5560038622741453571],
    ),
    (
        "e691b1eaa81018e8b16bbf84d71f3ba0c5f965bace2da7cc",
        [8251725530906761037, 5718043109939568014, 7585544303175018394],
    ),
]


def _pairs() -> list[tuple[str, str]]:
    lines = ELLIGATOR_DIR.split()
    return list(zip(lines[0::2], lines[1::2], strict=True))


@pytest.mark.parametrize(("representative", "public"), _pairs())
def test_elligator_direct(representative: str, public: str) -> None:
    assert elligator2.representative_to_public(bytes.fromhex(representative)).hex() == public


@pytest.mark.parametrize(("public", "tweak", "representative"), ELLIGATOR_INV)
def test_elligator_inverse(public: str, tweak: int, representative: str) -> None:
    got = elligator2.public_to_representative(bytes.fromhex(public), tweak)
    if not representative:
        assert got is None
    else:
        assert got is not None and got.hex() == representative
        assert elligator2.representative_to_public(got).hex() == public


def test_top_bits_come_from_tweak_and_are_ignored() -> None:
    public = bytes.fromhex(ELLIGATOR_INV[1][0])
    for tweak in (0x40, 0x80, 0xC1):
        rep = elligator2.public_to_representative(public, tweak)
        assert rep is not None and rep[31] & 0xC0 == tweak & 0xC0
        assert elligator2.representative_to_public(rep) == public


@pytest.mark.parametrize(("seed", "expected"), DRBG_CASES)
def test_drbg_matches_go(seed: str, expected: list[int]) -> None:
    drbg = HashDrbg(bytes.fromhex(seed))
    assert [drbg.int63() for _ in expected] == expected


def test_drbg_length_masks_follow_the_same_stream() -> None:
    seed = bytes.fromhex(DRBG_CASES[1][0])
    a, b = HashDrbg(seed), HashDrbg(seed)
    masks = a.length_masks(5)
    assert masks == [int.from_bytes(b.next_block()[:2], "big") for _ in range(5)]


def _key(hexkey: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hexkey))


def _pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_ntor_vector() -> None:
    b = _key("a83fdd04eb9ed77a2b38d86092a09a1cecfb93a7bdec0da35e542775b2e7af6e")
    x = _key("308ff4f3a0ebe8c1a93bcd40d67e3eec6b856aa5c07ef6d5a3d3cedf13dcf150")
    y = _key("881f9ad60e0833a627f0c47f5aafbdcb0b5471800eaeaa1e678291b947e4295c")
    node_id = bytes(range(20))
    client = ntor.client_handshake(x, _pub(x), _pub(y), _pub(b), node_id)
    server = ntor.server_handshake(_pub(x), y, _pub(y), b, _pub(b), node_id)
    assert client == server
    assert client is not None
    assert client[0].hex() == "05b858d18df21a01566c74d39a5b091b4415f103c05851e77e79b274132dc5b5"
    assert client[1].hex() == "dc71f8ded2e56f829f1b944c1e94357fa8b7987f10211a017e2d1f2455092917"


def test_ntor_rejects_low_order_keys() -> None:
    y = X25519PrivateKey.generate()
    assert ntor.server_handshake(bytes(32), y, _pub(y), y, _pub(y), bytes(20)) is None


def test_kdf_is_hkdf_sha256() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = bytes(range(32))
    ref = HKDF(hashes.SHA256(), 144, salt=ntor.T_KEY, info=ntor.M_EXPAND).derive(seed)
    assert ntor.kdf(seed, 144) == ref


def test_dirty_keys_decode_and_agree() -> None:
    """Dirty public keys round-trip through their representative, and DH ignores the low-order part."""
    for _ in range(40):
        private, public, rep = elligator2.generate_keypair(os.urandom)
        assert elligator2.representative_to_public(rep) == public
        peer = X25519PrivateKey.generate()
        mine = X25519PrivateKey.from_private_bytes(private)
        assert ntor.exchange(peer, public) == mine.exchange(peer.public_key())


def test_dirty_keys_cover_the_low_order_cosets() -> None:
    """Keys with private[0] & 7 != 0 differ from the clean key (they carry a low-order point)."""
    differing = 0
    for _ in range(30):
        private, public, _ = elligator2.generate_keypair(os.urandom)
        clean = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
        if private[0] & 7 not in (0,):
            differing += public != clean
        else:
            assert public == clean
    assert differing > 0


def test_low_order_points_have_order_eight() -> None:
    points = elligator2.LOW_ORDER
    assert points[0] is None and points[4] == (0, 0)
    assert elligator2.mont_add(points[7], points[1]) is None


def test_pure_python_fallback_without_gmpy2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elligator2, "_powmod", pow)
    rep, public = _pairs()[0]
    assert elligator2.representative_to_public(bytes.fromhex(rep)).hex() == public
    _, public_b, rep_b = elligator2.generate_keypair(os.urandom)
    assert elligator2.representative_to_public(rep_b) == public_b


def test_jacobi_shortcut_changes_nothing_but_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key generation refuses non-squares early with gmpy2.jacobi; the keys drawn are the same."""
    import random

    fast = [elligator2.generate_keypair(random.Random(seed).randbytes) for seed in range(12)]
    monkeypatch.setattr(elligator2, "_jacobi", None)
    slow = [elligator2.generate_keypair(random.Random(seed).randbytes) for seed in range(12)]
    assert fast == slow


def test_exchange_with_raw_private_key_matches_openssl() -> None:
    """ntor.exchange takes a raw private key (libsodium) or a key object (OpenSSL) alike."""
    for _ in range(10):
        raw = os.urandom(32)
        peer = _pub(X25519PrivateKey.generate())
        assert ntor.exchange(raw, peer) == ntor.exchange(X25519PrivateKey.from_private_bytes(raw), peer)
    for low_order in (bytes(32), (1).to_bytes(32, "little")):
        assert ntor.exchange(os.urandom(32), low_order) is None
