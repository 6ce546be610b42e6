"""Real tor on both ends over meek, in a private network namespace (tests/peers/tor.py): a bridge
tor running our server as ``ServerTransportPlugin meek`` (ExtORPort), a client tor with
``ClientTransportPlugin meek_lite`` running first obfs4proxy, then ours."""

from __future__ import annotations

import re

import pytest

from tests.conftest import need_binary
from tests.interop.test_tor_bridge import _explain, prefix
from tests.peers.tor import BRIDGE_PT_PORT, DESCRIPTOR_LOG, PTDISPATCH, Scenario, run_confined

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]
__all__ = ["prefix"]  # the fixture


@pytest.mark.parametrize("client", ["obfs4proxy", "ptdispatch"])
def test_tor_bootstraps_over_meek(prefix: list[str], client: str) -> None:
    plugin = need_binary("obfs4proxy") if client == "obfs4proxy" else PTDISPATCH
    scenario = Scenario(
        "meek", PTDISPATCH, plugin, timeout=60, client_transport="meek_lite",
        bridge_args=f"url=http://127.0.0.1:{BRIDGE_PT_PORT}/",
    )  # fmt: skip
    result = run_confined(scenario, prefix)
    assert result["interfaces"] == ["lo"], "tor ran outside a loopback-only namespace"
    assert result["bridge_ready"], _explain(result)
    assert result["descriptor"], f"no {DESCRIPTOR_LOG!r} in the client's log\n{_explain(result)}"
    percents = [int(m) for line in result["client_notice"] for m in re.findall(r"Bootstrapped (\d+)%", line)]
    assert percents and max(percents) >= 25, _explain(result)
    ext = result["bridge_extorport"]
    assert any("with transport 'meek'" in line for line in ext), ext
    assert any("Got client's hash and it was legit" in line for line in ext), ext
