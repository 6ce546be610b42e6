"""How soon -workers restarts a worker that died."""

from __future__ import annotations

import os

from ptdispatch.config import LogLevel
from ptdispatch.workers import MAX_RESTART_DELAY, QUICK_DEATH, Supervisor, Worker, restart_delay


class Recorder:
    def __init__(self) -> None:
        self.logs: list[tuple[LogLevel, str]] = []

    def log(self, level: LogLevel, message: str) -> None:
        self.logs.append((level, message))

    def forward_log(self, rest: str) -> None:
        pass


def test_a_worker_that_lived_is_restarted_at_once() -> None:
    assert restart_delay(QUICK_DEATH + 0.1, 0) == 0.0


def test_quick_deaths_in_a_row_back_off_up_to_a_minute() -> None:
    delays = [restart_delay(0.2, n) for n in range(1, 10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays == sorted(delays) and max(delays) == MAX_RESTART_DELAY


def test_a_worker_that_starts_without_a_method_the_first_serves_is_a_warn_line() -> None:
    """The parent printed its method lines once, from the first worker: a restarted worker that
    could not listen for one of them would otherwise serve less without a word."""
    reporter = Recorder()
    supervisor = Supervisor(None, reporter, None, None)  # type: ignore[arg-type]  # only _line is used
    supervisor._first_errors = {"SMETHOD-ERROR shadow bad password"}
    worker = Worker(index=1, pid=4242, fd=-1, started=0.0)
    for line in ("SMETHOD obfs4 127.0.0.1:1", "SMETHOD-ERROR shadow bad password", "SMETHOD-ERROR obfs2 cannot listen"):
        supervisor._line(worker, line)
    assert reporter.logs == []
    supervisor._line(worker, "SMETHODS DONE")
    supervisor.selector.close()
    os.close(supervisor._wake_r)
    os.close(supervisor._wake_w)
    assert reporter.logs == [
        (LogLevel.WARN, "worker 1 (pid 4242) started without it: SMETHOD-ERROR obfs2 cannot listen")
    ]
