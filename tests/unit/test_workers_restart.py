"""How soon -workers restarts a worker that died."""

from __future__ import annotations

from ptdispatch.workers import MAX_RESTART_DELAY, QUICK_DEATH, restart_delay


def test_a_worker_that_lived_is_restarted_at_once() -> None:
    assert restart_delay(QUICK_DEATH + 0.1, 0) == 0.0


def test_quick_deaths_in_a_row_back_off_up_to_a_minute() -> None:
    delays = [restart_delay(0.2, n) for n in range(1, 10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays == sorted(delays) and max(delays) == MAX_RESTART_DELAY
