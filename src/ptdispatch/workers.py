"""``-workers N``: N processes share each listener (SO_REUSEPORT); this parent supervises them.

The parent runs no event loop (so forking a worker at any time is safe): it forks the first worker,
reads the real ports from its ``SMETHOD``/``CMETHOD`` lines, holds them (a bound, non-listening
SO_REUSEPORT socket each), forks the others onto the same ports, and only when every worker is
listening prints one set of method lines and ``*METHODS DONE``.  Then it forwards the workers'
``LOG`` lines (the workers' stdout is a pipe to it), restarts a worker that dies (with a WARN line),
and carries the lifecycle to all of them: stdin closing (with -exit-on-stdin-close), SIGTERM/SIGINT
and its own parent's death become one ``app.WORKER_STOP`` (SIGUSR1) for every worker, then SIGKILL
after the grace period; a second SIGTERM/SIGINT kills the workers and leaves at once.  The workers
ignore SIGTERM and SIGINT themselves, so a signal sent to the whole process group (systemd, Ctrl-C)
is acted on once, by the parent, and every worker drains.  Workers also get PR_SET_PDEATHSIG (the
same SIGUSR1), so they do not outlive a parent killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import app, metrics
from .config import Config, LogLevel, Role
from .ipc.reporter import Reporter
from .launch import Prepared
from .scaling import ProcessSetup

RunLoop = Callable[[Coroutine[Any, Any, int]], int]
START_TIMEOUT = 30.0
QUICK_DEATH = 5.0
"""A worker that dies sooner than this after it started is restarted after a delay, which doubles
with each such death in a row (1, 2, 4 ... up to :data:`MAX_RESTART_DELAY` seconds): a worker that
cannot live is not forked again every second forever (each fork leaves metric files behind)."""
MAX_RESTART_DELAY = 60.0


def restart_delay(lived: float, quick_deaths: int) -> float:
    """Seconds before restarting a worker that died after ``lived`` seconds, ``quick_deaths`` being how
    many of its deaths in a row, this one included, came within :data:`QUICK_DEATH` of its start."""
    if lived > QUICK_DEATH:
        return 0.0
    return min(2.0 ** (quick_deaths - 1), MAX_RESTART_DELAY)


_DONE = ("SMETHODS DONE", "CMETHODS DONE")


class WorkerReporter(Reporter):
    """A worker's reporter: every LOG line says which worker wrote it."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def log(self, level: LogLevel, message: str) -> None:
        super().log(level, f"worker {self.index}: {message}")


@dataclasses.dataclass
class Worker:
    index: int
    pid: int
    fd: int
    started: float
    ready: bool = False
    buffer: bytes = b""
    startup: list[str] = dataclasses.field(default_factory=list)


class Supervisor:
    """The parent of the workers; see the module docstring."""

    def __init__(self, config: Config, reporter: Reporter, prepared: Prepared, run_loop: RunLoop) -> None:
        self.config = config
        self.reporter = reporter
        self.prepared = prepared
        self.run_loop = run_loop
        self.workers: dict[int, Worker] = {}
        self.ports: dict[str, int] = {}
        self.reserved: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()
        self.restarts: list[tuple[float, int]] = []
        self._quick_deaths: dict[int, int] = {}  # by worker index: its deaths in a row soon after starting
        self._first_errors: set[str] | None = None  # the first worker's *-ERROR lines, once it started
        self.stop_reason = ""
        self.signals = 0
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        try:
            if not self._start():
                self._stop_all()
                return 1
            if self.config.exit_on_stdin_close:
                self._watch_stdin()
            while not self.stop_reason:
                self._pump(app.PARENT_POLL)
                self._reap()
                self._restart_due()
                if os.getppid() != app.STARTING_PARENT:
                    self._request_stop("parent process exited")
            self.reporter.log(LogLevel.INFO, f"stopping ({self.stop_reason}): stopping {len(self.workers)} worker(s)")
            self._stop_all()
            self.reporter.log(LogLevel.INFO, f"stopped ({self.stop_reason})")
            return 0
        finally:
            for sock in self.reserved:
                sock.close()

    def _start(self) -> bool:
        first = self._fork(0, {})
        if not self._wait_ready([first]):
            self.reporter.log(LogLevel.ERROR, "the first worker did not start")
            return False
        self.ports = _ports(first.startup)
        self._first_errors = {line for line in first.startup if line.partition(" ")[0].endswith("-ERROR")}
        self._reserve()
        others = [self._fork(i, self.ports) for i in range(1, self.config.workers)]
        if not self._wait_ready(others):
            self.reporter.log(LogLevel.ERROR, "not every worker started")
            return False
        for line in first.startup:
            keyword, _, rest = line.partition(" ")
            write = self.reporter.error if keyword.endswith("-ERROR") else self.reporter.line
            write(keyword, *([rest] if rest else []))
        self.reporter.log(LogLevel.INFO, f"{len(self.workers)} workers share the listeners")
        return True

    def _wait_ready(self, workers: list[Worker]) -> bool:
        """Wait until all of ``workers`` are listening; False if one of them dies first (the caller
        says so), on a stop, or after START_TIMEOUT.  Any other worker lost meanwhile (the first one
        while the others start) is logged and restarted as at any other time."""
        deadline = time.monotonic() + START_TIMEOUT
        while not all(w.ready for w in workers):
            lost = any(w.pid not in self.workers and not w.ready for w in workers)
            if self.stop_reason or time.monotonic() > deadline or lost:
                return False
            self._pump(0.2)
            self._reap(starting=workers)
        return True

    def _reserve(self) -> None:
        """Hold every TCP port (bound, not listening) so a restarted worker always gets it back.
        (Not UDP: a bound UDP socket would take its share of the datagrams.)"""
        if self.config.mode.is_udp and self.config.role is Role.CLIENT:
            return
        for name, port in self.ports.items():
            host = self._host(name)
            if host is None:
                continue
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            self.reserved.append(sock)

    def _host(self, name: str) -> str | None:
        bind = self.config.bind.get(name) if self.config.bind else None
        if bind is not None:
            return bind.host
        return self.config.listen.host if self.config.listen is not None else "127.0.0.1"

    # --- worker processes -----------------------------------------------------------------------
    def _fork(self, index: int, ports: dict[str, int]) -> Worker:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                code = self._worker(index, ports, write_fd)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = Worker(index, pid, read_fd, time.monotonic())
        self.workers[pid] = worker
        self.selector.register(read_fd, selectors.EVENT_READ, worker)
        self._count_workers()
        self.reporter.log(LogLevel.INFO, f"worker {index} started (pid {pid})")
        return worker

    def _worker(self, index: int, ports: dict[str, int], out_fd: int) -> int:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT):  # the parent stops us: see app.WORKER_STOP
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self._wake_r, self._wake_w, *(w.fd for w in self.workers.values())):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.prepared.metrics_server is not None:
            self.prepared.metrics_server.socket.close()  # the parent serves /metrics
        for sock in self.reserved:
            sock.close()
        os.dup2(out_fd, 1)
        os.close(out_fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _die_with_parent()
        app.STARTING_PARENT = os.getppid()
        if metrics.ACTIVE is not None:
            metrics.WORKER = str(index)
            metrics.install(None, redis=self.config.replay_store is not None)  # this process's own files
        reporter = WorkerReporter(
            index, out=sys.stdout, err=sys.stdout, level=self.config.log_level, pt_version=self.reporter.pt_version
        )
        config = dataclasses.replace(self.config, exit_on_stdin_close=False)
        setup = dataclasses.replace(self.prepared.setup, reuse_port=True, ports=ports, worker=index)
        return self.run_loop(app.run(config, reporter, setup))

    def _pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            else:
                self._read(key.data)

    def _read(self, worker: Worker) -> bool:
        """Read what the worker wrote; False when nothing more is there now."""
        try:
            data = os.read(worker.fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._close_pipe(worker)
            return False
        *lines, worker.buffer = (worker.buffer + data).split(b"\n")
        for raw in lines:
            self._line(worker, raw.decode("utf-8", "replace"))
        return True

    def _line(self, worker: Worker, line: str) -> None:
        keyword, _, rest = line.partition(" ")
        if keyword == "LOG":
            self.reporter.forward_log(rest)
        elif not worker.ready:
            worker.startup.append(line)
            worker.ready = line in _DONE
            if worker.ready and self._first_errors is not None:
                self._check_methods(worker)
        elif keyword.endswith("-ERROR"):
            self.reporter.log(LogLevel.WARN, f"worker {worker.index}: {line}")

    def _check_methods(self, worker: Worker) -> None:
        """A worker after the first (or one restarted) that failed a method the first one serves:
        the parent's method lines were printed once and cannot change, so say it in a WARN line."""
        assert self._first_errors is not None
        for line in worker.startup:
            if line.partition(" ")[0].endswith("-ERROR") and line not in self._first_errors:
                self.reporter.log(LogLevel.WARN, f"worker {worker.index} (pid {worker.pid}) started without it: {line}")

    def _close_pipe(self, worker: Worker) -> None:
        if worker.fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    def _reap(self, *, restart: bool = True, starting: Sequence[Worker] = ()) -> None:
        """Collect the workers that exited; restart them (with a WARN line) unless stopping, told
        not to, or one of ``starting`` that never got to listen (a failed start is reported by
        :meth:`_wait_ready`'s caller)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            while worker.fd >= 0 and self._read(worker):  # what it wrote before dying
                pass
            self._close_pipe(worker)
            metrics.mark_dead(pid)
            self._count_workers()
            if self.stop_reason or not restart or (worker in starting and not worker.ready):
                continue
            lived = time.monotonic() - worker.started
            quick = self._quick_deaths.get(worker.index, 0) + 1 if lived <= QUICK_DEATH else 0
            self._quick_deaths[worker.index] = quick
            delay = restart_delay(lived, quick)
            self.reporter.log(
                LogLevel.WARN, f"worker {worker.index} (pid {pid}) {_describe(status)}; restarting it in {delay:g} s"
            )
            self.restarts.append((time.monotonic() + delay, worker.index))

    def _restart_due(self) -> None:
        now = time.monotonic()
        due = [index for when, index in self.restarts if when <= now]
        self.restarts = [(when, index) for when, index in self.restarts if when > now]
        for index in due:
            self._fork(index, self.ports)
            if metrics.ACTIVE is not None:
                metrics.ACTIVE.worker_restarts.inc()

    def _count_workers(self) -> None:
        if metrics.ACTIVE is not None:
            metrics.ACTIVE.workers.set(len(self.workers))

    # --- lifecycle ------------------------------------------------------------------------------
    def _request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _install_signals(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            self.signals += 1
            if self.signals > 1:  # second signal: leave at once
                for pid in list(self.workers):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                os._exit(1)
            self._request_stop(signal.Signals(signum).name)

        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)

    def _watch_stdin(self) -> None:
        def reader() -> None:
            with contextlib.suppress(OSError):
                while os.read(0, 4096):
                    pass
            self._request_stop("stdin closed")

        threading.Thread(target=reader, name="stdin-watch", daemon=True).start()

    def _stop_all(self) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(OSError):
                os.kill(pid, app.WORKER_STOP)
        deadline = time.monotonic() + app.SHUTDOWN_GRACE + 1.5
        while self.workers and time.monotonic() < deadline:
            self._pump(0.1)
            self._reap(restart=False)
        for pid in list(self.workers):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            metrics.mark_dead(pid)
        self.workers.clear()


def supervise(config: Config, reporter: Reporter, prepared: Prepared, run_loop: RunLoop) -> int:
    """Run ``config.workers`` workers until told to stop; returns the exit code."""
    return Supervisor(config, reporter, prepared, run_loop).run()


def _ports(lines: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for line in lines:
        words = line.split(" ")
        where = words[2] if words[0] == "SMETHOD" and len(words) > 2 else None
        if words[0] == "CMETHOD" and len(words) > 3:
            where = words[3]
        if where is not None:
            ports[words[1].lower()] = int(where.rpartition(":")[2])
    return ports


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel sends us ``app.WORKER_STOP`` when the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(app.WORKER_STOP))


__all__ = ["ProcessSetup", "Supervisor", "supervise"]
