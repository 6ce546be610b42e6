"""The dispatcher's configuration: one frozen, validated object built before anything listens."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .net.addr import Address
from .net.upstream import UpstreamProxy


class Mode(enum.Enum):
    """How the client side accepts application traffic (and how the server interprets the stream)."""

    SOCKS5 = "socks5"
    TRANSPARENT_TCP = "transparent-TCP"
    TRANSPARENT_UDP = "transparent-UDP"
    STUN = "STUN"

    @property
    def is_udp(self) -> bool:
        return self in (Mode.TRANSPARENT_UDP, Mode.STUN)

    @classmethod
    def parse(cls, text: str) -> Mode:
        for mode in cls:
            if mode.value.lower() == text.lower():
                return mode
        raise ValueError(f"unknown -mode {text!r}; use one of: {', '.join(m.value for m in cls)}")


class LogLevel(enum.IntEnum):
    """-ipcLogLevel: messages at this level or more severe are sent as LOG lines."""

    NONE = 0
    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4

    @classmethod
    def parse(cls, text: str) -> LogLevel:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown -ipcLogLevel {text!r}; use one of: {', '.join(level.name for level in cls)}"
            ) from None


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


def _frozen(mapping: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in mapping.items()})


@dataclass(frozen=True)
class Config:
    """Everything the parent told us, validated.  Built by :mod:`ptdispatch.ipc.flags` (PT 3.0)
    or :mod:`ptdispatch.ipc.env` (Tor PT 1.0)."""

    role: Role
    #: Requested transport names, as given (unknown ones are skipped silently at start-up).
    transports: tuple[str, ...]
    #: Raw options per transport name (lower-case keys); see :meth:`options_for`.
    per_transport_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: Options applied to every transport (the flat form of -options).
    common_options: Mapping[str, object] = field(default_factory=dict)
    mode: Mode = Mode.SOCKS5
    state_dir: Path = Path()
    exit_on_stdin_close: bool = False
    log_level: LogLevel = LogLevel.NONE
    #: The protocol dialect of our output: "3.0" or Tor's "1".
    pt_version: str = "3.0"
    proxy: UpstreamProxy | None = None
    #: Client: where to listen (None: 127.0.0.1, ephemeral port per transport).
    listen: Address | None = None
    #: Server: where each transport listens (lower-case transport name -> address).
    bind: Mapping[str, Address] = field(default_factory=dict)
    target: Address | None = None
    extorport: Address | None = None
    authcookie: Path | None = None
    #: Tor's TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6 (PT 1.0 only).
    outbound_bind_v4: str | None = None
    outbound_bind_v6: str | None = None
    #: Log client addresses in the clear (default: scrubbed).
    log_addresses: bool = False
    #: Operator extensions (:mod:`ptdispatch.scaling`): worker processes sharing each listener,
    #: where to serve Prometheus metrics, and a Redis URL for replay state shared by a fleet.
    workers: int = 1
    metrics: Address | None = None
    replay_store: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_transport_options", _frozen(self.per_transport_options))
        object.__setattr__(self, "common_options", MappingProxyType(dict(self.common_options)))
        object.__setattr__(self, "bind", MappingProxyType(dict(self.bind)))

    def options_for(self, transport: str) -> dict[str, object]:
        """The raw options for ``transport``: the common ones overlaid with its own."""
        merged = dict(self.common_options)
        merged.update(self.per_transport_options.get(transport.lower(), {}))
        return merged
