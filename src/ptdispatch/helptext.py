"""The text of ``ptdispatch -h`` (and of the man page, :mod:`ptdispatch.manpage`).

Everything that can drift is generated: the transports and their option keys come from the
registry and each :class:`~ptdispatch.transports.base.TransportSpec`, the modes from
:class:`~ptdispatch.config.Mode`, the exit codes from :class:`~ptdispatch.exitcode.ExitCode`, and
every flag :mod:`ptdispatch.ipc.flags` accepts is listed even when nobody described it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import Mode
from .exitcode import ExitCode
from .ipc import flags
from .transports import registry
from .transports.base import TransportSpec
from .udp import options as udp

VERSION_FLAGS = ("-version", "--version")
HELP_FLAGS = ("-h", "-help", "--help")


@dataclass(frozen=True)
class Flag:
    name: str
    argument: str
    text: str


COMMON = (
    Flag("client", "", "run as a client: the default when neither -client nor -server is given"),
    Flag("server", "", "run as a server"),
    Flag("transport", "NAME", "the transport to run (unknown names are skipped, with a note on stderr)"),
    Flag("transports", "NAME,NAME", "several transports, each with its own listener"),
    Flag("mode", "MODE", "how the application's traffic is carried (see Modes; default socks5)"),
    Flag("options", "JSON", "transport options: one JSON object, keyed by transport name or flat"),
    Flag("optionsFile", "PATH", "the same JSON object, read from a file"),
    Flag("state", "DIR", "state directory, created 0700 (default: the working directory)"),
    Flag("ptversion", "LIST", "comma list of PT versions the parent speaks (we speak 3.0)"),
    Flag("exit-on-stdin-close", "", "stop when stdin closes"),
    Flag("ipcLogLevel", "LEVEL", "LOG lines at or above: NONE (default) ERROR WARN INFO DEBUG"),
    Flag("unsafeLogging", "", "show client addresses in LOG lines (scrubbed by default)"),
)
CLIENT = (
    Flag("proxylistenaddr", "IP:PORT", "where to listen (default 127.0.0.1, a free port per transport)"),
    Flag("proxylistenhost", "IP", "the same, in two flags: with -proxylistenport PORT"),
    Flag("proxy", "URL", "upstream proxy: socks5://[user:pass@]IP:PORT, socks4a://IP:PORT, http://..."),
)
SERVER = (
    Flag("bindaddr", "NAME-IP:PORT,...", "where each transport listens (port 0: a free one, reported)"),
    Flag("bindhost", "IP", "the same for a single transport, in two flags: with -bindport PORT"),
    Flag("target", "HOST:PORT", "forward the unwrapped traffic there (or -targethost with -targetport)"),
    Flag("extorport", "IP:PORT", "forward to tor's Extended ORPort instead (with -authcookie PATH)"),
)
OPERATOR = (
    Flag("workers", "N|auto", "N processes share each listener (auto: one per CPU; default 1)"),
    Flag("metrics", "IP:PORT", "serve Prometheus metrics at http://IP:PORT/metrics"),
    Flag("replayStore", "redis://HOST:PORT/DB", "replay state shared by a fleet of servers"),
)
_PAIRED = {"proxylistenport", "bindport", "targethost", "targetport", "authcookie"}
"""Flags described together with their partner above."""

MODES = {
    Mode.SOCKS5: "a SOCKS5 (and SOCKS4a) listener; CONNECT names the destination",
    Mode.TRANSPARENT_TCP: "every TCP connection goes to the option serverAddress",
    Mode.TRANSPARENT_UDP: "datagrams travel length-prefixed over the transport",
    Mode.STUN: "STUN and TURN ChannelData travel over the transport (to a TURN server)",
}

DISPATCHER_CLIENT_KEYS = ("serverAddress",)
UDP_CLIENT_KEYS = (udp.IDLE_TIMEOUT_KEY, udp.MAX_SESSIONS_KEY, udp.QUEUE_KEY, udp.CLASSIC_KEY)
UDP_SERVER_KEYS = (udp.IDLE_TIMEOUT_KEY, udp.MAX_SESSIONS_KEY, udp.CLASSIC_KEY)


def _flag_lines(described: Iterable[Flag]) -> list[str]:
    return [f"  {f'-{f.name} {f.argument}'.rstrip():<28} {f.text}" for f in described]


def undescribed_flags() -> list[str]:
    """Flags the parser accepts that no section above describes (new ones, until someone does)."""
    described = {f.name for f in (*COMMON, *CLIENT, *SERVER, *OPERATOR)} | _PAIRED
    return [name for name in (*flags.VALUE_FLAGS, *flags.BOOL_FLAGS) if name not in described]


_Entry = tuple[str, TransportSpec | None, list[str], str]


def _transports() -> list[_Entry]:
    """(name, spec or None, aliases, why unavailable) per transport, aliases folded into one entry."""
    found: dict[int, _Entry] = {}
    out: list[_Entry] = []
    for name in registry.names():
        try:
            spec = registry.lookup(name)
        except ImportError as exc:
            out.append((name, None, [], f"unavailable here: {exc}"))
            continue
        if spec is not None and id(spec) in found:
            found[id(spec)][2].append(name)
            continue
        entry: _Entry = (name, spec, [], "")
        out.append(entry)
        if spec is not None:
            found[id(spec)] = entry
    return out


def _keys(keys: frozenset[str] | None) -> str:
    return " ".join(sorted(keys, key=str.lower)) if keys is not None else "(not declared; see the README)"


def transport_lines() -> list[str]:
    lines = ['  -options \'{"NAME": {"key": "value"}, ...}\' per transport, or one flat object for all', ""]
    for name, spec, aliases, problem in _transports():
        label = name + (f" (also {', '.join(aliases)})" if aliases else "")
        if spec is None:
            lines.append(f"  {label:<14} {problem}")
            continue
        lines.append(f"  {label:<14} client: {_keys(spec.client_keys)}")
        lines.append(f"  {'':<14} server: {_keys(spec.server_keys)}")
    lines.append(
        f"  {'(every one)':<14} client: {' '.join(DISPATCHER_CLIENT_KEYS)} (host:port of the transport server)"
    )
    lines.append(f"  {'(UDP modes)':<14} client: {' '.join(UDP_CLIENT_KEYS)}")
    lines.append(f"  {'':<14} server: {' '.join(UDP_SERVER_KEYS)}")
    return lines


def readme_location() -> str:
    """Where the README is: the file in a source checkout, else where to find it."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    return str(readme) if readme.is_file() else "README.md in the ptdispatch source tree"


SYNOPSIS = (
    "ptdispatch [-client] -transport NAME [flags]",
    "ptdispatch -server -transport NAME -bindaddr NAME-IP:PORT -target HOST:PORT [flags]",
    "ptdispatch -generateConfig -transport shadow|Starbridge|Replicant -serverIP IP:PORT [-state DIR]",
    "ptdispatch -h | -version",
)
DESCRIPTION = (
    "A Pluggable Transports 3.0 dispatcher. The parent application (tor, a VPN, a messenger) starts it",
    "with flags; it answers on stdout with protocol lines only (VERSION, CMETHOD/SMETHOD, PROXY DONE,",
    "LOG, *METHODS DONE) and writes the *-ERROR lines to stderr. Flags take one dash or two, as",
    '"-flag value" or "-flag=value".',
)
PT1 = (
    "Started with no flags and tor's TOR_PT_* environment variables, it runs as a Tor PT 1.0 managed",
    "proxy instead (torrc: ClientTransportPlugin / ServerTransportPlugin NAME exec /path/to/ptdispatch).",
)


def sections() -> list[tuple[str, list[str]]]:
    """(title, lines) in order: the help text and the man page are both built from these."""
    other = undescribed_flags()
    out = [
        ("Flags (both roles)", _flag_lines(COMMON)),
        ("Client flags", _flag_lines(CLIENT)),
        ("Server flags", _flag_lines(SERVER)),
        (
            "Operator flags (our extensions; also PTDISPATCH_WORKERS/_METRICS/_REPLAY_STORE under PT 1.0)",
            _flag_lines(OPERATOR),
        ),
    ]
    if other:
        out.append(("Other flags", ["  " + " ".join(f"-{name}" for name in other)]))
    out += [
        ("Modes (-mode)", [f"  {m.value:<28} {text}" for m, text in MODES.items()]),
        ("Transports and their -options keys", transport_lines()),
        ("Exit codes", [f"  {int(code):<4} {code.meaning}" for code in ExitCode]),
        ("Tor PT 1.0", ["  " + line for line in PT1]),
        ("More", [f"  the README: {readme_location()}"]),
    ]
    return out


def usage() -> str:
    """The whole ``-h`` text."""
    lines = ["usage: " + SYNOPSIS[0], *("       " + s for s in SYNOPSIS[1:]), "", *DESCRIPTION]
    for title, body in sections():
        lines += ["", title + ":", *body]
    return "\n".join(lines) + "\n"


def version() -> str:
    return f"ptdispatch {__version__}\n"
