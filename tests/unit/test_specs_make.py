"""meek and Optimizer are built through TransportSpec.make_client/make_server like every
transport: unknown keys are refused by name (a child's naming the child), and meek's server takes
configured timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptdispatch.errors import OptionsError
from ptdispatch.transports import registry
from ptdispatch.transports.base import ServerContext, Timeouts
from ptdispatch.transports.meek import MeekClient, MeekServer
from ptdispatch.transports.optimizer import OptimizerClient

SHADOW = {"serverAddress": "127.0.0.1:1", "password": "p", "cipherName": "aes-128-gcm"}


def spec(name: str):  # type: ignore[no-untyped-def]
    found = registry.lookup(name)
    assert found is not None
    return found


@pytest.mark.parametrize("name", ["meeklite", "meek", "meek_lite"])
def test_meek_builds_through_the_spec_and_refuses_typos(name: str, tmp_path: Path) -> None:
    assert isinstance(spec(name).make_client({"url": "https://example.com/", "utls": "none"}), MeekClient)
    with pytest.raises(OptionsError, match="unknown option 'fornt'"):
        spec(name).make_client({"url": "https://example.com/", "fornt": "cdn.example.net"})
    server = spec(name).make_server({"url": "https://example.com/"}, ServerContext(state_dir=tmp_path))
    assert isinstance(server, MeekServer) and server.tuning.dial_wait == 30.0 and server.name == "meeklite"
    named = spec(name).make_server({}, ServerContext(state_dir=tmp_path, name=name))
    assert isinstance(named, MeekServer) and named.name == name  # the transport label of its metrics
    with pytest.raises(OptionsError, match="unknown option 'utls'"):
        spec(name).make_server({"utls": "none"}, ServerContext(state_dir=tmp_path))


def test_meek_server_takes_configured_timeouts(tmp_path: Path) -> None:
    ctx = ServerContext(state_dir=tmp_path, timeouts=Timeouts(handshake=1.5, linger=0.5))
    server = spec("meeklite").make_server({}, ctx)
    assert isinstance(server, MeekServer) and server.tuning.dial_wait == 1.5


@pytest.mark.parametrize(("given", "cap"), [({}, 4096), ({"maxSessions": 20000}, 20000), ({"maxSessions": "50"}, 50)])
def test_meek_server_session_cap_is_an_option(given: dict[str, object], cap: int, tmp_path: Path) -> None:
    server = spec("meek").make_server(given, ServerContext(state_dir=tmp_path))
    assert isinstance(server, MeekServer) and server.options.max_sessions == cap


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_meek_server_refuses_a_bad_session_cap(bad: object, tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="option 'maxSessions' must be a number from 1 to 10000000"):
        spec("meeklite").make_server({"maxSessions": bad}, ServerContext(state_dir=tmp_path))


def test_optimizer_children_are_built_with_make_client() -> None:
    good = {"transports": [{"name": "shadow", "config": SHADOW}]}
    assert isinstance(spec("optimizer").make_client(good), OptimizerClient)
    typo = {
        "transports": [
            {"name": "plain", "config": {"serverAddress": "127.0.0.1:2"}},
            {"name": "shadow", "config": {**SHADOW, "cypher": "x"}},
        ]
    }
    with pytest.raises(OptionsError, match=r"transports\[1\] \(shadow\): unknown option 'cypher' \(known: ") as info:
        spec("optimizer").make_client(typo)
    assert info.value.transport == "Optimizer"


def test_optimizer_child_errors_name_the_child() -> None:
    bad = {"transports": [{"name": "shadow", "config": {"serverAddress": "127.0.0.1:1"}}]}
    with pytest.raises(OptionsError, match=r"transports\[0\] \(shadow\): .*password"):
        spec("optimizer").make_client(bad)


def test_optimizer_top_level_typo_is_refused() -> None:
    with pytest.raises(OptionsError, match="unknown option 'stratgy'"):
        spec("optimizer").make_client({"transports": [{"name": "plain", "config": {}}], "stratgy": "first"})
