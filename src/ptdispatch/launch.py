"""Start-up shared by both front doors (PT 3.0 flags in :mod:`.cli`, Tor PT 1.0 in :mod:`.ipc.env`).

Both import this module; it imports neither, so the front doors stay independent of each other.
It holds the event-loop choice, the checks that touch the file system, and :func:`launch`, which turns
a configuration problem into the spec's error line and exit code or else runs the dispatcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .app import run
from .config import Config
from .errors import ConfigError, ProxyConfigError
from .exitcode import ExitCode
from .extorport import read_cookie_file
from .ipc.reporter import Reporter
from .net import malloc

RunLoop = Callable[[Coroutine[Any, Any, int]], int]
"""Drives the dispatcher's coroutine to completion and returns its exit code."""


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(main))
    return int(uvloop.run(main))


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
    except ProxyConfigError as exc:
        reporter.error("PROXY-ERROR", str(exc))
        return ExitCode.UNAVAILABLE
    except ConfigError as exc:
        reporter.error("ENV-ERROR", str(exc))
        return ExitCode.USAGE
    if announce is not None:
        announce()
    reporter.level = config.log_level
    malloc.tune()
    return run_loop(run(config, reporter))


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
