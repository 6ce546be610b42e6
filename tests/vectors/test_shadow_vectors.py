"""Shadowsocks AEAD vectors: key derivation and real ss-libev 3.3.5 traffic.

* EVP_BytesToKey (MD5, no salt): expected keys printed by OpenSSL itself,
  ``openssl enc -aes-{128,192,256}-cbc -k foobar -nosalt -md md5 -P`` (first line, ``key=``).
* HKDF-SHA1: RFC 5869 appendix A.4 and A.6 (https://www.rfc-editor.org/rfc/rfc5869#appendix-A).
* Streams: the first flight ``ss-local`` 3.3.5 (Debian) sent for password ``ss-vector-pw`` after a
  SOCKS5 CONNECT to the given address and ``hello from ss-local``, captured on loopback.  Each is
  a salt, one chunk with the address header and one chunk with the data.
"""

from __future__ import annotations

import os

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.transports.shadow import ShadowServer, parse_config
from ptdispatch.transports.shadow.ciphers import evp_bytes_to_key, hkdf_sha1

OPENSSL_FOOBAR = "3858F62230AC3C915F300C664312C63F568378529614D22DDB49237D2F60BFDF"


@pytest.mark.parametrize("size", [16, 24, 32])
def test_evp_bytes_to_key_matches_openssl(size: int) -> None:
    assert evp_bytes_to_key(b"foobar", size) == bytes.fromhex(OPENSSL_FOOBAR)[:size]


def test_evp_bytes_to_key_utf8_password() -> None:
    # openssl enc -aes-256-cbc -k 'pässwörd' -nosalt -md md5 -P  (UTF-8 terminal)
    expected = "12841E4BA5E37D2FBFC78458C6714ADE0201471E53886AE9C798833F136C9692"
    assert evp_bytes_to_key("pässwörd".encode(), 32) == bytes.fromhex(expected)


def test_hkdf_sha1_rfc5869_a4() -> None:
    okm = hkdf_sha1(bytes([0x0B] * 11), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896"


def test_hkdf_sha1_rfc5869_a6_empty_salt_and_info() -> None:
    okm = hkdf_sha1(bytes([0x0B] * 22), b"", b"", 42)
    assert okm.hex() == "0ac1af7002b3d761d1e55298da9d0506b9ae52057220a306e07b6b87e8df21d0ea00033de03984d34918"


SS_LOCAL_STREAMS = [
    (
        "chacha20-ietf-poly1305",
        "192.0.2.7",
        8080,
        "dcd01b774e8cef379ed29034515526fadbc4e470e5d5549d75d831e1827fb193c7cb66e3ef4146872a27f18b19cf0c80d25fb75efa9d5e7e16ead8c4784bc10c68cec5f51512c1ef5c964603c8af66bf3a021f9cec94d870b82ce12984dcb2f6bdc5ca4e2e11c55588a678b905fa5dbb1f4ee9abe76500b91937ee6db2b1",
    ),
    (
        "aes-256-gcm",
        "example.com",
        443,
        "a413795e0c74157ee83fa2c80c63ff7616dbc00475df53a8e59ad2c4cc0c97d475e91d93c8ac3deac44d531d1252b12e289ba11884b8fb47f7635cca8bd0032c1093769c324f276e074a2943eea36c339e4c5437a1fd6b43b8d93a32582ec07d33bc14f54e760df0a7dc6de0e781d3143e8877024f8e8186531b411551eee6b11e49ab9f62f7",
    ),
    (
        "aes-128-gcm",
        "2001:db8::1",
        22,
        "07a64dd91bc144da67dbc83cdd864312a3d7f8978cdb6768674ed18eb6e44a1175a0b98926dd0fa9947979c69cf0a3336e816c2d4707eec1c1042ac09f738b81bd2269c4e4dbde53b8a4ee6fb33451d7fa5fe723b787d180c92589177cccc6734c784d6e759e4b209cbf490514c8c498b6d2a22e2db9a4e8b11b",
    ),
    (
        "aes-192-gcm",
        "192.0.2.7",
        8080,
        "5026e412047933691f00f1d1ed84c57d8290b030f81950ea0b98ab90ea955dcb55553a3dd53692581970914a4b3df34f8fa5dbf446aa95337f5b9ff36ca046e7adb1cea2273f36dee2fe6ecf7d3a2f7c50d2f5c4a22669e2f5c37956037ea82b64284ad6024026ca34baf6d09d708cacc5392056c9da",
    ),
    (
        "xchacha20-ietf-poly1305",
        "example.com",
        443,
        "a2765065b65b63c5fe12e49515e16c3fa151340b3a1b0c6350a0478f32d041614e621dd11aca6df248bfca5b55efb243a28118df662eab03cf3c1bf4532ce41abfec6593d97b392793cc93f662a16f543743ecc6eac9e2857a376c3ba89b3e8c8b8cb6468accbdaf34f945d929a7359af34be917aaa568fa6074e36c724c7e15dafd6efd0b94",
    ),
]


@pytest.mark.parametrize(("cipher", "host", "port", "stream"), SS_LOCAL_STREAMS)
def test_decrypts_ss_local_stream(cipher: str, host: str, port: int, stream: str) -> None:
    engine = ShadowServer(parse_config({"password": "ss-vector-pw", "cipherName": cipher})).new_engine()
    plain = engine.receive_data(bytes.fromhex(stream))
    assert engine.established
    assert engine.requested_destination == Address(host, port)
    assert plain == b"hello from ss-local"


@pytest.mark.parametrize(("cipher", "host", "port", "stream"), SS_LOCAL_STREAMS)
def test_decrypts_ss_local_stream_byte_by_byte(cipher: str, host: str, port: int, stream: str) -> None:
    engine = ShadowServer(parse_config({"password": "ss-vector-pw", "cipherName": cipher})).new_engine()
    wire = bytes.fromhex(stream)
    plain = b"".join(engine.receive_data(wire[i : i + 1]) for i in range(len(wire)))
    assert plain == b"hello from ss-local"
    assert engine.requested_destination == Address(host, port)


@pytest.mark.parametrize("salt_size", [0, 16, 32, 64, 65, 100])
def test_hkdf_sha1_matches_cryptography_for_any_salt(salt_size: int) -> None:
    """The hashlib-built HKDF agrees with cryptography's, long salts (hashed as HMAC keys) included."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    for length in (16, 24, 32, 41):
        ikm, salt, info = os.urandom(32), os.urandom(salt_size), b"ss-subkey"
        ref = HKDF(algorithm=hashes.SHA1(), length=length, salt=salt or None, info=info).derive(ikm)
        assert hkdf_sha1(ikm, salt, info, length) == ref
