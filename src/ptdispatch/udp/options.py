"""Options of the UDP modes (read from -options, next to the transport's own keys)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..transports.options import get_bool, get_float, get_int

IDLE_TIMEOUT_KEY = "udpIdleTimeout"
MAX_SESSIONS_KEY = "udpMaxSessions"
QUEUE_KEY = "udpQueueWhileWaiting"
CLASSIC_KEY = "udpStunClassic"


@dataclass(frozen=True)
class UdpOptions:
    """How the pool behaves; one object per UDP listener."""

    #: Seconds without a packet (either direction) after which a session is closed.
    idle_timeout: float = 60.0
    #: The most sessions the pool holds; a new one evicts the least recently used.
    max_sessions: int = 1024
    #: Datagrams held per session while its transport connection is being set up; 0 (the spec's
    #: Table 1) drops them.
    queue_while_waiting: int = 0
    #: STUN mode: also accept RFC 3489 messages (no magic cookie), as old STUN clients send.
    stun_classic: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, object], transport: str, *, default_idle: float = 60.0) -> UdpOptions:
        """Read the ``udp*`` keys of ``raw``; raises ``OptionsError`` naming the key."""
        return cls(
            idle_timeout=get_float(raw, transport, IDLE_TIMEOUT_KEY, default=default_idle, low=0.01, high=86_400.0),
            max_sessions=get_int(raw, transport, MAX_SESSIONS_KEY, default=1024, low=1, high=1_000_000),
            queue_while_waiting=get_int(raw, transport, QUEUE_KEY, default=0, low=0, high=64),
            stun_classic=get_bool(raw, transport, CLASSIC_KEY),
        )
