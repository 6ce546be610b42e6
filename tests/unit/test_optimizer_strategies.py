"""Optimizer's strategies on their own: order and memory, with an injected clock (deterministic)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch.transports.optimizer import strategies
from ptdispatch.transports.optimizer.strategies import First, MinimizeDialDuration, Random, Rotate, Track


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_always_starts_at_the_first() -> None:
    s = First(3)
    assert [s.order() for _ in range(3)] == [[0, 1, 2]] * 3
    s.report(0, False, 1.0)
    assert s.order() == [0, 1, 2]


def test_random_is_a_permutation_and_every_child_comes_first() -> None:
    s = Random(3, rng=random.Random(7))
    orders = [s.order() for _ in range(300)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    firsts = Counter(o[0] for o in orders)
    assert set(firsts) == {0, 1, 2} and min(firsts.values()) > 60, firsts


def test_random_defaults_to_the_system_generator() -> None:
    s = Random(2)
    assert {s.order()[0] for _ in range(200)} == {0, 1}


def test_rotate_starts_at_the_first_and_wraps() -> None:
    s = Rotate(3)
    assert [s.order() for _ in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    one = Rotate(1)
    assert [one.order() for _ in range(3)] == [[0]] * 3


def test_track_skips_a_failed_child_then_retries_it_after_a_while() -> None:
    clock = Clock()
    s = Track(3, clock=clock, retry_after=60)
    assert s.order() == [0, 1, 2]
    s.report(0, False, 0.1)
    assert s.order() == [1, 2, 0]  # still tried last, so a connection fails only when all do
    clock.now += 10
    s.report(1, False, 0.1)
    assert s.order() == [2, 0, 1]  # the older failure first among the benched
    clock.now += 50  # child 0 failed 60 s ago: preferred again
    assert s.order() == [0, 2, 1]
    s.report(1, True, 0.1)
    assert s.order() == [0, 1, 2]


def test_track_with_one_child() -> None:
    s = Track(1, clock=Clock())
    s.report(0, False, 0.1)
    assert s.order() == [0]


def test_minimize_dial_duration_measures_each_then_prefers_the_fastest() -> None:
    clock = Clock()
    s = MinimizeDialDuration(3, clock=clock, remeasure_after=300)
    assert s.order() == [0, 1, 2]
    s.report(0, True, 0.30)
    assert s.order() == [1, 2, 0]  # unmeasured ones first
    s.report(1, True, 0.10)
    s.report(2, True, 0.20)
    assert s.order() == [1, 2, 0]
    s.report(1, True, 0.50)  # smoothed: 0.3, now slower than child 2
    assert s.estimate(1) == pytest.approx(0.30)
    assert s.order()[0] == 2
    s.report(2, False, 1.0)  # failed: infinitely slow
    assert s.estimate(2) == math.inf
    assert s.order()[-1] == 2


def test_minimize_dial_duration_remeasures_stale_children() -> None:
    clock = Clock()
    s = MinimizeDialDuration(2, clock=clock, remeasure_after=300)
    s.report(0, True, 0.5)
    s.report(1, True, 0.1)
    for _ in range(3):
        assert s.order()[0] == 1
        clock.now += 100
        s.report(1, True, 0.1)  # child 1 keeps being used, so it stays fresh
    assert s.order() == [0, 1]  # child 0 was last measured 300 s ago: measure it again
    s.report(0, True, 0.5)
    assert s.order() == [1, 0]


def test_minimize_dial_duration_retries_a_failed_child_when_stale() -> None:
    clock = Clock()
    s = MinimizeDialDuration(2, clock=clock, remeasure_after=300)
    s.report(0, False, 0.1)
    s.report(1, True, 0.2)
    assert s.order() == [1, 0]
    clock.now += 400
    s.report(1, True, 0.2)
    assert s.order() == [0, 1]
    s.report(0, True, 0.05)  # recovered, and faster
    assert s.order() == [0, 1]


def test_names_match_in_any_case() -> None:
    assert strategies.lookup("minimizedialduration") is MinimizeDialDuration
    assert strategies.lookup("ROTATE") is Rotate
    assert strategies.lookup("fastest") is None


def test_no_children_is_refused() -> None:
    with pytest.raises(ValueError):
        First(0)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(strategies.STRATEGIES)),
    count=st.integers(1, 5),
    events=st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.floats(0, 5), st.floats(0, 400)), max_size=40),
)
def test_any_history_gives_a_permutation(name: str, count: int, events: list[tuple[int, bool, float, float]]) -> None:
    """Whatever happened before, every connection may try every child exactly once, and a
    child that just succeeded is never put after one that just failed (track, minimizeDialDuration)."""
    clock = Clock()
    kind = strategies.STRATEGIES[name]
    s = kind(count, clock=clock)
    for index, ok, seconds, wait in events:
        order = s.order()
        assert sorted(order) == list(range(count))
        clock.now += wait
        s.report(index % count, ok, seconds)
    assert sorted(s.order()) == list(range(count))
    if name in ("track", "minimizeDialDuration") and count >= 2:
        s.report(0, False, 1.0)
        s.report(1, True, 1.0)
        order = s.order()
        assert order.index(1) < order.index(0)
