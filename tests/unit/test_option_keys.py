"""Every transport declares its option keys; unknown ones are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptdispatch import api
from ptdispatch.errors import ConfigError, OptionsError
from ptdispatch.frontends.dialer import SERVER_ADDRESS_KEY
from ptdispatch.ipc.flags import split_options
from ptdispatch.transports import registry
from ptdispatch.transports.base import DISPATCHER_KEYS
from ptdispatch.udp import options as udp_options


@pytest.mark.parametrize("name", registry.names())
def test_every_transport_declares_its_keys(name: str) -> None:
    spec = api.get_spec(name)
    assert spec.client_keys is not None and spec.server_keys is not None


@pytest.mark.parametrize("name", registry.names())
def test_unknown_keys_are_refused_by_name_on_both_sides(name: str, tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"unknown option 'no-such-key' \(known: "):
        api.client_transport(name, {"no-such-key": "1"})
    server_error = "client-only" if api.get_spec(name).client_only else r"unknown option 'no-such-key' \(known: "
    with pytest.raises(OptionsError, match=server_error):
        api.server_transport(name, {"no-such-key": "1"}, tmp_path)


def test_dispatcher_keys_are_the_ones_the_dispatcher_reads() -> None:
    udp = {udp_options.IDLE_TIMEOUT_KEY, udp_options.MAX_SESSIONS_KEY, udp_options.QUEUE_KEY, udp_options.CLASSIC_KEY}
    assert {SERVER_ADDRESS_KEY, *udp} == DISPATCHER_KEYS


def test_shadow_typo_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(OptionsError) as info:
        api.client_transport("shadow", {"password": "pw", "cypher": "aes-128-gcm"})
    assert info.value.message == (
        "unknown option 'cypher' (known: bindAddress, cipher, cipherName, key, method, password, serverPublicKey, "
        "target, transport)"
    )
    api.client_transport("shadow", {"password": "pw", "serverAddress": "127.0.0.1:1", "udpIdleTimeout": 5})


def test_keyed_versus_flat_options() -> None:
    assert split_options({"obfs4": {"cert": "c"}}, ["obfs4"]) == ({"obfs4": {"cert": "c"}}, {})
    assert split_options({"cert": "c"}, ["obfs4"]) == ({}, {"cert": "c"})
    assert split_options({"obfs4": "not an object"}, ["obfs4"]) == ({}, {"obfs4": "not an object"})
    with pytest.raises(ConfigError, match="mixes the keyed form"):
        split_options({"obfs4": {"cert": "c"}, "udpIdleTimeout": 5}, ["obfs4"])
