"""Timeouts: configuration of a client or server transport, handed to each of its engines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """How long one side of a transport waits: configuration of a client or server transport
    (its constructor takes one), handed to each engine by :meth:`Engine.start`."""

    #: Seconds the peer has to complete the handshake.
    handshake: float = 60.0
    #: Seconds to keep reading and discarding after a failure that carries no linger of its own
    #: (a handshake timeout, a bug in the engine) before closing; 0 closes at once.  A server engine
    #: that keeps one close time per connection (``Engine.keep_close_time``) closes any failed
    #: handshake at its start + ``handshake`` + ``linger``.
    linger: float = 0.0


DEFAULT_TIMEOUTS = Timeouts()
