"""Tor PT 1.0 managed-proxy mode (torspec ``pt-spec.txt``): TOR_PT_* variables -> Config.

The second front door to the same dispatcher: tor starts us with environment variables instead of
PT 3.0 flags, reads every reply line (errors included) from stdout, and expects ``VERSION 1`` first.

Order of the conversation (pt-spec section 3): ``VERSION-ERROR no-version`` and exit when "1" is
not offered; otherwise ``VERSION 1``; then each malformed variable ends the process with one
``ENV-ERROR`` naming it; a client's unusable ``TOR_PT_PROXY`` ends it with ``PROXY-ERROR``; only
then do the listeners start (``PROXY DONE``, ``CMETHOD``/``SMETHOD`` lines, ``*METHODS DONE``).
Exit codes (:class:`~ptdispatch.exitcode.ExitCode`) match the PT 3.0 front door: 78 no version, 64 bad
environment, 69 bad proxy.
Once the environment is valid comes ``STATUS TYPE=version IMPLEMENTATION=ptdispatch VERSION=...``, which
tor (0.4.8+) records and a bridge publishes in its extra-info ``transport-info`` line.

Extensions (not set by tor; tor passes its own environment through to its plugins):
``PTDISPATCH_IPC_LOG_LEVEL`` (NONE ERROR WARN INFO DEBUG, default WARN) chooses which events
become ``LOG SEVERITY=... MESSAGE="..."`` lines, and ``PTDISPATCH_LOG_ADDRESSES=1`` stops
scrubbing client addresses in them.  ``PTDISPATCH_WORKERS``, ``PTDISPATCH_METRICS`` and
``PTDISPATCH_REPLAY_STORE`` are the ``-workers``, ``-metrics`` and ``-replayStore`` flags.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .. import __version__
from ..boolean import WORDS, parse_bool
from ..config import Config, LogLevel, Mode, Role, first_of_each
from ..errors import ConfigError, ProxyConfigError
from ..exitcode import ExitCode
from ..launch import RunLoop, launch
from ..net.addr import Address, parse_hostport
from ..net.upstream import UpstreamProxy
from ..scaling import extension_settings
from ..transports import registry
from .args import ordinal, split_escaped, unescape
from .reporter import Reporter

VERSION = "1"

VER = "TOR_PT_MANAGED_TRANSPORT_VER"
STATE = "TOR_PT_STATE_LOCATION"
EXIT_ON_STDIN_CLOSE = "TOR_PT_EXIT_ON_STDIN_CLOSE"
CLIENT_TRANSPORTS = "TOR_PT_CLIENT_TRANSPORTS"
PROXY = "TOR_PT_PROXY"
SERVER_TRANSPORTS = "TOR_PT_SERVER_TRANSPORTS"
SERVER_OPTIONS = "TOR_PT_SERVER_TRANSPORT_OPTIONS"
BINDADDR = "TOR_PT_SERVER_BINDADDR"
ORPORT = "TOR_PT_ORPORT"
EXTENDED_PORT = "TOR_PT_EXTENDED_SERVER_PORT"
AUTH_COOKIE = "TOR_PT_AUTH_COOKIE_FILE"
BIND_V4 = "TOR_PT_OUTBOUND_BIND_ADDRESS_V4"
BIND_V6 = "TOR_PT_OUTBOUND_BIND_ADDRESS_V6"
LOG_LEVEL = "PTDISPATCH_IPC_LOG_LEVEL"
LOG_ADDRESSES = "PTDISPATCH_LOG_ADDRESSES"
EXTENSIONS = ("PTDISPATCH_WORKERS", "PTDISPATCH_METRICS", "PTDISPATCH_REPLAY_STORE")

#: tor's default for a server transport without a ServerTransportListenAddr.
DEFAULT_BIND = Address("0.0.0.0", 0)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvError(ConfigError):
    """One TOR_PT_* variable is missing or malformed; the message starts with its name."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def negotiate_version(offered: str | None) -> str | None:
    """ "1" when the comma list ``offered`` contains it, else None (pt-spec 3.2.1)."""
    if offered is None:
        return None
    return VERSION if VERSION in offered.split(",") else None


def _get(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = environ.get(name)
    return value if value else None


# --- value readers ----------------------------------------------------------------------------------
def _transport_list(variable: str, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A comma list of PT names, each once, and the repeats left out; ``*`` means every transport
    this build can load."""
    names = [n.strip() for n in text.split(",")]
    if names == ["*"]:
        return tuple(n for n in registry.names() if _loadable(n)), ()
    for name in names:
        if not name:
            raise EnvError(variable, f"{text!r} has an empty transport name; write names separated by commas")
        if not _NAME.fullmatch(name):
            raise EnvError(variable, f"transport name {name!r} is not of the form [a-zA-Z_][a-zA-Z0-9_]*")
    return first_of_each(names)


def _loadable(name: str) -> bool:
    try:
        return registry.lookup(name) is not None
    except ImportError:
        return False


def _ip_port(variable: str, text: str) -> Address:
    """``IP:port`` (IPv6 in brackets; tor before bug 7011 wrote it bare, which we also accept)."""
    try:
        return parse_hostport(text, require_ip=True)
    except ValueError as exc:
        host, sep, port = text.rpartition(":")
        if sep and host.count(":") >= 2 and not host.startswith("["):
            try:
                return parse_hostport(f"[{host}]:{port}", require_ip=True)
            except ValueError:
                pass
        raise EnvError(variable, str(exc)) from None


def _bind_address(variable: str, text: str, version: int) -> str:
    """TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6: one IP literal (IPv6 given in brackets)."""
    bare = text[1:-1] if version == 6 and text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise EnvError(variable, f"{text!r} is not an IPv{version} address") from None
    if address.version != version:
        raise EnvError(variable, f"{text!r} is not an IPv{version} address")
    return str(address)


def parse_server_transport_options(text: str) -> dict[str, dict[str, str]]:
    """``name:k=v;name:k=v`` with ``\\`` escaping ``:`` ``;`` ``=`` ``\\`` -> {name: {k: v}}.

    Raises ``ValueError`` naming the offending entry by its position (counting empty ones), and by
    its transport and key once it parsed that far; never a value, nor the text of an entry that
    did not parse (a value with an unescaped ``;`` is cut into such entries), for tor logs the
    ENV-ERROR line and values are passwords.  Empty entries (``a:b=c;;``) are skipped.
    """
    result: dict[str, dict[str, str]] = {}
    for number, entry in enumerate(split_escaped(text, ";"), 1):
        if not entry:
            continue
        where = f"the {ordinal(number)} entry"
        parts = list(split_escaped(entry, ":"))
        if len(parts) < 2:
            raise ValueError(f"{where} is not of the form transport:key=value (a ';' in a value is written '\\;')")
        name, pair = parts[0], ":".join(parts[1:])  # an unescaped ':' in the value is tolerated
        kv = list(split_escaped(pair, "="))
        if len(kv) < 2:
            raise ValueError(f"{where} has no '=' between key and value")
        # Only the value can end with a lone backslash: one in the name or key escapes what follows.
        name, key = unescape(name), unescape(kv[0])
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where} has an invalid transport name (letters, digits and '_', not a digit first)")
        if not key:
            raise ValueError(f"{where} (transport {name!r}) has an empty key")
        try:
            value = unescape("=".join(kv[1:]))
        except ValueError as exc:
            raise ValueError(
                f"{where} (transport {name!r}, key {key!r}) {exc} (a '\\' in a value is written '\\\\')"
            ) from None
        result.setdefault(name.lower(), {})[key] = value
    return result


def _server_bind(text: str | None, transports: tuple[str, ...]) -> dict[str, Address]:
    """TOR_PT_SERVER_BINDADDR, ``name-IP:port,...``; transports it omits get tor's default."""
    bind: dict[str, Address] = {}
    for item in text.split(",") if text else ():
        name, dash, rest = item.strip().partition("-")
        if not dash or not _NAME.fullmatch(name):
            raise EnvError(BINDADDR, f"entry {item!r} is not of the form transport-IP:port, as obfs4-0.0.0.0:443")
        if name.lower() in bind:
            raise EnvError(BINDADDR, f"names {name!r} more than once")
        bind[name.lower()] = _ip_port(BINDADDR, rest)
    wanted = {t.lower() for t in transports}
    out = {n: a for n, a in bind.items() if n in wanted}
    for name in wanted - out.keys():
        out[name] = DEFAULT_BIND
    return out


# --- the configuration ------------------------------------------------------------------------------
def _common(environ: Mapping[str, str], cwd: Path) -> dict[str, object]:
    state = _get(environ, STATE)
    if state is None:
        raise EnvError(STATE, "not set; tor gives the directory where a transport keeps its state")
    if not os.path.isabs(state):
        raise EnvError(STATE, f"{state!r} is not an absolute path")
    stdin_close = environ.get(EXIT_ON_STDIN_CLOSE, "")
    if stdin_close not in ("", "0", "1"):
        raise EnvError(EXIT_ON_STDIN_CLOSE, f"{stdin_close!r} must be 1 (exit when stdin closes) or 0")
    level_text = environ.get(LOG_LEVEL, "WARN")
    try:
        level = LogLevel.parse(level_text)
    except ValueError:
        raise EnvError(LOG_LEVEL, f"{level_text!r} must be one of NONE ERROR WARN INFO DEBUG") from None
    v4, v6 = _get(environ, BIND_V4), _get(environ, BIND_V6)
    return {
        "state_dir": cwd / state,
        "exit_on_stdin_close": stdin_close == "1",
        "log_level": level,
        "pt_version": VERSION,
        "mode": Mode.SOCKS5,
        "outbound_bind_v4": _bind_address(BIND_V4, v4, 4) if v4 else None,
        "outbound_bind_v6": _bind_address(BIND_V6, v6, 6) if v6 else None,
        "log_addresses": _flag(environ, LOG_ADDRESSES),
        **extension_settings(
            _get(environ, EXTENSIONS[0]), _get(environ, EXTENSIONS[1]), _get(environ, EXTENSIONS[2]), EXTENSIONS
        ),
    }


def _flag(environ: Mapping[str, str], variable: str) -> bool:
    """One of our boolean variables: unset or empty is false."""
    text = environ.get(variable, "")
    value = parse_bool(text) if text else False
    if value is None:
        raise EnvError(variable, f"{text!r} must be {WORDS}")
    return value


def _client(environ: Mapping[str, str]) -> dict[str, object]:
    transports, repeated = _transport_list(CLIENT_TRANSPORTS, environ[CLIENT_TRANSPORTS])
    out: dict[str, object] = {"role": Role.CLIENT, "transports": transports, "repeated_transports": repeated}
    proxy = _get(environ, PROXY)
    if proxy is not None:
        try:
            out["proxy"] = UpstreamProxy.parse(proxy)
        except ConfigError as exc:
            raise ProxyConfigError(str(exc)) from None
    return out


def _server(environ: Mapping[str, str], cwd: Path) -> dict[str, object]:
    transports, repeated = _transport_list(SERVER_TRANSPORTS, environ[SERVER_TRANSPORTS])
    options_text = environ.get(SERVER_OPTIONS, "")
    try:
        options = parse_server_transport_options(options_text)
    except ValueError as exc:
        raise EnvError(SERVER_OPTIONS, str(exc)) from None
    out: dict[str, object] = {
        "role": Role.SERVER,
        "transports": transports,
        "repeated_transports": repeated,
        "per_transport_options": options,
        "bind": _server_bind(environ.get(BINDADDR), transports),
    }
    orport, extended = _get(environ, ORPORT), _get(environ, EXTENDED_PORT)
    if orport is not None:
        out["target"] = _ip_port(ORPORT, orport)
    if extended is not None:
        out["extorport"] = _ip_port(EXTENDED_PORT, extended)
        cookie = _get(environ, AUTH_COOKIE)
        if cookie is None:
            raise EnvError(AUTH_COOKIE, f"not set, but {EXTENDED_PORT} is; the ExtORPort needs tor's cookie file")
        out["authcookie"] = cwd / cookie
    if orport is None and extended is None:
        raise EnvError(ORPORT, f"neither it nor {EXTENDED_PORT} is set; a server needs somewhere to forward to")
    return out


def build_config(environ: Mapping[str, str], *, cwd: Path | None = None) -> Config:
    """Validate the TOR_PT_* variables (raises ``EnvError``, or ``ProxyConfigError`` for TOR_PT_PROXY)."""
    base = cwd or Path(os.getcwd())
    common = _common(environ, base)
    is_client, is_server = CLIENT_TRANSPORTS in environ, SERVER_TRANSPORTS in environ
    if is_client and is_server:
        raise EnvError(CLIENT_TRANSPORTS, f"set together with {SERVER_TRANSPORTS}; a PT is a client or a server")
    if is_client:
        role = _client(environ)
    elif is_server:
        role = _server(environ, base)
    else:
        raise EnvError(CLIENT_TRANSPORTS, f"neither it nor {SERVER_TRANSPORTS} is set")
    return Config(**common, **role)  # type: ignore[arg-type]


def main(environ: Mapping[str, str], run: RunLoop, *, stdout: TextIO, stderr: TextIO) -> int:
    """Run as tor's managed proxy; ``run`` drives the app coroutine (asyncio or uvloop)."""
    reporter = Reporter(out=stdout, err=stderr, pt_version=VERSION)
    if negotiate_version(environ.get(VER)) is None:
        reporter.error("VERSION-ERROR", "no-version")
        return ExitCode.CONFIG
    reporter.line("VERSION", VERSION)

    def announce() -> None:  # tor records the implementation and version
        reporter.line("STATUS", "TYPE=version", "IMPLEMENTATION=ptdispatch", f"VERSION={__version__}")

    return launch(
        reporter, lambda: build_config(environ), run, cookie_source=AUTH_COOKIE, state_source=STATE, announce=announce
    )
