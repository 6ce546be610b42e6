"""Every registered transport is in the conformance table."""

from __future__ import annotations

import pytest

from ptdispatch.transports import registry
from tests.conformance.pairs import PAIRS


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_transport_has_a_pair(name: str) -> None:
    assert any(pair.transport.lower() == name.lower() for pair in PAIRS.values()), (
        f"transport {name!r} is not in the conformance suite: add a row to tests/conformance/pairs.py"
    )
