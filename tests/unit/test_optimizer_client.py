"""Optimizer's client: failover with fake children, option validation, and the dispatcher's routing."""

from __future__ import annotations

import asyncio
import io
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptdispatch import api
from ptdispatch.config import LogLevel
from ptdispatch.errors import InternalError, OptionsError
from ptdispatch.frontends import dialer
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.logs import EventLog
from ptdispatch.net.addr import Address
from ptdispatch.net.tracker import ConnectionTracker
from ptdispatch.net.upstream import DIRECT, Dialer
from ptdispatch.transports import registry
from ptdispatch.transports.adapter import AppFactory
from ptdispatch.transports.base import ClientTransport, Engine, EngineClientTransport, ServerContext
from ptdispatch.transports.optimizer import SPEC, Child, OptimizerClient
from ptdispatch.transports.optimizer.strategies import First, Rotate, Strategy, Track

NOWHERE = Address("192.0.2.1", 1)


class Stop(BaseException):
    """Not an ``Exception``: it must go through the Optimizer untouched."""


class Fake(ClientTransport):
    """A child whose dial succeeds, is refused, or hangs; it records what it was asked."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.dials: list[tuple[Address, Address | None, float]] = []

    async def dial(
        self,
        address: Address,
        app_factory: AppFactory,
        *,
        destination: Address | None = None,
        dialer: Dialer = DIRECT,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        self.dials.append((address, destination, dialer.timeout))
        if self.behaviour == "refuse":
            raise ConnectionRefusedError(f"{address} refused")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if self.behaviour == "options":
            raise OptionsError("fake", "no destination")
        if self.behaviour == "bug":  # what the adapter raises for a bug in an engine
            raise InternalError("internal error: ValueError: engine bug")
        if self.behaviour == "stop":
            raise Stop
        protocol = app_factory()
        if self.behaviour == "made-hang":  # a handshake done as the time share runs out
            await asyncio.sleep(3600)
        if self.behaviour == "made-reset":
            raise ConnectionResetError("reset after the handshake")
        if self.behaviour == "made-bug":
            raise InternalError("internal error: ValueError: bug after the handshake")
        return asyncio.Transport(), protocol


class Recording(Strategy):
    """A fixed order, and every report kept."""

    def __init__(self, order: list[int]) -> None:
        super().__init__(len(order))
        self._order = order
        self.reports: list[tuple[int, bool]] = []

    def order(self) -> list[int]:
        return list(self._order)

    def report(self, index: int, ok: bool, seconds: float) -> None:
        self.reports.append((index, ok))


def optimizer(behaviours: list[str], strategy: Strategy | None = None) -> tuple[OptimizerClient, list[Fake]]:
    fakes = [Fake(b) for b in behaviours]
    children = [Child(f"transports[{i}] (fake)", f, Address("127.0.0.1", 1000 + i)) for i, f in enumerate(fakes)]
    return OptimizerClient(children, strategy or First(len(fakes))), fakes


def app() -> asyncio.Protocol:
    return asyncio.Protocol()


async def test_each_child_dials_its_own_server_with_the_destination() -> None:
    client, fakes = optimizer(["ok", "ok"])
    dest = Address("10.0.0.1", 80)
    await client.dial(NOWHERE, app, destination=dest)
    [(server, destination, timeout)] = fakes[0].dials
    assert (server, destination) == (Address("127.0.0.1", 1000), dest)
    assert abs(timeout - 15.0) < 0.1
    assert fakes[1].dials == []


async def test_failover_in_the_strategy_order_with_reports() -> None:
    strategy = Recording([2, 0, 1])
    client, fakes = optimizer(["ok", "refuse", "refuse"], strategy)
    await client.dial(NOWHERE, app)
    assert [len(f.dials) for f in fakes] == [1, 0, 1]
    assert strategy.reports == [(2, False), (0, True)]


async def test_every_child_refused_is_connection_refused_naming_each() -> None:
    client, _ = optimizer(["refuse", "refuse"])
    with pytest.raises(ConnectionRefusedError, match=r"transports\[0\].*transports\[1\]"):
        await client.dial(NOWHERE, app)


async def test_mixed_failures_are_a_connection_error() -> None:
    client, _ = optimizer(["refuse", "options"])
    with pytest.raises(ConnectionError, match="every transport failed") as info:
        await client.dial(NOWHERE, app)
    assert type(info.value) is ConnectionError
    client, _ = optimizer(["options", "options"])
    with pytest.raises(OptionsError):
        await client.dial(NOWHERE, app)


async def test_a_hanging_child_gets_its_share_of_one_connect_timeout() -> None:
    client, fakes = optimizer(["hang", "ok"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.dial(NOWHERE, app, dialer=Dialer(timeout=0.6))
    assert 0.25 < loop.time() - started < 0.6
    assert fakes[0].dials[0][2] == pytest.approx(0.3, abs=0.05)
    assert fakes[1].dials[0][2] == pytest.approx(0.3, abs=0.1)


async def test_all_hanging_fails_within_the_connect_timeout() -> None:
    client, _ = optimizer(["hang", "hang", "hang"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match="every transport failed"):
        await client.dial(NOWHERE, app, dialer=Dialer(timeout=0.3))
    assert loop.time() - started < 0.5


async def test_no_time_at_all_is_a_timeout() -> None:
    client, fakes = optimizer(["ok"])
    with pytest.raises(TimeoutError, match=r"1 not tried \(out of time\)"):
        await client.dial(NOWHERE, app, dialer=Dialer(timeout=0))
    assert fakes[0].dials == []


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("made-hang", TimeoutError), ("made-reset", ConnectionResetError), ("made-bug", InternalError)],
)
async def test_a_child_that_made_the_app_ends_the_dial_when_it_fails(behaviour: str, error: type[Exception]) -> None:
    """A child that fails after it handed its connection to the application (its handshake
    done in the same event-loop pass as its time share ran out) ends the dial with its error:
    the application was told, and the dispatcher's factory returns the same relay half each
    time, so a second child must not hand it a second connection."""
    strategy = Recording([0, 1])
    client, fakes = optimizer([behaviour, "ok"], strategy)
    made: list[asyncio.Protocol] = []

    def factory() -> asyncio.Protocol:
        made.append(asyncio.Protocol())
        return made[-1]

    with pytest.raises(error):
        await client.dial(NOWHERE, factory, dialer=Dialer(timeout=0.2))
    assert len(made) == 1
    assert fakes[1].dials == []
    assert strategy.reports == [(0, False)]


async def test_a_child_with_a_bug_is_reported_logged_and_failed_over(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in one child costs that child's attempt only: the strategy hears of it as a
    failure, it is logged at ERROR (the next child's success would hide it) and the next child
    carries the connection."""
    strategy = Recording([0, 1])
    client, fakes = optimizer(["bug", "ok"], strategy)
    with caplog.at_level(logging.ERROR, logger="ptdispatch"):
        await client.dial(NOWHERE, app)
    assert strategy.reports == [(0, False), (1, True)]
    assert len(fakes[1].dials) == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.name.startswith("ptdispatch.")
    assert r"transports[0] (fake): internal error: ValueError: engine bug" in record.getMessage()


async def test_every_child_with_a_bug_is_a_connection_error() -> None:
    client, _ = optimizer(["bug", "refuse"])
    with pytest.raises(ConnectionError, match=r"every transport failed.*engine bug.*refused") as info:
        await client.dial(NOWHERE, app)
    assert type(info.value) is ConnectionError


async def test_a_base_exception_goes_through() -> None:
    strategy = Recording([0, 1])
    client, fakes = optimizer(["stop", "ok"], strategy)
    with pytest.raises(Stop):
        await client.dial(NOWHERE, app)
    assert fakes[1].dials == [] and strategy.reports == []


class Buggy(Engine):
    """A client engine that fails on the first byte from its server."""

    @property
    def established(self) -> bool:
        return False

    def receive_data(self, data: bytes) -> bytes:
        raise ValueError("engine bug")

    def send_data(self, data: bytes) -> None:
        pass

    def data_to_send(self) -> bytes:
        return b""


class BuggyClient(EngineClientTransport):
    def new_engine(self, destination: Address | None) -> Engine:
        return Buggy()


async def test_track_passes_over_a_child_whose_engine_has_a_bug() -> None:
    """Through the real adapter, whose error boundary turns the bug into an ``InternalError``."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ok = Fake("ok")
    strategy = Track(2)
    buggy = Child("transports[0] (buggy)", BuggyClient(), Address("127.0.0.1", port))
    client = OptimizerClient([buggy, Child("transports[1] (fake)", ok, NOWHERE)], strategy)
    try:
        await client.dial(NOWHERE, app, dialer=Dialer(timeout=5))
    finally:
        server.close()
    assert len(ok.dials) == 1
    assert strategy.order() == [1, 0]


async def test_cancelled_dial_reports_nothing() -> None:
    strategy = Recording([0, 1])
    client, _ = optimizer(["hang", "ok"], strategy)
    task = asyncio.ensure_future(client.dial(NOWHERE, app))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert strategy.reports == []


async def test_rotate_state_lasts_across_connections() -> None:
    client, fakes = optimizer(["ok", "ok", "ok"], Rotate(3))
    for _ in range(6):
        await client.dial(NOWHERE, app)
    assert [len(f.dials) for f in fakes] == [2, 2, 2]


async def test_track_skips_the_child_that_failed() -> None:
    client, fakes = optimizer(["refuse", "ok"], Track(2))
    for _ in range(5):
        await client.dial(NOWHERE, app)
    assert [len(f.dials) for f in fakes] == [1, 5]


@settings(max_examples=100, deadline=None)
@given(
    behaviours=st.lists(st.sampled_from(["ok", "refuse", "options", "bug"]), min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_the_first_working_child_in_the_order_carries_the_connection(
    behaviours: list[str], order: random.Random
) -> None:
    strategy = Recording(order.sample(range(len(behaviours)), len(behaviours)))
    client, fakes = optimizer(behaviours, strategy)
    working = [i for i in strategy.order() if behaviours[i] == "ok"]

    async def run() -> None:
        if not working:
            with pytest.raises((ConnectionError, OptionsError)):
                await client.dial(NOWHERE, app)
        else:
            await client.dial(NOWHERE, app)

    asyncio.run(run())
    tried = strategy.order()[: strategy.order().index(working[0]) + 1] if working else strategy.order()
    assert [index for index, _ in strategy.reports] == tried
    assert [ok for _, ok in strategy.reports] == [behaviours[i] == "ok" for i in tried]
    assert sum(len(f.dials) for f in fakes) == len(tried)


# --- options ---------------------------------------------------------------------------------------

SHADOW: dict[str, object] = {"password": "p", "serverAddress": "127.0.0.1:8388"}
OBFS4_CERT = "A" * 70


def options(*entries: tuple[str, dict[str, object]], **top: object) -> dict[str, object]:
    return {"transports": [{"name": n, "config": c} for n, c in entries], **top}


def test_children_are_validated_through_the_registry() -> None:
    client = SPEC.client(options(("plain", {"serverAddress": "127.0.0.1:1"}), ("SHADOW", SHADOW), strategy="rotate"))
    assert isinstance(client, OptimizerClient) and isinstance(client.strategy, Rotate)
    assert [c.server for c in client.children] == [Address("127.0.0.1", 1), Address("127.0.0.1", 8388)]
    single = SPEC.client(options(("plain", {"serverAddress": "127.0.0.1:1"})))
    assert isinstance(single, OptimizerClient) and isinstance(single.strategy, First)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (
            options(("plain", {"serverAddress": "127.0.0.1:1"}), ("nope", {})),
            r"transports\[1\].*unknown transport 'nope'",
        ),
        (
            options(("shadow", {"serverAddress": "127.0.0.1:1"})),
            r"transports\[0\] \(shadow\): missing option 'password'",
        ),
        (options(("obfs4", {"serverAddress": "127.0.0.1:1", "cert": "short"})), r"transports\[0\] \(obfs4\)"),
        (options(("plain", {})), r"transports\[0\] \(plain\): missing option 'serverAddress'"),
        (options(("plain", {"serverAddress": "nowhere"})), r"transports\[0\] \(plain\): option 'serverAddress'"),
        (options(("plain", {"serverAddress": "127.0.0.1:1"}), strategy="fastest"), "unknown strategy 'fastest'"),
        ({"transports": []}, "non-empty list"),
        ({"transports": "plain"}, "non-empty list"),
        ({"transports": [{"name": "plain"}]}, r"transports\[0\] \(plain\): 'config' must be an object"),
        ({"transports": [{"config": {}}]}, r"transports\[0\]: missing 'name'"),
        ({"transports": ["plain"]}, r"transports\[0\] must be an object"),
        ({"transports": [{"name": "plain", "config": {}, "server": "1.2.3.4:5"}]}, "unknown key 'server'"),
        ({"transports": [{"name": "plain", "config": {}, "address": "nowhere"}]}, r"\(plain\): 'address'"),
        ({}, "missing option 'transports'"),
    ],
)
def test_bad_options_name_the_child(raw: dict[str, object], match: str) -> None:
    with pytest.raises(OptionsError, match=match) as info:
        SPEC.client(raw)
    assert info.value.transport == "Optimizer"


def test_top_level_server_address_is_the_default_for_children() -> None:
    client = SPEC.client(options(("plain", {}), ("plain", {"serverAddress": "[::1]:2"}), serverAddress="127.0.0.1:1"))
    assert isinstance(client, OptimizerClient)
    assert [c.server for c in client.children] == [Address("127.0.0.1", 1), Address("::1", 2)]


def test_entry_address_names_the_server_when_the_config_does_not() -> None:
    raw = {
        "transports": [
            {"name": "plain", "config": {}, "address": "127.0.0.1:3"},
            {"name": "plain", "config": {"serverAddress": "127.0.0.1:4"}, "address": "127.0.0.1:5"},
        ]
    }
    client = SPEC.client(raw)
    assert isinstance(client, OptimizerClient)
    assert [c.server for c in client.children] == [Address("127.0.0.1", 3), Address("127.0.0.1", 4)]


def test_optimizer_nests() -> None:
    inner = options(("plain", {"serverAddress": "127.0.0.1:1"}), strategy="random")
    client = SPEC.client(options(("optimizer", inner), ("plain", {"serverAddress": "127.0.0.1:2"})))
    assert isinstance(client, OptimizerClient) and isinstance(client.children[0].transport, OptimizerClient)


def test_unknown_keys_are_refused_when_the_child_declares_its_keys() -> None:
    nested = options(("plain", {"serverAddress": "127.0.0.1:1"}), speed="max")
    with pytest.raises(OptionsError, match=r"transports\[0\] \(optimizer\): .*unknown option 'speed'"):
        SPEC.client(options(("optimizer", nested)))


def test_check_names_the_child_that_cannot_work_without_a_destination() -> None:
    client = SPEC.client(options(("plain", {"serverAddress": "127.0.0.1:1"}), ("shadow", SHADOW)))
    client.check(Address("10.0.0.1", 80))
    with pytest.raises(OptionsError, match=r"transports\[1\] \(shadow\)"):
        client.check(None)
    SPEC.client(options(("shadow", {**SHADOW, "target": "127.0.0.1:9"}))).check(None)


def test_server_side_is_refused() -> None:
    with pytest.raises(OptionsError, match="client-only"):
        SPEC.server({}, ServerContext(state_dir=Path()))


def test_server_side_is_refused_before_its_options_are_read() -> None:
    """A server given the client's options hears that there is no server side, not that
    ``transports`` is an unknown key."""
    with pytest.raises(OptionsError, match="client-only"):
        SPEC.make_server(options(("plain", {"serverAddress": "127.0.0.1:1"})), ServerContext(state_dir=Path()))


def test_registered() -> None:
    assert registry.lookup("Optimizer") is SPEC and registry.lookup("optimizer") is SPEC
    assert "Optimizer" in registry.names()  # the spec's spelling, as in method lines


def test_registry_names_are_the_specs_spelling() -> None:
    for name in registry.names():
        spec = registry.lookup(name)
        assert spec is not None
        assert spec.name == name or name in ("meek", "meek_lite"), (name, spec.name)  # meek's aliases


# --- the dispatcher's routing ------------------------------------------------------------------------


def method(raw: dict[str, object]) -> dialer.ClientMethod:
    log = EventLog(Reporter(out=io.StringIO(), err=io.StringIO(), level=LogLevel.NONE))
    return dialer.ClientMethod("Optimizer", SPEC, raw, None, log, ConnectionTracker())


def test_route_needs_no_server_address_and_keeps_one_client() -> None:
    m = method(options(("plain", {"serverAddress": "127.0.0.1:1"}), strategy="rotate"))
    m.check_options(per_connection_allowed=False)
    route = m.route({}, None)  # transparent and UDP modes
    assert route.destination is None
    dest = Address("10.0.0.1", 80)
    socks = m.route({}, dest)
    assert (socks.client, socks.destination) == (route.client, dest)
    per_connection = m.route({"strategy": "first"}, dest)  # per-connection arguments: parsed once, then kept
    assert m.route({"strategy": "first"}, dest).client is per_connection.client is not route.client


def test_route_cache_keeps_the_most_recent_clients_only() -> None:
    m = method(options(("plain", {"serverAddress": "127.0.0.1:1"})))

    def client(i: int) -> object:
        return m.route({"serverAddress": f"127.0.0.1:{i + 1}"}, None).client

    first = [client(i) for i in range(dialer.CLIENT_CACHE_SIZE + 10)]
    oldest_kept = 10
    assert client(oldest_kept) is first[oldest_kept]  # still cached (and now the most recent)
    assert client(oldest_kept - 1) is not first[oldest_kept - 1]  # evicted: parsed again


async def test_in_process_failover_between_two_real_servers() -> None:
    """Two plain servers; the first is closed: every dial still succeeds through the second."""
    from tests.peers.managed import echo_handler

    async def serve() -> tuple[asyncio.Server, int]:
        srv = await api.start_server(echo_handler, "plain", "127.0.0.1", 0)
        return srv, srv.sockets[0].getsockname()[1]

    (first, p1), (second, p2) = await serve(), await serve()
    raw = options(("plain", {"serverAddress": f"127.0.0.1:{p1}"}), ("plain", {"serverAddress": f"127.0.0.1:{p2}"}))
    first.close()
    await first.wait_closed()
    for _ in range(3):
        reader, writer = await api.open_connection("optimizer", "0.0.0.0:0", raw)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        writer.close()
    second.close()
