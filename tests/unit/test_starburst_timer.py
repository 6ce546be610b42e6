"""Starburst's per-step deadlines and DarkStar's random timeouts, through the engine timer
(``get_timer``/``handle_timer``) on an injected clock."""

from __future__ import annotations

import os

import pytest

from ptdispatch.errors import HandshakeTimeout, RemoteProtocolError
from ptdispatch.transports.base import Timeouts
from ptdispatch.transports.darkstar.engine import (
    SERVER_TIMEOUTS,
    DarkStarClientEngine,
    DarkStarServerEngine,
    ServerKey,
    new_ephemeral,
)
from ptdispatch.transports.darkstar.handshake import server_identifier
from ptdispatch.transports.darkstar.replay import ReplayFilter
from ptdispatch.transports.starburst import (
    EHLO,
    LINE_LIMIT,
    STARTTLS,
    STEP_TIMEOUT,
    Starburst,
    TonedEngine,
    server_script,
)

KEY = ServerKey(new_ephemeral())
SID = server_identifier(None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def server(clock: Clock, timeouts: Timeouts = SERVER_TIMEOUTS, rng: object = os.urandom) -> TonedEngine:
    inner = DarkStarServerEngine(KEY, SID, ReplayFilter(), rng=rng)  # type: ignore[arg-type]
    engine = TonedEngine(Starburst(server_script(), clock=clock), inner)
    engine.start(clock.now, timeouts)
    engine.initiate()
    engine.data_to_send()
    return engine


def test_each_step_has_its_own_deadline() -> None:
    clock = Clock()
    engine = server(clock)
    assert engine.get_timer() == 1000.0 + STEP_TIMEOUT  # the EHLO step, from the banner
    clock.now = 1009.0
    engine.receive_data(EHLO)
    assert engine.get_timer() == 1009.0 + STEP_TIMEOUT  # the STARTTLS step, from the welcome
    engine.handle_timer(1018.9)  # not yet due: nothing happens
    clock.now = 1018.0
    engine.receive_data(STARTTLS)
    assert engine.data_to_send().endswith(b"220 Go ahead\r\n")
    assert engine.get_timer() == 1018.0 + STEP_TIMEOUT  # the DarkStar hello: one more step


@pytest.mark.parametrize("step", [0, 1, 2])
def test_a_stalled_step_is_cut_at_its_own_deadline(step: int) -> None:
    clock = Clock()
    engine = server(clock)
    for line in (EHLO, STARTTLS)[:step]:
        clock.now += 7.0
        engine.receive_data(line)
    due = engine.get_timer()
    assert due == clock.now + STEP_TIMEOUT
    engine.handle_timer(due - 0.01)
    with pytest.raises(HandshakeTimeout) as info:
        engine.handle_timer(due)
    # The prober treatment: until DarkStar's close time, its start + its random timeout and linger.
    close = 1000.0 + engine.inner.linger_at(1000.0)
    assert 1000.0 + 30 + 10 <= close <= 1000.0 + 60 + 60
    assert due + info.value.linger == pytest.approx(close)


def test_an_over_long_line_closes_when_a_stalled_step_would() -> None:
    """A line over the limit fails at a byte count: its linger runs to DarkStar's one close time,
    the time a prober that sent a byte fewer and stalled is closed at, too."""

    def close_time(sends: list[tuple[float, bytes]]) -> float:
        clock = Clock()
        engine = server(clock, rng=lambda n: b"\x5a" * n)  # the same draws for every scenario
        try:
            for when, data in sends:
                clock.now = when
                engine.receive_data(data)
            due = engine.get_timer()
            assert due is not None
            clock.now = due
            engine.handle_timer(due)
        except RemoteProtocolError as exc:
            return round(clock.now + exc.linger, 6)
        raise AssertionError("neither a failure nor a timeout")

    line = b"x" * (LINE_LIMIT + 1)
    stalled = close_time([(1000.0, line[:-1])])
    assert 1000.0 + 30 + 10 <= stalled <= 1000.0 + 60 + 60
    assert close_time([(1000.0, line)]) == stalled
    assert close_time([(1000.0, line[:10]), (1005.0, line[10:])]) == stalled


def test_a_step_completed_late_is_refused() -> None:
    clock = Clock()
    engine = server(clock)
    clock.now += STEP_TIMEOUT + 0.5  # the timer was not run (a busy loop): the line is still late
    with pytest.raises(RemoteProtocolError, match="took more than"):
        engine.receive_data(EHLO)


def test_configured_handshake_timeout_shortens_every_step() -> None:
    clock = Clock()
    engine = server(clock, Timeouts(handshake=1.0, linger=0.6))
    assert engine.get_timer() == 1001.0
    clock.now = 1000.9
    engine.receive_data(EHLO)
    assert engine.get_timer() == pytest.approx(1001.9)
    with pytest.raises(HandshakeTimeout) as info:
        engine.handle_timer(1001.9)
    # Until DarkStar's close time (start + 0.5-1 s + 0.1-0.6 s), if that is still to come.
    close = 1000.0 + engine.inner.linger_at(1000.0)
    assert 1000.6 <= close <= 1001.6
    assert info.value.linger == pytest.approx(max(0.0, close - 1001.9))


def test_darkstar_draws_its_timeouts_within_the_configured_bounds() -> None:
    seen = set()
    for _ in range(40):
        engine = DarkStarServerEngine(KEY, SID, ReplayFilter())
        engine.start(0.0, SERVER_TIMEOUTS)
        timer = engine.get_timer()
        assert timer is not None and 30.0 <= timer <= 60.0
        assert 10.0 <= round(engine.linger_at(timer), 9) <= 60.0  # (timer + linger) - timer: float rounding
        short = DarkStarServerEngine(KEY, SID, ReplayFilter())
        short.start(0.0, Timeouts(handshake=1.0, linger=0.6))
        timer = short.get_timer()
        assert timer is not None and 0.5 <= timer <= 1.0
        assert 0.1 <= round(short.linger_at(timer), 9) <= 0.6
        seen.add(timer)
    assert len(seen) > 5  # still random


def test_darkstar_handshake_timeout_fires_with_the_drawn_linger() -> None:
    engine = DarkStarServerEngine(KEY, SID, ReplayFilter(), rng=lambda n: b"\xff" * n)
    engine.start(0.0, Timeouts(handshake=2.0, linger=1.2))
    engine.receive_data(b"\x01" * 63)
    due = engine.get_timer()
    assert due is not None and 1.0 <= due <= 2.0
    with pytest.raises(HandshakeTimeout) as info:
        engine.handle_timer(due)
    assert info.value.linger == pytest.approx(engine.linger)


def test_client_handshake_deadline_is_the_configured_one() -> None:
    """The client's timeout is configuration given to ``start`` (no class attribute to patch)."""
    client = DarkStarClientEngine(KEY.public, SID)
    client.start(10.0, Timeouts(handshake=2.0, linger=0.5))
    client.initiate()
    assert client.get_timer() == 12.0
    client.handle_timer(11.9)  # not yet
    with pytest.raises(HandshakeTimeout) as info:
        client.handle_timer(12.0)
    assert info.value.linger == 0.5
