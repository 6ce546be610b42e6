"""The rows of the benchmark: which proxy pair to start, and how the load generator enters it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import peers
from .load import Entry, Socks
from .peers import Side
from .procs import Proc


@dataclass
class Pair:
    """A started pair: the entry for the load generator and the proxies' processes."""

    entry: Entry
    client: list[Side] = field(default_factory=list)
    server: list[Side] = field(default_factory=list)
    note: str = ""

    @property
    def procs(self) -> list[Proc]:
        return [side.proc for side in [*self.client, *self.server]]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    @property
    def server_pids(self) -> list[int]:
        return [side.proc.pid for side in self.server]


@dataclass(frozen=True)
class Row:
    name: str
    setup: Callable[[Path, Side, list[Side]], Pair]
    binaries: tuple[str, ...] = ()
    transport: str | None = None  # ptdispatch transport that must import

    def available(self) -> str | None:
        """None when the row can run, else why not."""
        for binary in self.binaries:
            if not peers.have(binary):
                return f"{binary} not installed"
        if self.transport is not None:
            from ptdispatch.transports import registry

            try:
                if registry.lookup(self.transport) is None:
                    return f"ptdispatch has no transport {self.transport}"
            except Exception as exc:  # an unfinished transport module: skip its rows
                return f"ptdispatch {self.transport} unavailable: {type(exc).__name__}: {exc}"
        return None

    @property
    def group(self) -> str:
        """Rows compared with each other run side by side: the transport, or "tcp" for the plain relays."""
        return self.name.split(" ")[0] if "/" in self.name else "tcp"

    def matches(self, token: str) -> bool:
        token = token.strip().lower()
        name = self.name.lower()
        return token in (name, name.replace(" ", "-"), name.split(" ")[0])


def _direct(workdir: Path, target: Side, started: list[Side]) -> Pair:
    return Pair(Entry(target.host, target.port))


def _socat(buffer: int | None) -> Callable[[Path, Side, list[Side]], Pair]:
    def setup(workdir: Path, target: Side, started: list[Side]) -> Pair:
        server = peers.socat("socat-server", target.port, workdir, buffer)
        started.append(server)
        client = peers.socat("socat-client", server.port, workdir, buffer)
        started.append(client)
        return Pair(Entry(client.host, client.port), [client], [server])

    return setup


def _plain(workdir: Path, target: Side, started: list[Side]) -> Pair:
    server = peers.ptd_server("plain", target.port, workdir)
    started.append(server)
    options = {"serverAddress": f"{server.host}:{server.port}"}
    client = peers.ptd_client("plain", "transparent-TCP", options, workdir)
    started.append(client)
    return Pair(Entry(client.host, client.port), [client], [server])


def _socks_args(args: dict[str, str]) -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")

    return ";".join(f"{esc(k)}={esc(v)}" for k, v in args.items())


def _obfs(transport: str, client_impl: str, server_impl: str) -> Callable[[Path, Side, list[Side]], Pair]:
    def setup(workdir: Path, target: Side, started: list[Side]) -> Pair:
        if server_impl == "ptd":
            server = peers.ptd_server(transport, target.port, workdir)
        else:
            server = peers.o4p_server(transport, target.port, workdir)
        started.append(server)
        args = dict(server.args)
        note = ""
        if "iat-mode" in args and args["iat-mode"] != "0":
            note = f"server iat-mode={args['iat-mode']}, client asks 0"
            args["iat-mode"] = "0"
        dest = (server.host, server.port)
        if client_impl == "ptd":
            client = peers.ptd_client(transport, "socks5", args, workdir)
            socks = Socks(dest)
        else:
            client = peers.o4p_client(transport, workdir)
            socks = Socks(dest, (_socks_args(args).encode(), b"\x00") if args else None)
        started.append(client)
        return Pair(Entry(client.host, client.port, socks), [client], [server], note)

    return setup


def _optimizer_obfs4(workdir: Path, target: Side, started: list[Side]) -> Pair:
    """Optimizer (strategy first, one obfs4 child) against our obfs4 server: Optimizer's own cost."""
    server = peers.ptd_server("obfs4", target.port, workdir)
    started.append(server)
    config = {**server.args, "iat-mode": "0", "serverAddress": f"{server.host}:{server.port}"}
    options = {"transports": [{"name": "obfs4", "config": config}], "strategy": "first"}
    client = peers.ptd_client("Optimizer", "socks5", options, workdir)  # type: ignore[arg-type]
    started.append(client)
    socks = Socks((target.host, target.port))
    return Pair(Entry(client.host, client.port, socks), [client], [server], "client: Optimizer over one obfs4 child")


def _shadow(client_impl: str, server_impl: str) -> Callable[[Path, Side, list[Side]], Pair]:
    common = {"password": peers.SS_PASSWORD, "cipherName": peers.SS_CIPHER}

    def setup(workdir: Path, target: Side, started: list[Side]) -> Pair:
        if server_impl == "ptd":
            server = peers.ptd_server("shadow", target.port, workdir, common)
        else:
            server = peers.ss_server(workdir)
        started.append(server)
        if client_impl == "ptd":
            options = {**common, "serverAddress": f"{server.host}:{server.port}"}
            client = peers.ptd_client("shadow", "socks5", options, workdir)
        else:
            client = peers.ss_local(server.port, workdir)
        started.append(client)
        return Pair(Entry(client.host, client.port, Socks((target.host, target.port))), [client], [server])

    return setup


def _meek(client_impl: str) -> Callable[[Path, Side, list[Side]], Pair]:
    """meek: our server (plain HTTP, as behind a CDN); our client or obfs4proxy's meek_lite (SOCKS5,
    the url as the SOCKS user name as tor sends it, for both, so the SOCKS exchange is alike)."""

    def setup(workdir: Path, target: Side, started: list[Side]) -> Pair:
        server = peers.ptd_server("meeklite", target.port, workdir)
        started.append(server)
        auth = (f"url=http://{server.host}:{server.port}/".encode(), b"\x00")
        if client_impl == "ptd":
            client = peers.ptd_client("meeklite", "socks5", {}, workdir)
        else:
            client = peers.o4p_client("meek_lite", workdir)
        started.append(client)
        return Pair(Entry(client.host, client.port, Socks(("192.0.2.20", 80), auth)), [client], [server])

    return setup


def _ptd_pair(
    transport: str, server_options: dict[str, str], client_options: dict[str, str] | None = None
) -> Callable[[Path, Side, list[Side]], Pair]:
    """A ptd/ptd pair whose client takes ``client_options`` + the server's ARGS + serverAddress
    (Operator's transports publish their key; Shadowsocks needs the password on both sides)."""

    def setup(workdir: Path, target: Side, started: list[Side]) -> Pair:
        server = peers.ptd_server(transport, target.port, workdir, server_options)
        started.append(server)
        options = {**(client_options or {}), **server.args, "serverAddress": f"{server.host}:{server.port}"}
        client = peers.ptd_client(transport, "socks5", options, workdir)
        started.append(client)
        return Pair(Entry(client.host, client.port, Socks((target.host, target.port))), [client], [server])

    return setup


def _floor(workdir: Path, target: Side, started: list[Side]) -> Pair:
    server = peers.floor("server", target.port, workdir)
    started.append(server)
    client = peers.floor("client", server.port, workdir)
    started.append(client)
    note = "bench/floor.py: minimal uvloop SOCKS5 relay pair, no crypto; the floor for any Python pair"
    return Pair(Entry(client.host, client.port, Socks((target.host, target.port))), [client], [server], note)


IMPL_BINARY = {"ptd": (), "o4p": ("obfs4proxy",), "ss": ("ss-server", "ss-local")}
IMPL_SIDE_BINARY = {("ss", "client"): ("ss-local",), ("ss", "server"): ("ss-server",)}


def _binaries(client_impl: str, server_impl: str) -> tuple[str, ...]:
    out: list[str] = []
    for impl, side in ((client_impl, "client"), (server_impl, "server")):
        out += IMPL_SIDE_BINARY.get((impl, side), IMPL_BINARY[impl])
    return tuple(dict.fromkeys(out))


def _pairs(other: str) -> list[tuple[str, str]]:
    return [("ptd", "ptd"), (other, other), ("ptd", other), (other, "ptd")]


def all_rows() -> list[Row]:
    rows = [
        Row("direct", _direct),
        Row("socat", _socat(None), ("socat",)),
        Row("socat-b256k", _socat(262144), ("socat",)),
        Row("plain ptd/ptd", _plain, transport="plain"),
    ]
    for transport in ("obfs4", "obfs3", "obfs2"):
        for c, s in _pairs("o4p"):
            uses_ptd = "ptd" in (c, s)
            rows.append(
                Row(
                    f"{transport} {c}/{s}",
                    _obfs(transport, c, s),
                    _binaries(c, s),
                    transport if uses_ptd else None,
                )
            )
    rows.insert(5, Row("obfs4 opt/ptd", _optimizer_obfs4, transport="optimizer"))
    for c, s in _pairs("ss"):
        rows.append(Row(f"shadow {c}/{s}", _shadow(c, s), _binaries(c, s), "shadow" if "ptd" in (c, s) else None))
    rows.append(Row("shadow floor/floor", _floor))
    rows.append(Row("meek ptd/ptd", _meek("ptd"), (), "meeklite"))
    rows.append(Row("meek o4p/ptd", _meek("o4p"), ("obfs4proxy",), "meeklite"))
    aes = {"password": peers.SS_PASSWORD, "cipherName": "aes-256-gcm"}
    rows.append(Row("shadow-aes256gcm ptd/ptd", _ptd_pair("shadow", aes, aes), transport="shadow"))
    rows.append(Row("shadow-darkstar ptd/ptd", _ptd_pair("shadow", {"cipherName": "DarkStar"}), transport="shadow"))
    rows.append(Row("Starbridge ptd/ptd", _ptd_pair("Starbridge", {}), transport="starbridge"))
    return rows


def select(rows: list[Row], only: str | None) -> list[Row]:
    if not only:
        return rows
    tokens = [t for t in only.split(",") if t.strip()]
    unknown = [t for t in tokens if not any(row.matches(t) for row in rows)]
    if unknown:
        raise SystemExit(f"--only: unknown rows {unknown}; known: {', '.join(r.name for r in rows)}")
    return [row for row in rows if any(row.matches(t) for t in tokens)]
