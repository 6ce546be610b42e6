"""The conformance suite's one table: how to build a client/server pair of each transport.

A new transport joins the suite by adding a row to :data:`PAIRS` (the suite fails for a
registered transport without one).  A row says how to configure the server, which client options
to add to the server's ``SMETHOD`` arguments, and which properties the wire format allows the
suite to check (a stream cipher cannot notice a stream cut in two; a server that speaks first is
not silent).

A test that cannot apply to a row is marked in the row itself, with the reason (``not_applicable``,
or ``owns_connections`` for every engine-level test), so the run lists it as skipped and why,
rather than passing it silently.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ptdispatch.net.addr import Address
from ptdispatch.transports import registry
from ptdispatch.transports.base import ClientTransport, ServerContext, ServerTransport, Timeouts

#: Short timeouts for every server in the suite (configuration, through ServerContext).
HANDSHAKE = 1.0
LINGER = 0.6
TIMEOUTS = Timeouts(handshake=HANDSHAKE, linger=LINGER)


@dataclass(frozen=True)
class Pair:
    """How to build and what to expect of one client/server pair."""

    transport: str
    server_options: Mapping[str, object] = field(default_factory=dict)
    #: Client options besides the server's SMETHOD arguments.
    client_options: Mapping[str, object] = field(default_factory=dict)
    #: The destination the client carries (transports that carry one need it).
    destination: Address | None = None
    #: The connection has a handshake: EOF or garbage before it completes is an error.
    handshake: bool = True
    #: Frames are authenticated: a stream cut inside one is detected at EOF.
    framed: bool = False
    #: The size of a frame's length field on the wire (sealed or obfuscated), for framed rows: a
    #: stream cut right after it, before any of the payload, is inside a frame too.
    length_header: int = 0
    #: The server writes its own handshake before reading anything (so it is not silent).
    server_speaks_first: bool = False
    #: A probe meets silence for the linger (else the server may close at once).
    probe_lingers: bool = False
    #: The shortest linger any failure gets, when the transport draws it at random below the
    #: configured one (DarkStar: LINGER/6); None: the figures of :meth:`min_linger`.
    linger_floor: float | None = None
    #: The server that the client dials is another transport's (Optimizer is client-only).
    server_transport: str | None = None
    #: Builds the client options from the server's SMETHOD arguments (plus ``client_options``) and
    #: the listening port (None in the engine-level tests): meek's url, Optimizer's children.
    wrap: Callable[[dict[str, object], int | None], Mapping[str, object]] | None = None
    #: Why this transport has no engine (it owns its connections): every engine-level test is
    #: not applicable.  Empty for engine transports.
    owns_connections: str = ""
    #: The server answers a probe with bytes starting so (meek: HTTP), instead of silence, and
    #: reports no error (``on_error`` is for failed transport handshakes).
    probe_answer: bytes | None = None
    #: Appended to the random probe.  meek: a line end, so that meek-server's HTTP parser has a
    #: (bad) request line to answer 400 to; random bytes without one meet silence until its 20 s
    #: read timeout, as Go's net/http (too long for the suite; tests/unit/test_meek_bad_input.py).
    probe_suffix: bytes = b""
    #: Why the plaintext side cannot half-close (meek's wire has no EOF of its own): the round
    #: trip then reads the echo back in full and closes instead.  Empty: half-close is tested.
    no_half_close: str = ""
    #: Socket-level tests that do not apply to this row (test function name -> why).
    not_applicable: Mapping[str, str] = field(default_factory=dict)

    def server(self, state_dir: Path) -> ServerTransport:
        spec = registry.lookup(self.server_transport or self.transport)
        assert spec is not None
        return spec.make_server(self.server_options, ServerContext(state_dir=state_dir, timeouts=TIMEOUTS))

    def client(self, server: ServerTransport, port: int | None = None) -> ClientTransport:
        spec = registry.lookup(self.transport)
        assert spec is not None
        options: Mapping[str, object] = {**server.smethod_args(), **self.client_options}
        if self.wrap is not None:
            options = self.wrap(dict(options), port)
        return spec.make_client(options)

    def min_linger(self) -> float:
        """The shortest silence a lingering probe must meet (obfs4's close delay may be 0)."""
        if self.linger_floor is not None:
            return self.linger_floor
        return LINGER if self.transport == "shadow" else HANDSHAKE if self.transport == "obfs4" else 0.0

    def bug_linger(self) -> float:
        """The shortest linger after an engine bug (the configured linger, or the random floor)."""
        return LINGER if self.linger_floor is None else self.linger_floor


#: Shadowsocks AEAD's and DarkStar's frame length: two bytes and their 16-byte tag.
SEALED_LENGTH = 18
SHADOW = {"password": "conformance", "cipherName": "aes-128-gcm"}
#: DarkStar draws each connection's linger in [LINGER/6, LINGER] (its 10-60 s at the defaults).
DARKSTAR_FLOOR = LINGER / 6
#: Optimizer's child in its row: obfs4, the transport its documentation's example starts with.
OPTIMIZER_CHILD = "obfs4"


def _meek_url(args: dict[str, object], port: int | None) -> Mapping[str, object]:
    """meek's client names the server by its url (the server publishes none without one)."""
    return {**args, "url": f"http://127.0.0.1:{port}/"}


def _optimizer(args: dict[str, object], port: int | None) -> Mapping[str, object]:
    """One child: the server's transport, with its SMETHOD arguments and address."""
    config = {**args, "serverAddress": f"127.0.0.1:{port}"}
    return {"transports": [{"name": OPTIMIZER_CHILD, "config": config}], "strategy": "first"}


PLAIN_OWNS = "plain hands the application the socket's own transport: no engine (nothing to parse or to fail)"
MEEK_OWNS = "meek owns its connections (HTTP requests over connections it opens and reopens): no engine"
MEEK_NO_HALF_CLOSE = "meek's requests carry no end of stream (as meek-client and meek-server): write_eof is refused"
MEEK_ALIAS = "an alias of meeklite (the same module and spec): the meeklite row runs this test"
OPTIMIZER_SERVER = (
    f"Optimizer is client-only: the server is {OPTIMIZER_CHILD}'s, which the {OPTIMIZER_CHILD} row tests on its own"
)
MEEK_ALIAS_SKIPS = {
    name: MEEK_ALIAS
    for name in (
        "test_back_pressure_holds",
        "test_probe_gets_only_our_errors_and_silence",
        "test_eof_inside_the_handshake_is_a_remote_error_and_closes",
        "test_an_engine_bug_still_lingers",
    )
}

PAIRS: dict[str, Pair] = {
    "plain": Pair(
        "plain",
        handshake=False,
        owns_connections=PLAIN_OWNS,
        not_applicable={"test_an_engine_bug_still_lingers": PLAIN_OWNS},
    ),
    "obfs2": Pair("obfs2", server_speaks_first=True),
    "obfs3": Pair("obfs3", server_speaks_first=True),
    "obfs4": Pair("obfs4", framed=True, length_header=2, probe_lingers=True),
    "obfs4-iat1": Pair("obfs4", {"iat-mode": "1"}, framed=True, length_header=2, probe_lingers=True),
    "obfs4-iat2": Pair("obfs4", {"iat-mode": "2"}, framed=True, length_header=2, probe_lingers=True),
    "shadow": Pair(
        "shadow",
        SHADOW,
        SHADOW,
        destination=Address("192.0.2.1", 80),
        framed=True,
        length_header=SEALED_LENGTH,
        probe_lingers=True,
    ),
    "shadow-darkstar": Pair(
        "shadow",
        {"cipherName": "DarkStar"},
        framed=True,
        length_header=SEALED_LENGTH,
        probe_lingers=True,
        linger_floor=DARKSTAR_FLOOR,
    ),
    "starbridge": Pair(
        "starbridge",
        framed=True,
        length_header=SEALED_LENGTH,
        server_speaks_first=True,
        probe_lingers=True,
        linger_floor=DARKSTAR_FLOOR,
    ),
    "replicant": Pair(
        "replicant",
        framed=True,
        length_header=SEALED_LENGTH,
        server_speaks_first=True,
        probe_lingers=True,
        linger_floor=DARKSTAR_FLOOR,
    ),
    "replicant-none": Pair(
        "replicant",
        {"toneburst": "none"},
        framed=True,
        length_header=SEALED_LENGTH,
        probe_lingers=True,
        linger_floor=DARKSTAR_FLOOR,
    ),
    "meeklite": Pair(
        "meeklite",
        wrap=_meek_url,
        no_half_close=MEEK_NO_HALF_CLOSE,
        owns_connections=MEEK_OWNS,
        probe_answer=b"HTTP/1.1 400 ",
        probe_suffix=b"\r\n\r\n",
        not_applicable={"test_an_engine_bug_still_lingers": MEEK_OWNS},
    ),
    "meek": Pair(
        "meek",
        wrap=_meek_url,
        owns_connections=MEEK_OWNS,
        no_half_close=MEEK_NO_HALF_CLOSE,
        not_applicable=MEEK_ALIAS_SKIPS,
    ),
    "meek_lite": Pair(
        "meek_lite",
        wrap=_meek_url,
        owns_connections=MEEK_OWNS,
        no_half_close=MEEK_NO_HALF_CLOSE,
        not_applicable=MEEK_ALIAS_SKIPS,
    ),
    "optimizer": Pair(
        "optimizer",
        server_transport=OPTIMIZER_CHILD,
        wrap=_optimizer,
        owns_connections="Optimizer dials through its children's transports: no engine of its own",
        not_applicable={
            name: OPTIMIZER_SERVER
            for name in (
                "test_probe_gets_only_our_errors_and_silence",
                "test_eof_inside_the_handshake_is_a_remote_error_and_closes",
                "test_an_engine_bug_still_lingers",
            )
        },
    ),
}

_DIR = Path(tempfile.mkdtemp(prefix="ptdispatch-conformance-"))
_SERVERS: dict[str, ServerTransport] = {}


def shared_server(pair_id: str) -> ServerTransport:
    """One server per pair for the engine-level properties (obfs4 state is slow to make)."""
    if pair_id not in _SERVERS:
        _SERVERS[pair_id] = PAIRS[pair_id].server(Path(tempfile.mkdtemp(dir=_DIR)))
    return _SERVERS[pair_id]


def pair_ids(*, where: str = "", test: str = "", engine: bool = False) -> list[object]:
    """Every row (as pytest params), filtered by a Pair attribute that must be true.  A row for
    which ``test`` (or, with ``engine``, any engine-level test) is not applicable is kept, marked
    skipped with the row's reason."""
    params: list[object] = []
    for key, pair in PAIRS.items():
        if where and not getattr(pair, where):
            continue
        reason = pair.not_applicable.get(test, "") or (pair.owns_connections if engine else "")
        marks = [pytest.mark.skip(reason=f"not applicable to {key}: {reason}")] if reason else []
        params.append(pytest.param(key, id=key, marks=marks))
    return params
