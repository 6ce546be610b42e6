"""Start-up work for the operator extensions, done once before any listener or worker exists.

:func:`prepare` binds the ``-metrics`` port (a taken port is an ENV-ERROR), makes the replay store
the workers share, and builds the server transports once (keys and state loaded) so that every worker
forked afterwards has the same identity.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from typing import Any

from . import metrics, replay
from .config import Config, LogLevel, Role
from .errors import ConfigError
from .ipc.reporter import Reporter
from .scaling import ProcessSetup
from .transports import registry
from .transports.base import ServerContext, ServerTransport


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
    store = replay.build(config.workers, config.replay_store, lambda m: reporter.log(LogLevel.WARN, m))
    servers: dict[str, ServerTransport] = {}
    if config.workers > 1 and config.role is Role.SERVER:
        servers = _build_servers(config, store)
    prepared.setup = ProcessSetup(servers=servers, replay=store)
    return prepared


def _build_servers(config: Config, store: replay.ReplayStore | None) -> dict[str, ServerTransport]:
    """Each server transport, built once (a failure is left to the first worker to report)."""
    servers: dict[str, ServerTransport] = {}
    context = ServerContext(state_dir=config.state_dir, replay=store)
    for name in config.transports:
        try:
            spec = registry.lookup(name)
            if spec is not None:
                servers[name.lower()] = spec.server(config.options_for(name), context)
        except (ImportError, ConfigError, OSError):
            continue
    return servers
