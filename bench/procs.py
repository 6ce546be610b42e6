"""Process bookkeeping for the benchmark: start, read their lines, account CPU and memory, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A peer could not be started or a measurement went wrong."""


@dataclass
class Proc:
    """One started process: stdout lines collected by a thread, stderr into a file."""

    name: str
    popen: subprocess.Popen[bytes]
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, prefix: str, timeout: float = 20.0, done: str | None = None) -> list[str]:
        """Wait until a line starting with ``done`` (or ``prefix``) appears; return the ``prefix`` lines."""
        done = done or prefix
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(line.startswith(done) for line in self.lines):
                errors = [line for line in self.lines if line.split(" ", 1)[0].endswith("-ERROR")]
                left = deadline - time.monotonic()
                if errors or self._eof or left <= 0:
                    why = errors or ("exited" if self._eof else "timed out")
                    raise BenchError(f"{self.name}: {why}; stdout {self.lines}; stderr {self.stderr_tail()}")
                self._cond.wait(min(left, 0.2))
            return [line for line in self.lines if line.startswith(prefix)]

    def stderr_tail(self, limit: int = 600) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-limit:]
        return ""


def start(
    name: str, argv: Sequence[str], workdir: Path, env: Mapping[str, str] | None = None, stdin_pipe: bool = False
) -> Proc:
    """Start ``argv``; stdout is read line by line for the whole life of the process."""
    stderr_path = workdir / f"{name}.stderr"
    with open(stderr_path, "wb") as err:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=workdir,
        )
    proc = Proc(name, popen, stderr_path)
    threading.Thread(target=proc._drain, name=f"drain-{name}", daemon=True).start()
    return proc


def stop(procs: Iterable[Proc], grace: float = 3.0) -> None:
    """SIGTERM each process and any children it still has (by PID), then SIGKILL what is left."""
    procs = list(procs)
    for proc in procs:
        for pid in [*descendants(proc.pid), proc.pid]:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.popen.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for pid in [*descendants(proc.pid), proc.pid]:
                _signal(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(2)
        if proc.popen.stdin is not None:
            with contextlib.suppress(OSError):
                proc.popen.stdin.close()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


# --- /proc accounting --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name is in parentheses and may hold spaces: split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """On-CPU seconds of the processes, their live descendants, and all their reaped children.

    Live threads are read from ``/proc/PID/task/TID/schedstat`` (nanoseconds on the CPU) rather
    than from the clock ticks of ``stat`` (10 ms each: a few hundred connections of a C server
    come to a handful of ticks), live children (socat's forks) too.  Reaped children are counted
    in ticks, the only figure the kernel keeps for them: the kernel adds their time up exactly and
    truncates the sum, so a child reaped between two readings costs at most one tick of error in
    all (a quick run of socat can still read zero).  A thread that exits between two readings takes its time
    with it; none of the measured proxies ends threads while serving.
    """
    total = 0.0
    for root in pids:
        for pid in [root, *descendants(root)]:
            fields = _stat_fields(pid)
            if fields is not None:
                # after the ')': state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based
                total += (int(fields[13]) + int(fields[14])) / CLK_TCK + _threads_ns(pid) / 1e9
    return total


def _threads_ns(pid: int) -> int:
    """On-CPU nanoseconds summed over the live threads of ``pid``."""
    ns = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return ns


def _status_value(pid: int, key: str) -> int:
    """A number from ``/proc/PID/status`` (``key`` with its colon), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def context_switches(pids: Iterable[int]) -> tuple[int, int]:
    """Voluntary context switches (sleeps: waiting for I/O and woken) and involuntary ones
    (preemptions) of the processes and their live descendants so far."""
    sleeps = preempted = 0
    for root in pids:
        for pid in [root, *descendants(root)]:
            sleeps += _status_value(pid, "voluntary_ctxt_switches:")
            preempted += _status_value(pid, "nonvoluntary_ctxt_switches:")
    return sleeps, preempted


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` alone (VmRSS), 0 once it is gone; read by scripts/soak.py and the flood tests."""
    return _status_value(pid, "VmRSS:")


def open_fds(pid: int) -> int:
    """How many descriptors ``pid`` holds open (entries of /proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def memory_kib(pids: Iterable[int]) -> tuple[int, int, int]:
    """(RSS, PSS, process count) summed over the processes and their live descendants."""
    rss = pss = count = 0
    for root in pids:
        for pid in [root, *descendants(root)]:
            rss += _status_value(pid, "VmRSS:")
            pss += _pss_kib(pid)
            count += 1
    return rss, pss, count


def settle(pids: Iterable[int], expected: int, timeout: float = 5.0) -> None:
    """Wait until the process trees are back to ``expected`` processes (forked children gone)."""
    roots = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 + len(descendants(p)) for p in roots) <= expected:
            return
        time.sleep(0.05)


# --- ports ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: Proc, timeout: float = 15.0) -> None:
    """Wait until something listens on 127.0.0.1:``port`` (probe by binding it, no connection made)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(f"{proc.name} exited: {proc.stderr_tail()}")
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise BenchError(f"{proc.name}: nothing listens on port {port}")


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
