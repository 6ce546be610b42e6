"""Start the listeners the configuration asks for, report them, and run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from . import api
from .backends import Backend, ServerMethod
from .config import Config, Mode, Role
from .errors import OptionsError
from .exitcode import ExitCode
from .frontends.dialer import ClientMethod
from .frontends.socks.server import Socks5Frontend
from .ipc.args import format_smethod_args
from .ipc.reporter import Reporter
from .logs import EventLog, library_logs
from .net.accept import DialOnAccept, create_server
from .net.addr import Address, format_hostport
from .net.relay import Splice
from .net.tracker import ConnectionTracker
from .net.upstream import OutboundBind
from .scaling import ProcessSetup, reuse_port_socket
from .transports import registry
from .transports.base import ServerContext, ServerTransport, TransportSpec


class Closeable(Protocol):
    def close(self) -> None: ...


SHUTDOWN_GRACE = float(os.environ.get("PTDISPATCH_SHUTDOWN_GRACE", "1"))
"""Seconds open connections get to finish after a graceful stop (a short drain: the parent's
"reasonable time" to wait for our exit is short, so the process is gone within 2 s)."""
PARENT_POLL = 1.0


class Dispatcher:
    """The running process: listeners, connections, and the reasons to stop."""

    def __init__(self, config: Config, reporter: Reporter, setup: ProcessSetup | None = None) -> None:
        self.config = config
        self.setup = setup or ProcessSetup()
        self.reporter = reporter
        self.log = EventLog(reporter, show_addresses=config.log_addresses)
        self.tracker = ConnectionTracker()
        self.listeners: list[Closeable] = []
        #: Server backends, closed after the grace period (their sessions are in the tracker).
        self.backends: list[Backend] = []
        self.stop = asyncio.Event()
        self.stop_reason = ""

    # --- start-up --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.config.role is Role.CLIENT:
            if self.config.proxy is not None:
                self.reporter.line("PROXY", "DONE")
            for name in self.config.transports:
                await self._start_client(name)
            self.reporter.line("CMETHODS", "DONE")
        else:
            for name in self.config.transports:
                await self._start_server(name)
            self.reporter.line("SMETHODS", "DONE")

    def _spec(self, name: str, error_keyword: str) -> TransportSpec | None:
        try:
            spec = registry.lookup(name)
        except ImportError as exc:
            self.reporter.error(error_keyword, name, f"transport unavailable: {exc}")
            return None
        if spec is None:  # the spec says: ignore it; a person reading stderr still learns why
            self.log.debug(f"ignoring unknown transport {name!r}")
            self.reporter.note(f"ignoring unknown transport {name!r}; known: {', '.join(registry.names())}")
        return spec

    def _options(self, spec: TransportSpec, *, server: bool) -> dict[str, object]:
        return transport_options(self.config, spec, server=server)

    async def _start_client(self, name: str) -> None:
        spec = self._spec(name, "CMETHOD-ERROR")
        if spec is None:
            return
        mode = self.config.mode
        method = ClientMethod(name, spec, self._options(spec, server=False), self.config.proxy, self.log, self.tracker)
        if self.config.outbound_bind_v4 or self.config.outbound_bind_v6:
            method.outbound = OutboundBind(self.config.outbound_bind_v4, self.config.outbound_bind_v6)
        try:
            method.check_options(per_connection_allowed=mode is Mode.SOCKS5)
            factory = self._client_factory(method)
        except OptionsError as exc:
            self.reporter.error("CMETHOD-ERROR", name, exc.message)
            return
        listen = self.config.listen or Address("127.0.0.1", 0)
        try:
            if factory is None:
                from .udp.client import start_udp_client

                udp_listen = Address(listen.host, self.setup.ports.get(name.lower(), listen.port))
                udp = await start_udp_client(
                    method, udp_listen, stun=mode is Mode.STUN, reuse_port=self.setup.reuse_port
                )
                self.listeners.append(udp)
                where = str(udp.address)
            else:
                port = self.setup.ports.get(name.lower(), listen.port)
                server = await create_server(factory, Address(listen.host, port), reuse_port=self.setup.reuse_port)
                self.listeners.append(server)
                where = _bound(server)
        except OSError as exc:
            self.reporter.error("CMETHOD-ERROR", name, f"cannot listen on {listen}: {exc.strerror or exc}")
            return
        except OptionsError as exc:  # the UDP modes read their udp* options here
            self.reporter.error("CMETHOD-ERROR", name, exc.message)
            return
        self.reporter.line("CMETHOD", name, mode.value, where)
        self.log.info(f"{name}: {mode.value} listener on {where}")

    def _client_factory(self, method: ClientMethod) -> Callable[[], asyncio.Protocol] | None:
        """The accept-side protocol factory for TCP modes (None for the UDP modes)."""
        mode = self.config.mode
        if mode.is_udp:
            route = method.route({}, None)  # raises OptionsError without serverAddress
            route.client.check(None)  # shadow: raises OptionsError without a target to carry
            return None
        if mode is Mode.SOCKS5:
            return lambda: Socks5Frontend(method)
        if mode is Mode.TRANSPARENT_TCP:
            route = method.route({}, None)  # raises OptionsError without serverAddress
            route.client.check(None)  # shadow: raises OptionsError without a target to carry

            async def dial(splice: Splice, accepted: asyncio.Transport) -> None:
                await method.dial(route, lambda: splice.b)

            def factory() -> asyncio.Protocol:
                accepting = method.new_splice(
                    method.name, a_factory=lambda s: DialOnAccept(s, dial, method.log, method.name)
                )
                return accepting.a

            return factory
        raise AssertionError(mode)

    async def _start_server(self, name: str) -> None:
        spec = self._spec(name, "SMETHOD-ERROR")
        if spec is None:
            return
        bind = self.config.bind.get(name.lower())
        if bind is None:
            self.reporter.error("SMETHOD-ERROR", name, f"no bind address for {name} in -bindaddr")
            return
        if self.config.mode.is_udp and self.config.target is None:
            self.reporter.error("SMETHOD-ERROR", name, "the UDP modes forward to -target, not to an ExtORPort")
            return
        if spec.sessions_span_connections and self.setup.worker is not None:
            if self.setup.worker != 0:
                return  # the parent reports worker 0's listener: a session must not be split between workers
            self.log.info(f"{name}: served by this worker alone (a session's requests may come over any connection)")
        context = ServerContext(state_dir=self.config.state_dir, replay=self.setup.replay, name=name)
        try:
            server = self.setup.servers.get(name.lower()) or spec.make_server(self._options(spec, server=True), context)
        except OptionsError as exc:
            self.reporter.error("SMETHOD-ERROR", name, exc.message)
            return
        method: Backend
        if self.config.mode.is_udp:
            from .udp.server import UdpServerMethod

            try:
                udp_options = self.config.options_for(name)
                stun = self.config.mode is Mode.STUN
                method = UdpServerMethod(name, self.config.target, stun, udp_options, self.log, self.tracker)
            except OptionsError as exc:
                self.reporter.error("SMETHOD-ERROR", name, exc.message)
                return
        else:
            method = ServerMethod(
                name,
                server,
                self.config.target,
                self.log,
                self.tracker,
                extorport=self.config.extorport,
                authcookie=self.config.authcookie,
            )
        try:
            listener = await self._listen(name, server, bind, method)
        except OSError as exc:
            self.reporter.error("SMETHOD-ERROR", name, f"cannot listen on {bind}: {exc.strerror or exc}")
            return
        self.listeners.append(listener)
        self.backends.append(method)
        where = _bound(listener)
        args = server.smethod_args()
        self.reporter.line("SMETHOD", name, where, *([format_smethod_args(args)] if args else []))
        self.log.info(f"{name}: server listener on {where}")
        for note in getattr(server, "notes", ()):  # things a transport learned at bind time (DarkStar)
            self.log.warn(f"{name}: {note}")

    async def _listen(self, name: str, server: ServerTransport, bind: Address, method: Backend) -> asyncio.Server:
        if not self.setup.reuse_port:
            return await api.listen(server, bind.host, bind.port, method.accepted, on_error=method.handshake_failed)
        sock = reuse_port_socket(bind.host, self.setup.ports.get(name.lower(), bind.port))
        listener = await server.listen(method.accepted, sock, on_error=method.handshake_failed)
        server.bound(Address(*sock.getsockname()[:2]))
        return listener

    # --- lifecycle ---------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    async def shutdown(self) -> None:
        """Stop listening, give open connections a grace period, then cut the rest."""
        for listener in self.listeners:
            listener.close()
        if len(self.tracker):
            self.log.info(f"stopping ({self.stop_reason}): waiting for {len(self.tracker)} connection(s)")
            if not await self.tracker.wait_idle(SHUTDOWN_GRACE):
                self.tracker.abort_all()
        for backend in self.backends:
            backend.close()
        self.log.info(f"stopped ({self.stop_reason})")


def _bound(server: asyncio.AbstractServer) -> str:
    sockets: tuple[socket.socket, ...] = getattr(server, "sockets", ())
    name = sockets[0].getsockname()
    return format_hostport(name[0], name[1])


def _watch_stdin(dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop) -> None:
    """Read stdin until EOF in a thread (works for pipes, files and terminals alike)."""

    def reader() -> None:
        with contextlib.suppress(OSError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        loop.call_soon_threadsafe(dispatcher.request_stop, "stdin closed")

    threading.Thread(target=reader, name="stdin-watch", daemon=True).start()


STARTING_PARENT = os.getppid()
"""Our parent when this module was first imported (before any slow start-up work)."""


async def _watch_parent(dispatcher: Dispatcher) -> None:
    parent = STARTING_PARENT
    while not dispatcher.stop.is_set():
        await asyncio.sleep(PARENT_POLL)
        if os.getppid() != parent:
            dispatcher.request_stop("parent process exited")


WORKER_STOP = signal.SIGUSR1
"""What a ``-workers`` supervisor sends a worker to stop it gracefully (and the worker's
PR_SET_PDEATHSIG).  A worker ignores SIGTERM and SIGINT: a signal sent to the whole process group
(systemd's default KillMode=control-group, Ctrl-C in a terminal) reaches every worker as well as
their parent, and the parent's own request that follows would otherwise be the worker's second
signal, the one that leaves at once without draining.  The parent escalates with SIGKILL."""


def _install_signals(dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop, *, worker: bool) -> None:
    if worker:  # SIGTERM and SIGINT are ignored (see WORKER_STOP); a repeated request changes nothing

        def on_stop() -> None:
            parent_gone = os.getppid() != STARTING_PARENT
            dispatcher.request_stop("parent process exited" if parent_gone else "asked by the supervisor")

        loop.add_signal_handler(WORKER_STOP, on_stop)
        return

    def on_signal(signum: int) -> None:
        if dispatcher.stop.is_set():
            os._exit(ExitCode.INTERRUPTED)  # second signal: leave at once
        dispatcher.request_stop(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def run(config: Config, reporter: Reporter, setup: ProcessSetup | None = None) -> int:
    """Run the dispatcher until stdin closes (with -exit-on-stdin-close), a signal, or parent death."""
    loop = asyncio.get_running_loop()
    dispatcher = Dispatcher(config, reporter, setup)

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        dispatcher.log.internal_error(None, exc if isinstance(exc, BaseException) else str(context.get("message")))
        loop.default_exception_handler(context)  # the traceback goes to stderr, never stdout

    loop.set_exception_handler(on_loop_error)
    _install_signals(dispatcher, loop, worker=dispatcher.setup.worker is not None)
    with library_logs(dispatcher.log):
        await dispatcher.start()
        if config.exit_on_stdin_close:
            _watch_stdin(dispatcher, loop)
        watcher = asyncio.ensure_future(_watch_parent(dispatcher))
        await dispatcher.stop.wait()
        watcher.cancel()
        await dispatcher.shutdown()
    return ExitCode.OK


def transport_options(config: Config, spec: TransportSpec, *, server: bool) -> dict[str, object]:
    """The raw options for ``spec``.  Flat -options go to every transport named; a flat key that
    this transport does not know but another named one does is left out here (it is that one's),
    while a key no named transport knows stays, to be refused by name."""
    options = config.options_for(spec.name)
    common = config.common_options
    if not common or len(config.transports) < 2:
        return options
    others = [other for t in config.transports if (other := _lookup_quietly(t)) and other is not spec]
    theirs = {
        k
        for k in spec.unknown_keys(common, server=server)
        if any(not o.unknown_keys({k: None}, server=server) for o in others)
    }
    return {k: v for k, v in options.items() if k not in theirs}


def _lookup_quietly(name: str) -> TransportSpec | None:
    try:
        return registry.lookup(name)
    except ImportError:  # reported where that transport starts
        return None
