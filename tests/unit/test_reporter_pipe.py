"""LOG lines never block the process on a parent that stopped reading stdout (a full pipe)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

import pytest

from ptdispatch.config import LogLevel
from ptdispatch.ipc.reporter import MAX_LOG, Reporter

pytestmark = pytest.mark.timeout(10)


@contextlib.contextmanager
def full_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose buffer is full: (read end, write end)."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x" * 65536)
    fcntl.fcntl(w, fcntl.F_SETFL, flags)  # blocking again, as stdout is
    try:
        yield r, w
    finally:
        os.close(r)


def drain(fd: int) -> None:
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 65536):
            pass
    os.set_blocking(fd, True)


@pytest.mark.parametrize("pt_version", ["3.0", "1"])
def test_log_lines_are_dropped_while_the_pipe_is_full_then_counted(pt_version: str) -> None:
    with full_pipe() as (r, w), os.fdopen(w, "w") as out, open(os.devnull, "w") as err:
        reporter = Reporter(out=out, err=err, level=LogLevel.INFO, pt_version=pt_version)
        started = time.monotonic()
        for i in range(1000):
            reporter.log(LogLevel.INFO, f"line {i}")
        assert time.monotonic() - started < 2  # did not block
        assert reporter.dropped == 1000
        drain(r)
        reporter.log(LogLevel.INFO, "after")
        lines = os.read(r, 65536).decode().splitlines()
    assert reporter.dropped == 0
    assert len(lines) == 2
    assert "1000 LOG line(s) dropped: the parent was not reading stdout" in lines[0]
    assert lines[0].startswith("LOG WARN " if pt_version == "3.0" else "LOG SEVERITY=warning ")
    assert "after" in lines[1]


def test_a_long_message_is_cut_below_pipe_buf() -> None:
    r, w = os.pipe()
    with os.fdopen(w, "w") as out, open(os.devnull, "w") as err:
        Reporter(out=out, err=err, level=LogLevel.INFO).log(LogLevel.INFO, "y" * 100_000)
    with os.fdopen(r, "rb") as inp:
        line = inp.read()
    assert line == b"LOG INFO " + b"y" * MAX_LOG + b"\n"
    assert len(line) < 4096


@pytest.mark.parametrize("pt_version", ["3.0", "1"])
@pytest.mark.parametrize("message", ["\U0001f600" * 3000, "y" + "é" * 3000, "x" + "\u20ac" * 3000, '\\"' * 3000])
def test_a_long_message_is_cut_in_bytes_on_a_character_boundary(message: str, pt_version: str) -> None:
    """Four-byte characters (a client's per-connection key in a WARN line) must not make the line
    longer than PIPE_BUF, where a write to a pipe with one free page could block."""
    r, w = os.pipe()
    with os.fdopen(w, "w", encoding="utf-8") as out, open(os.devnull, "w") as err:
        Reporter(out=out, err=err, level=LogLevel.INFO, pt_version=pt_version).log(LogLevel.INFO, message)
    with os.fdopen(r, "rb") as inp:
        line = inp.read()
    assert len(line) < 4096
    text = line.decode("utf-8")  # whole characters only
    if pt_version == "3.0":
        kept = text.removeprefix("LOG INFO ").removesuffix("\n")
        assert message.startswith(kept) and len(kept.encode()) > MAX_LOG - 4
    else:
        assert text.startswith('LOG SEVERITY=info MESSAGE="') and text.endswith('"\n')
