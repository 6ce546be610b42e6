"""Start-up shared by both front doors (PT 3.0 flags in :mod:`.cli`, Tor PT 1.0 in :mod:`.ipc.env`).

Both import this module; it imports neither, so the front doors stay independent of each other.
It holds the event-loop choice, the checks that touch the file system, :func:`prepare` (the work the
operator extensions need done once, before any listener or worker exists: the ``-metrics`` port, the
replay store the workers share, server transports built once so that every worker has the same
identity), and :func:`launch`, which turns a configuration problem into the spec's error line and exit
code or else runs the dispatcher (in this process, or under ``-workers`` supervision).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import metrics, replay
from .app import run, transport_options
from .config import Config, LogLevel, Role
from .errors import ConfigError, ProxyConfigError
from .exitcode import ExitCode
from .extorport import read_cookie_file
from .ipc.reporter import Reporter
from .net import malloc
from .scaling import ProcessSetup
from .transports import registry
from .transports.base import ServerContext, ServerTransport

RunLoop = Callable[[Coroutine[Any, Any, int]], int]
"""Drives the dispatcher's coroutine to completion and returns its exit code."""


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(main))
    return int(uvloop.run(main))


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard limit, as Go's runtime does for obfs4proxy:
    every relayed connection holds two descriptors, so the usual soft limit of 1024 would cap a
    server started from a shell at about 500 clients ("too many open files")."""
    with contextlib.suppress(OSError, ValueError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if resource.RLIM_INFINITY not in (soft, hard) and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launch(
    reporter: Reporter,
    build: Callable[[], Config],
    run_loop: RunLoop,
    *,
    cookie_source: str,
    state_source: str,
    announce: Callable[[], None] | None = None,
) -> int:
    """After VERSION: build and check the configuration, reporting a problem as the spec says
    (PROXY-ERROR exit 69, ENV-ERROR exit 64); otherwise ``announce()`` and run the dispatcher.

    Both front doors (PT 3.0 flags, PT 1.0 environment) end here; ``*_source`` name the flag or
    variable that set the cookie and the state directory, for the error messages.
    """
    try:
        config = build()
        check_environment(config, cookie_source=cookie_source, state_source=state_source)
        prepared = prepare(config, reporter)  # -metrics, -workers, -replayStore
    except ProxyConfigError as exc:
        reporter.error("PROXY-ERROR", str(exc))
        return ExitCode.UNAVAILABLE
    except ConfigError as exc:
        reporter.error("ENV-ERROR", str(exc))
        return ExitCode.USAGE
    if announce is not None:
        announce()
    reporter.level = config.log_level
    warn_repeated_transports(config, reporter)
    malloc.tune()
    raise_open_files_limit()
    try:
        if config.workers > 1:
            from .workers import supervise

            return supervise(config, reporter, prepared, run_loop)
        return run_loop(run(config, reporter, prepared.setup))
    finally:
        prepared.close()


def warn_repeated_transports(config: Config, reporter: Reporter) -> None:
    """A WARN line for each transport name the parent listed again (left out: one method line each)."""
    for name in config.repeated_transports:
        first = next(t for t in config.transports if t.lower() == name.lower())
        if name == first:
            reporter.log(LogLevel.WARN, f"transport {name!r} is listed more than once: started once")
        else:
            again = f"{first!r} again (names match in any letter case)"
            reporter.log(LogLevel.WARN, f"transport {name!r} is {again}: started once, as {first!r}")


def check_environment(config: Config, *, cookie_source: str, state_source: str) -> None:
    """Checks that touch the file system: the state directory and the ExtORPort cookie."""
    try:
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"{state_source}: {str(config.state_dir)!r} cannot be created: {reason}") from None
    if config.authcookie is not None:
        try:
            read_cookie_file(config.authcookie)
        except ConfigError as exc:
            raise ConfigError(f"{cookie_source}: {exc}") from None


@dataclass
class Prepared:
    """What :func:`prepare` made; :meth:`close` releases it at exit."""

    setup: ProcessSetup
    metrics_server: Any = None
    metrics_dir: str | None = None

    def close(self) -> None:
        if self.metrics_server is not None:
            with contextlib.suppress(Exception):
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def prepare(config: Config, reporter: Reporter) -> Prepared:
    """Raises ``ConfigError`` (reported as ENV-ERROR) for a flag that cannot be honoured."""
    prepared = Prepared(ProcessSetup())
    if config.metrics is not None:
        multiprocess = config.workers > 1
        if multiprocess:
            prepared.metrics_dir = metrics.prepare_multiprocess()
        redis = config.replay_store is not None
        source = "PTDISPATCH_METRICS" if config.pt_version == "1" else "-metrics"
        try:
            prepared.metrics_server = metrics.serve(
                config.metrics, multiprocess=multiprocess, redis=redis, source=source
            )
        except ConfigError:
            prepared.close()  # the value directory
            raise
        if multiprocess:
            metrics.install(None)  # the parent's own values (build info, workers, restarts)
    store = replay.build(
        config.workers,
        config.replay_store,
        lambda m: reporter.log(LogLevel.WARN, m),
        lambda m: reporter.log(LogLevel.INFO, m),
    )
    servers: dict[str, ServerTransport] = {}
    if config.workers > 1 and config.role is Role.SERVER:
        servers = _build_servers(config, store)
    prepared.setup = ProcessSetup(servers=servers, replay=store)
    return prepared


def _build_servers(config: Config, store: replay.ReplayStore | None) -> dict[str, ServerTransport]:
    """Each server transport, built once (a failure is left to the first worker to report)."""
    servers: dict[str, ServerTransport] = {}
    for name in config.transports:
        try:
            spec = registry.lookup(name)
            if spec is not None:
                context = ServerContext(state_dir=config.state_dir, replay=store, name=name)
                servers[name.lower()] = spec.make_server(transport_options(config, spec, server=True), context)
        except (ImportError, ConfigError, OSError):
            continue
    return servers
