"""Command-line entry: flags (PT 3.0) or TOR_PT_* variables (PT 1.0) -> config -> run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from .app import run
from .config import Config
from .errors import ConfigError
from .extorport import read_cookie_file
from .ipc.flags import ProxyConfigError, build_config, negotiate_version, tokenize
from .ipc.reporter import Reporter
from .launching import prepare
from .net import malloc

EX_OK, EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 0, 64, 69, 78

USAGE = """\
usage: ptdispatch [-client | -server] -transport NAME | -transports NAME,NAME [flags]

Pluggable Transports 3.0 dispatcher. Flags (single or double dash, "-flag value" or "-flag=value"):
  -ptversion 3.0           versions the parent supports        -state DIR        state directory (default .)
  -exit-on-stdin-close     exit when stdin closes              -ipcLogLevel L    NONE ERROR WARN INFO DEBUG
  -unsafeLogging           LOG lines show client addresses (scrubbed by default)
  -workers N|auto          N processes share each listener     -metrics IP:PORT  Prometheus text at /metrics
  -replayStore redis://HOST:PORT/DB                            replay state shared by a fleet of servers
  -mode M                  socks5 transparent-TCP transparent-UDP STUN (default socks5)
  -options JSON | -optionsFile PATH                            transport options, flat or keyed by transport
client: -proxylistenaddr IP:PORT (or -proxylistenhost/-proxylistenport)   -proxy socks5|socks4a|http://IP:PORT
server: -bindaddr NAME-IP:PORT,... (or -bindhost/-bindport)   -target HOST:PORT (or -targethost/-targetport)
        -extorport IP:PORT -authcookie PATH
Also runs as a Tor PT 1.0 managed proxy when started with TOR_PT_* environment variables and no flags.
"""


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(main))
    return int(uvloop.run(main))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the dispatcher; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if any(a in ("-h", "-help", "--help") for a in argv):
        sys.stderr.write(USAGE)
        return EX_OK
    if not argv and "TOR_PT_MANAGED_TRANSPORT_VER" in environ:
        from .ipc import env as pt1

        return pt1.main(environ, _run)
    reporter = Reporter()
    flags, problem = tokenize(argv)
    version = negotiate_version(flags)
    if version is None:
        reporter.error("VERSION-ERROR", "no-version")
        return EX_CONFIG
    reporter.line("VERSION", version)
    if problem is not None:
        reporter.error("ENV-ERROR", problem)
        return EX_USAGE
    return launch(reporter, lambda: build_config(flags), _run, cookie_source="-authcookie", state_source="-state")


def launch(
    reporter: Reporter,
    build: Callable[[], Config],
    run_loop: Callable[[Coroutine[Any, Any, int]], int],
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
        return EX_UNAVAILABLE
    except ConfigError as exc:
        reporter.error("ENV-ERROR", str(exc))
        return EX_USAGE
    if announce is not None:
        announce()
    reporter.level = config.log_level
    malloc.tune()
    try:
        if config.workers > 1:
            from .workers import supervise

            return supervise(config, reporter, prepared, run_loop)
        return run_loop(run(config, reporter, prepared.setup))
    finally:
        prepared.close()


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


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
