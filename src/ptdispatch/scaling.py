"""Operator extensions: ``-workers``, ``-metrics``, ``-replayStore`` (and PTDISPATCH_* for PT 1.0).

Only the parsing lives here (both front doors call :func:`extension_settings`); the work is done by
:mod:`ptdispatch.workers`, :mod:`ptdispatch.metrics` and :mod:`ptdispatch.replay`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigError
from .net.accept import LISTEN_BACKLOG
from .net.addr import parse_hostport

if TYPE_CHECKING:
    from .replay.base import ReplayStore
    from .transports.base import ServerTransport

MAX_WORKERS = 256


def parse_workers(text: str, source: str) -> int:
    """``N`` (1..256, ASCII digits only: ``int()`` would also take ``1_6``, ``+2`` or other scripts'
    digits) or ``auto`` (one per CPU this process may run on, at most 256)."""
    word = text.strip()
    if word.lower() == "auto":
        return min(MAX_WORKERS, max(1, len(os.sched_getaffinity(0))))
    count = int(word) if word.isascii() and word.isdigit() else 0
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"{source} {text!r}: give a number of worker processes from 1 to {MAX_WORKERS}, or auto")
    return count


def parse_replay_store(text: str, source: str) -> str:
    """``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``)."""
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(f"{source} {text!r}: give a Redis URL such as redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 - raises ValueError when malformed
    except ValueError:
        raise ConfigError(f"{source} {text!r}: the port is not a number from 0 to 65535") from None
    return text


def extension_settings(
    workers: str | None, metrics: str | None, replay_store: str | None, names: tuple[str, str, str]
) -> dict[str, object]:
    """Config fields from the three settings; ``names`` are the flags/variables, for the messages."""
    out: dict[str, object] = {}
    if workers is not None:
        out["workers"] = parse_workers(workers, names[0])
    if metrics is not None:
        try:
            out["metrics"] = parse_hostport(metrics, require_ip=True)
        except ValueError as exc:
            raise ConfigError(f"{names[1]} {metrics!r}: {exc}") from None
    if replay_store is not None:
        out["replay_store"] = parse_replay_store(replay_store, names[2])
    return out


@dataclass(frozen=True)
class ProcessSetup:
    """What the dispatcher in one (worker) process is given besides its configuration."""

    #: Server transports built once by the parent (keys and state loaded), by lower-case name.
    servers: Mapping[str, ServerTransport] = field(default_factory=dict)
    #: Replay store shared by every worker (None: each server keeps its own filter).
    replay: ReplayStore | None = None
    #: Listen with SO_REUSEPORT (several workers share each port).
    reuse_port: bool = False
    #: Ports to use instead of the configured ones (later workers join the first one's ports).
    ports: Mapping[str, int] = field(default_factory=dict)
    #: This process's index under ``-workers`` (None: no workers).
    worker: int | None = None


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes may share (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
