"""Server side of the UDP modes (placeholder until implemented)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..events import EventLog
from ..net.addr import Address


class UdpServerMethod:
    """Per transport connection: datagrams to -target from a socket of their own, replies back."""

    def __init__(
        self, name: str, target: Address | None, stun: bool, options: Mapping[str, object], log: EventLog
    ) -> None:
        self.name, self.target, self.stun, self.options, self.log = name, target, stun, options, log

    def accepted(self) -> asyncio.Protocol:
        raise NotImplementedError

    def handshake_failed(self, exc: Exception) -> None:
        self.log.info(f"{self.name}: handshake failed: {exc}")
