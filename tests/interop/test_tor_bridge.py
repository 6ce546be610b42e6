"""ptdispatch as tor's managed proxy (PT 1.0), both sides, under the real tor, confined to loopback.

Each case runs a bridge tor (``ServerTransportPlugin``, ``ExtORPort auto``) and a client tor
(``UseBridges 1``, ``ClientTransportPlugin``, a ``Bridge`` line built from the bridge's state) in a
private network namespace (tests/peers/tor.py); the client must fetch the bridge's descriptor, the
furthest a network without directory authorities goes.  Mixed cases put obfs4proxy on one side.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from ptdispatch.transports import registry
from tests.conftest import CI, need_binary
from tests.peers.tor import DESCRIPTOR_LOG, PTDISPATCH, Scenario, confinement_prefix, run_confined

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

OURS, OBFS4PROXY = "ptdispatch", "obfs4proxy"
CASES = [
    (transport, bridge, client)
    for transport in ("obfs3", "obfs4")
    for bridge, client in ((OURS, OURS), (OURS, OBFS4PROXY), (OBFS4PROXY, OURS))
]


@pytest.fixture(scope="module")
def prefix() -> list[str]:
    need_binary("tor")
    found = confinement_prefix()
    if found is None:
        message = "no private network namespace can be made here (unshare --net); tor is never run unconfined"
        if CI:
            pytest.fail(message + "; under CI it is required")
        pytest.skip(message)
    return found


def _need_transport(name: str) -> None:
    try:
        registry.lookup(name)
    except ImportError as exc:  # only a missing transport module may skip, and never under CI
        if CI:
            pytest.fail(f"transport {name} cannot be loaded: {exc}")
        pytest.skip(f"transport {name} is not available yet: {exc}")


def _plugin(which: str) -> str:
    return PTDISPATCH if which == OURS else need_binary(OBFS4PROXY)


def _explain(result: dict[str, Any]) -> str:
    keys = ("bridge_line", "seconds", "bridge_log", "client_log", "bridge_notice", "client_notice", "driver_stderr")
    return "\n".join(f"{k}: {result.get(k)!r}" for k in keys)


@pytest.mark.parametrize(("transport", "bridge", "client"), CASES, ids=["-".join(c) for c in CASES])
def test_client_fetches_bridge_descriptor(prefix: list[str], transport: str, bridge: str, client: str) -> None:
    _need_transport(transport)
    scenario = Scenario(transport, _plugin(bridge), _plugin(client), timeout=90)
    result = run_confined(scenario, prefix)
    assert result["interfaces"] == ["lo"], "tor ran outside a loopback-only namespace"
    assert result["bridge_ready"], _explain(result)
    assert result["descriptor"], f"no {DESCRIPTOR_LOG!r} in the client's log\n{_explain(result)}"
    # The bridge's PT reached tor through the Extended ORPort, naming the transport.
    ext = result["bridge_extorport"]
    assert any(f"with transport '{transport}'" in line for line in ext), ext
    if bridge == OURS:
        assert any("Got client's hash and it was legit" in line for line in ext), ext
        assert any(f"{transport}: server listener on 127.0.0.1:" in line for line in result["bridge_log"])
    if client == OURS:
        assert any(f"{transport}: connection from" in line for line in result["client_log"]), result["client_log"]


def test_namespace_has_only_loopback(prefix: list[str]) -> None:
    """Inside, the driver sees lo alone; outside (with real interfaces) it refuses to start tor."""
    code = (
        "import sys; sys.path.insert(0, '.'); from tests.peers.tor import check_confined, _interfaces; "
        "check_confined(); print(_interfaces())"
    )
    inside = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == "['lo']"
    if sorted(name for _, name in socket.if_nameindex()) != ["lo"]:
        outside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert outside.returncode != 0
        assert "refusing to start tor" in outside.stderr
