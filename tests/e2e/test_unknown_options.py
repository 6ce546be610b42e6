"""Unknown option keys are refused by name through the real command (a typo must not silently
change the configuration); the dispatcher's own keys pass; a mixed -options object is an ENV-ERROR."""

from __future__ import annotations

import json
from pathlib import Path

from tests.peers.dispatcher import run_once, running


async def test_client_typo_is_a_cmethod_error(tmp_path: Path) -> None:
    options = {"password": "pw", "cypher": "aes-128-gcm", "serverAddress": "127.0.0.1:1", "udpIdleTimeout": 5}
    async with running("-transport", "shadow", "-options", json.dumps(options), "-state", str(tmp_path)) as d:
        pass
    assert not any(line.startswith("CMETHOD shadow") for line in d.lines)
    errors = [line for line in d.lines + d.errors if line.startswith("CMETHOD-ERROR")]
    assert errors == [
        "CMETHOD-ERROR shadow unknown option 'cypher' (known: bindAddress, cipher, cipherName, key, method, password, "
        "serverPublicKey, target, transport)"  # the last three: cipherName DarkStar (Operator's options)
    ]


async def test_dispatcher_udp_key_typo_is_refused(tmp_path: Path) -> None:
    options = {"obfs4": {"cert": "x" * 70, "udpIdelTimeout": 5}}
    async with running("-transport", "obfs4", "-options", json.dumps(options), "-state", str(tmp_path)) as d:
        pass
    assert any("unknown option 'udpIdelTimeout'" in line for line in d.lines + d.errors)


async def test_pt1_server_option_typo_is_an_smethod_error(tmp_path: Path) -> None:
    env = {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": str(tmp_path),
        "TOR_PT_SERVER_TRANSPORTS": "obfs4",
        "TOR_PT_SERVER_BINDADDR": "obfs4-127.0.0.1:0",
        "TOR_PT_ORPORT": "127.0.0.1:1",
        "TOR_PT_SERVER_TRANSPORT_OPTIONS": "obfs4:iatmode=2",
    }
    async with running(env=env) as d:
        pass
    assert (
        "SMETHOD-ERROR obfs4 unknown option 'iatmode' (known: drbg-seed, iat-mode, iatMode, node-id, private-key)"
        in d.lines
    )


async def test_mixed_options_object_is_an_env_error() -> None:
    options = {"obfs4": {"iat-mode": "0"}, "udpIdleTimeout": 5}
    code, out, err = await run_once("-transport", "obfs4", "-options", json.dumps(options))
    assert code == 64
    assert out == ["VERSION 3.0"]
    assert len(err) == 1 and err[0].startswith("ENV-ERROR -options mixes the keyed form")
    assert "'udpIdleTimeout'" in err[0]


async def test_flat_keys_of_another_named_transport_pass(tmp_path: Path) -> None:
    """Flat -options go to every transport named: a key one of them knows is not an error for the other."""
    options = {"password": "pw", "target": "127.0.0.1:9", "serverAddress": "127.0.0.1:1"}
    argv = ("-transports", "shadow,obfs3", "-options", json.dumps(options), "-state", str(tmp_path))
    async with running(*argv) as d:
        pass
    assert any(line.startswith("CMETHOD shadow ") for line in d.lines)
    assert any(line.startswith("CMETHOD obfs3 ") for line in d.lines)
