"""obfs4 options and the server state file (obfs4proxy's field names and formats)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.errors import OptionsError
from ptdispatch.net.addr import Address
from ptdispatch.transports.base import ServerContext
from ptdispatch.transports.obfs4 import SPEC, Obfs4Client, Obfs4Server
from ptdispatch.transports.obfs4.state import BRIDGE_PREFIX, decode_cert, encode_cert

NODE_ID = bytes(range(20))
PUBLIC = bytes(range(100, 132))
CERT = encode_cert(NODE_ID, PUBLIC)


def test_cert_round_trip() -> None:
    assert len(CERT) == 70 and not CERT.endswith("=")
    assert decode_cert(CERT) == (NODE_ID, PUBLIC)


@pytest.mark.parametrize(
    ("raw", "iat"),
    [
        ({"cert": CERT, "iat-mode": "1"}, 1),
        ({"cert": CERT, "iat-mode": 2}, 2),
        ({"cert": CERT, "iatMode": "2"}, 2),
        ({"cert": CERT}, 0),
        ({"node-id": NODE_ID.hex(), "public-key": PUBLIC.hex(), "iat-mode": "0"}, 0),
    ],
)
def test_client_options(raw: dict[str, object], iat: int) -> None:
    client = SPEC.client(raw)
    assert isinstance(client, Obfs4Client)
    assert (client.node_id, client.public_key, client.iat_mode) == (NODE_ID, PUBLIC, iat)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cert": "not base64!"}, "cert"),
        ({"cert": CERT[:-4]}, "cert"),
        ({"cert": CERT + "AAAA"}, "cert"),
        ({"cert": CERT, "iat-mode": "3"}, "iat-mode"),
        ({"cert": CERT, "iat-mode": "x"}, "iat-mode"),
        ({}, "missing option 'cert'"),
        ({"node-id": NODE_ID.hex()}, "public-key"),
        ({"node-id": "zz", "public-key": PUBLIC.hex()}, "node-id"),
        ({"node-id": NODE_ID.hex(), "public-key": PUBLIC.hex()[:-2]}, "public-key"),
    ],
)
def test_bad_client_options(raw: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message) as info:
        SPEC.client(raw)
    assert info.value.transport == "obfs4"


def _server(tmp_path: Path, raw: Mapping[str, object] | None = None) -> Obfs4Server:
    server = SPEC.server(raw or {}, ServerContext(state_dir=tmp_path))
    assert isinstance(server, Obfs4Server)
    return server


def test_state_file_created_like_obfs4proxy(tmp_path: Path) -> None:
    server = _server(tmp_path)
    path = tmp_path / "obfs4_state.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fields = json.loads(path.read_text())
    assert list(fields) == ["node-id", "private-key", "public-key", "drbg-seed", "iat-mode"]
    assert len(bytes.fromhex(fields["node-id"])) == 20 and len(bytes.fromhex(fields["drbg-seed"])) == 24
    assert fields["iat-mode"] == 0
    assert server.cert == encode_cert(bytes.fromhex(fields["node-id"]), bytes.fromhex(fields["public-key"]))
    assert server.smethod_args() == {"cert": server.cert, "iat-mode": "0"}
    line = (tmp_path / "obfs4_bridgeline.txt").read_text()
    assert line == BRIDGE_PREFIX + f"Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert={server.cert} iat-mode=0\n"
    assert stat.S_IMODE((tmp_path / "obfs4_bridgeline.txt").stat().st_mode) == 0o600
    # Restarting keeps the identity.
    assert _server(tmp_path).cert == server.cert


@pytest.mark.parametrize(
    ("bound", "where"),
    [
        (Address("0.0.0.0", 443), "<IP ADDRESS>:443"),
        (Address("::", 8443), "<IP ADDRESS>:8443"),
        (Address("203.0.113.5", 443), "203.0.113.5:443"),
        (Address("2001:db8::5", 443), "[2001:db8::5]:443"),
    ],
)
def test_bridge_line_carries_the_bound_port(tmp_path: Path, bound: Address, where: str) -> None:
    server = _server(tmp_path)
    server.bound(bound)
    text = (tmp_path / "obfs4_bridgeline.txt").read_text()
    assert text.endswith(f"\nBridge obfs4 {where} <FINGERPRINT> cert={server.cert} iat-mode=0\n")
    assert "<PORT>" not in text  # neither in the line nor in the comment listing the placeholders
    assert ("<IP ADDRESS>" in text) is where.startswith("<IP ADDRESS>")
    assert "#  <FINGERPRINT> - The bridge's fingerprint." in text
    assert stat.S_IMODE((tmp_path / "obfs4_bridgeline.txt").stat().st_mode) == 0o600


def test_iat_mode_option_overrides_and_is_saved(tmp_path: Path) -> None:
    cert = _server(tmp_path).cert
    again = _server(tmp_path, {"iat-mode": "2"})
    assert again.cert == cert and again.smethod_args()["iat-mode"] == "2"
    assert json.loads((tmp_path / "obfs4_state.json").read_text())["iat-mode"] == 2


def test_key_options_override_state(tmp_path: Path) -> None:
    private = os.urandom(32)
    raw = {"node-id": NODE_ID.hex(), "private-key": private.hex(), "drbg-seed": os.urandom(24).hex()}
    server = _server(tmp_path, raw)
    assert decode_cert(server.cert)[0] == NODE_ID
    assert json.loads((tmp_path / "obfs4_state.json").read_text())["private-key"] == private.hex()


@pytest.mark.parametrize("drop", ["node-id", "private-key", "drbg-seed"])
def test_key_options_all_or_none(tmp_path: Path, drop: str) -> None:
    raw = {"node-id": NODE_ID.hex(), "private-key": os.urandom(32).hex(), "drbg-seed": os.urandom(24).hex()}
    del raw[drop]
    with pytest.raises(OptionsError, match=drop):
        _server(tmp_path, raw)


def test_corrupt_state_file(tmp_path: Path) -> None:
    (tmp_path / "obfs4_state.json").write_text("{not json")
    with pytest.raises(OptionsError, match="statefile"):
        _server(tmp_path)


def test_state_file_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "obfs4_state.json").write_bytes(b'{"node-id":"\xff"}')
    with pytest.raises(OptionsError, match=r"statefile .*not UTF-8") as info:
        _server(tmp_path)
    assert info.value.transport == "obfs4"


def test_fresh_state_file_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "obfs4_state.json.tmp").mkdir()  # in the way of the atomic write
    with pytest.raises(OptionsError, match="cannot write") as info:
        _server(tmp_path)
    assert info.value.transport == "obfs4"
    assert not (tmp_path / "obfs4_state.json").exists()


@pytest.mark.parametrize("keys", [False, True], ids=["from-state", "from-options"])
def test_state_dir_cannot_be_made(tmp_path: Path, keys: bool) -> None:
    state = tmp_path / "state"
    state.symlink_to(tmp_path / "gone" / "state")  # dangling: neither readable nor creatable (even as root)
    raw = {"node-id": NODE_ID.hex(), "private-key": os.urandom(32).hex(), "drbg-seed": os.urandom(24).hex()}
    with pytest.raises(OptionsError, match="cannot write the obfs4 state") as info:
        SPEC.server(raw if keys else {}, ServerContext(state_dir=state))
    assert info.value.transport == "obfs4"


def test_bad_iat_in_state_file(tmp_path: Path) -> None:
    server = _server(tmp_path)
    fields = json.loads((tmp_path / "obfs4_state.json").read_text())
    fields["iat-mode"] = 7
    (tmp_path / "obfs4_state.json").write_text(json.dumps(fields))
    with pytest.raises(OptionsError, match="iat-mode"):
        _server(tmp_path)
    assert server.cert


def test_api_reports_bad_cert(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cert"):
        api.client_transport("obfs4", {"cert": "AAAA"})


def test_new_seeds_never_allow_zero_length_writes() -> None:
    """obfs4proxy iat-mode 2 clients panic when a server's length distribution contains 0."""
    import random

    from ptdispatch.transports.obfs4.probdist import distribution
    from ptdispatch.transports.obfs4.state import new_drbg_seed

    rng = random.Random(7).randbytes
    for _ in range(40):
        assert 0 not in distribution(new_drbg_seed(rng), 0, 1448)[0]


def test_distribution_matches_go_for_a_known_seed() -> None:
    """Seed found to contain 0 by our Go math/rand emulation: obfs4proxy 0.0.14 in iat-mode 2
    panicked against a server with it, which confirms the emulation (see the obfs4 report)."""
    from ptdispatch.transports.obfs4.probdist import distribution

    values, cumulative = distribution(bytes.fromhex("823d5a90015ba308cb254484e57b3b0c3f88629d66d431d5"), 0, 1448)
    assert len(values) == 20 and 0 in values
    assert abs(cumulative[-1] - 1.0) < 1e-9


SECRET_KEY = "5ec0de" * 10 + "zzzz"  # 64 characters, not hex at offset 60
SECRET_SEED = "9f" * 23 + "x0"  # 48 characters, not hex at offset 46


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("private-key", SECRET_KEY, "a non-hex character at offset 60"),
        ("drbg-seed", SECRET_SEED, "a non-hex character at offset 46"),
        ("private-key", "5ec0de" * 10 + "a", "an odd number of hex digits"),
        ("drbg-seed", "9f" * 11 + "9 f" + "9f" * 12, "whitespace inside a byte at offset 23"),
        ("private-key", "5ec0de" * 11, "must be 32 bytes (64 hex digits), got 33"),
        ("drbg-seed", "9f" * 23, "must be 24 bytes (48 hex digits), got 23"),
    ],
)
@pytest.mark.parametrize("source", ["options", "state-file"])
def test_bad_secret_hex_is_not_quoted(tmp_path: Path, key: str, value: str, problem: str, source: str) -> None:
    """A mistyped private key or DRBG seed is named and its fault described, but never printed
    (the message is an SMETHOD-ERROR, which tor logs)."""
    raw = {"node-id": NODE_ID.hex(), "private-key": os.urandom(32).hex(), "drbg-seed": os.urandom(24).hex()}
    raw[key] = value
    if source == "state-file":
        (tmp_path / "obfs4_state.json").write_text(json.dumps(raw))
    with pytest.raises(OptionsError) as info:
        _server(tmp_path, raw if source == "options" else None)
    message = str(info.value)
    assert f"'{key}'" in message and problem in message
    assert info.value.transport == "obfs4"
    for piece in ("5ec0de", "9f9f", "zz", "x0"):
        assert piece not in message
