"""The dispatcher's configuration: one frozen, validated object built before anything listens."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
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


def first_of_each(names: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The transport ``names`` with only the first of each, in order, and the repeats left out.

    Names match in any letter case, as the registry looks them up and as options, bind addresses
    and worker ports are keyed: ``OBFS4`` after ``obfs4`` has the same settings, and would print a
    second method line and bind the first's address again.  Aliases (``meek``, ``meek_lite``,
    ``meeklite``) are different names: tor matches a bridge's transport to a method line by its
    exact name, and each has its own bind address, so each is kept."""
    kept: dict[str, str] = {}
    repeats: list[str] = []
    for name in names:
        if name.lower() in kept:
            repeats.append(name)
        else:
            kept[name.lower()] = name
    return tuple(kept.values()), tuple(repeats)


def _frozen(mapping: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in mapping.items()})


@dataclass(frozen=True)
class Config:
    """Everything the parent told us, validated.  Built by :mod:`ptdispatch.ipc.flags` (PT 3.0)
    or :mod:`ptdispatch.ipc.env` (Tor PT 1.0)."""

    role: Role
    #: Requested transport names, as given (unknown ones are skipped silently at start-up), each
    #: once (:func:`first_of_each`).
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
    #: The names left out of ``transports`` as repeats of an earlier one: a WARN line each.
    repeated_transports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_transport_options", _frozen(self.per_transport_options))
        object.__setattr__(self, "common_options", MappingProxyType(dict(self.common_options)))
        object.__setattr__(self, "bind", MappingProxyType(dict(self.bind)))

    def options_for(self, transport: str) -> dict[str, object]:
        """The raw options for ``transport``: the common ones overlaid with its own."""
        merged = dict(self.common_options)
        merged.update(self.per_transport_options.get(transport.lower(), {}))
        return merged
