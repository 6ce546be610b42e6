"""A failed server connection closes at one time drawn for it at its start, whatever the prober sent
and when: too few bytes to fail (the handshake timeout, then the linger) and enough to fail (a
failure, then a linger) end at the same moment.  A linger counted from the failure would tell a
prober, by any close before the timeout's, that its bytes crossed the count that fails.

Engine level on a simulated clock (the adapter's clock, :attr:`Engine.clock`; obfs4 reads the
server's ``ServerContext.clock``), with the server's randomness replayed so that each scenario of a
row draws the same timeouts.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from ptdispatch.errors import RemoteProtocolError
from ptdispatch.transports import obfs3, registry
from ptdispatch.transports.base import Engine, EngineServerTransport, ServerContext

#: obfs3's bytes to fail: a key, then padding without the client's magic up to the scan limit.
OBFS3_FAIL = 192 + obfs3.SCAN_LIMIT


@dataclass(frozen=True)
class Row:
    transport: str
    options: dict[str, object]
    #: Bytes a probe needs to make the handshake fail (one fewer meets the timeout).
    fail_at: int
    #: Bytes sent at once in the scenario that crosses ``fail_at`` later.
    first: int = 1
    #: The earliest close, from the connection's start, at the default timeouts.
    earliest: float = 0.0


ROWS = {
    "shadow": Row("shadow", {"password": "pw"}, 32 + 18, earliest=40.0),  # chacha20: salt 32 + length 18
    "shadow-aes-128-gcm": Row("shadow", {"password": "pw", "cipherName": "aes-128-gcm"}, 16 + 18, earliest=40.0),
    "darkstar": Row("shadow", {"cipherName": "DarkStar"}, 64, earliest=40.0),
    "obfs2": Row("obfs2", {}, 24, earliest=30.0),
    "obfs3": Row("obfs3", {}, OBFS3_FAIL, first=193, earliest=30.0),  # 193: the magic's deadline runs from 0
    "obfs4": Row("obfs4", {}, 8192, earliest=30.0),  # the control: obfs4proxy's closeAfterDelay
}


class Replayed:
    """The server's randomness, started afresh for each connection (the same draws each time)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.restart()

    def restart(self) -> None:
        self._random = random.Random(self._seed)

    def __call__(self, n: int) -> bytes:
        return self._random.randbytes(n)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def close_time(server: EngineServerTransport, rng: Replayed, clock: Clock, sends: list[tuple[float, bytes]]) -> float:
    """When the server closes a connection started at 0 that gets ``sends`` (time, bytes) and then
    nothing: the failure's time plus its linger."""
    rng.restart()
    clock.now = 0.0
    engine: Engine = server.new_engine()
    engine.clock = clock
    engine.start(0.0, server.timeouts)
    engine.initiate()
    engine.data_to_send()
    try:
        for when, data in sends:
            timer = engine.get_timer()
            assert timer is None or timer > when, "the handshake timed out before the probe's bytes"
            clock.now = when
            engine.receive_data(data)
        due = engine.get_timer()
        assert due is not None, "no failure and no timer"
        clock.now = due
        engine.handle_timer(due)
    except RemoteProtocolError as exc:
        return round(clock.now + exc.linger, 6)
    raise AssertionError("the timer did not end the handshake")


@pytest.mark.parametrize("row_id", list(ROWS))
@pytest.mark.parametrize("seed", range(4))
def test_timeout_and_failure_close_at_the_same_time(row_id: str, seed: int, tmp_path: Path) -> None:
    row = ROWS[row_id]
    rng, clock = Replayed(seed), Clock()
    spec = registry.lookup(row.transport)
    assert spec is not None
    server = spec.make_server(row.options, ServerContext(tmp_path, rng=rng, clock=clock))
    assert isinstance(server, EngineServerTransport)
    probe = os.urandom(row.fail_at)
    scenarios = {
        "too few bytes, the timeout": [(0.0, probe[: row.first] if row.first > 1 else probe[:-1])],
        "enough to fail at once": [(0.0, probe)],
        "enough to fail, crossing 10 s later": [(0.0, probe[: row.first]), (10.0, probe[row.first :])],
        "a byte at 5 s, then enough to fail": [(5.0, probe[:1]), (12.0, probe[1:])],
    }
    if row_id == "obfs3":  # the magic's deadline runs from the first byte after the key, not from 5 s
        del scenarios["a byte at 5 s, then enough to fail"]
    times = {name: close_time(server, rng, clock, sends) for name, sends in scenarios.items()}
    assert len(set(times.values())) == 1, times
    assert min(times.values()) >= row.earliest, times
