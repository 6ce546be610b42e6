"""PT 3.0 command-line flags (section 1.1) -> :class:`~ptdispatch.config.Config`.

Parsing happens in two steps, because the spec orders the output: first the flags are split
into name/value pairs (:func:`tokenize`) so that ``-ptversion`` can be negotiated and
``VERSION`` printed; only then is everything else validated (:func:`build_config`), each
problem becoming one ``ENV-ERROR`` (or ``PROXY-ERROR`` for ``-proxy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..boolean import FALSE, TRUE, parse_bool
from ..config import Config, LogLevel, Mode, Role, first_of_each
from ..errors import ConfigError, ProxyConfigError
from ..net.addr import Address, parse_hostport, parse_port
from ..net.upstream import UpstreamProxy
from ..scaling import extension_settings
from ..transports import registry

SUPPORTED_VERSIONS = ("3.0",)

VALUE_FLAGS = (
    "ptversion", "state", "ipcLogLevel", "transport", "transports", "options", "optionsFile", "mode",
    "proxylistenaddr", "proxylistenhost", "proxylistenport", "proxy", "bindaddr", "bindhost", "bindport",
    "target", "targethost", "targetport", "extorport", "authcookie", "workers", "metrics", "replayStore",
)  # fmt: skip
BOOL_FLAGS = ("client", "server", "exit-on-stdin-close", "unsafeLogging")
"""``-unsafeLogging`` is ours (as obfs4proxy's): client addresses appear in LOG lines unscrubbed.
``-workers``, ``-metrics`` and ``-replayStore`` are ours too (:mod:`ptdispatch.scaling`)."""
_CANONICAL = {name.lower(): name for name in (*VALUE_FLAGS, *BOOL_FLAGS)}
__all__ = ["ProxyConfigError", "build_config", "load_options", "negotiate_version", "split_options", "tokenize"]


def tokenize(argv: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Split ``argv`` into canonical flag names and values (booleans as "1"/"0").

    Returns the flags read and the first problem met (or None); reading stops at a problem.
    """
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("-") or token in ("-", "--"):
            return flags, f"unexpected argument {token!r}: every setting is a flag such as -transport obfs4"
        body = token[2:] if token.startswith("--") else token[1:]
        name, eq, inline = body.partition("=")
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            return flags, f"unknown flag -{name}; see the PT 3.0 dispatcher spec, section 1.1, for the flags"
        if canonical in flags:
            return flags, f"flag -{canonical} is given more than once"
        if canonical in BOOL_FLAGS:
            value = inline if eq else "1"
            if not eq and canonical == "exit-on-stdin-close" and i < len(argv) and argv[i].lower() in TRUE + FALSE:
                value = argv[i]
                i += 1
            parsed = parse_bool(value)
            if parsed is None:
                return flags, f"flag -{canonical} takes 1 or 0, not {value!r}"
            flags[canonical] = "1" if parsed else "0"
            continue
        if eq:
            flags[canonical] = inline
        elif i < len(argv):
            flags[canonical] = argv[i]
            i += 1
        else:
            return flags, f"flag -{canonical} needs a value"
    return flags, None


def negotiate_version(flags: Mapping[str, str]) -> str | None:
    """The version to speak, or None when -ptversion lists none we support."""
    offered = flags.get("ptversion")
    if offered is None:
        return SUPPORTED_VERSIONS[0]
    versions = offered.split(",")
    for version in versions:
        if not version or any(c.isspace() or not c.isprintable() or not c.isascii() for c in version):
            return None  # not a well-formed list
    for version in SUPPORTED_VERSIONS:
        if version in versions:
            return version
    return None


def _address(text: str, flag: str, *, require_ip: bool) -> Address:
    try:
        return parse_hostport(text, require_ip=require_ip)
    except ValueError as exc:
        raise ConfigError(f"-{flag}: {exc}") from None


def _host_port(flags: Mapping[str, str], combined: str, host: str, port: str, *, require_ip: bool) -> Address | None:
    """One address from either ``-combined`` or ``-host`` + ``-port``."""
    if combined in flags:
        if host in flags or port in flags:
            raise ConfigError(f"use either -{combined} or -{host} with -{port}, not both")
        return _address(flags[combined], combined, require_ip=require_ip)
    if host in flags and port not in flags:
        raise ConfigError(f"-{host} needs -{port} as well")
    if port in flags and host not in flags:
        raise ConfigError(f"-{port} needs -{host} as well")
    if host not in flags:
        return None
    h = flags[host].strip("[]")
    if require_ip:
        _address(f"[{h}]:0" if ":" in h else f"{h}:0", host, require_ip=True)
    try:
        return Address(h, parse_port(flags[port], what=f"-{port}"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _transports(flags: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of -transport or -transports, each once, and the repeats left out."""
    if "transport" in flags and "transports" in flags:
        raise ConfigError("use either -transport or -transports, not both")
    if "transport" not in flags and "transports" not in flags:
        raise ConfigError("no transport given: add -transport NAME or -transports NAME,NAME")
    names = [n.strip() for n in flags.get("transport", flags.get("transports", "")).split(",")]
    if not all(names):
        raise ConfigError("-transports has an empty name; write names separated by commas, as obfs4,shadow")
    return first_of_each(names)


def load_options(flags: Mapping[str, str]) -> dict[str, object]:
    """The -options / -optionsFile JSON object."""
    if "options" in flags and "optionsFile" in flags:
        raise ConfigError("use either -options or -optionsFile, not both")
    if "optionsFile" in flags:
        path = flags["optionsFile"]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"-optionsFile {path!r} cannot be read: {exc}") from None
        source = f"-optionsFile {path!r}"
    elif "options" in flags:
        text, source = flags["options"], "-options"
    else:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # numbers too long for int(); nesting too deep
        raise ConfigError(f"{source} is not usable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def split_options(
    options: Mapping[str, object], transports: Sequence[str]
) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    """Keyed form ``{"obfs4": {...}, ...}`` -> (per transport, {}); flat form -> ({}, common).

    The rule: a key that names a transport (one of -transports, or any we know) and holds a JSON
    object makes the whole object keyed; then every key must be such a transport.  A mix of the
    two forms is refused (read as flat, it would silently ignore the transport's own object).
    """
    known = {n.lower() for n in registry.names()} | {t.lower() for t in transports}
    keyed = [k for k, v in options.items() if k.lower() in known and isinstance(v, dict)]
    if not keyed:
        return {}, dict(options)
    flat = [k for k in options if k not in keyed]
    if flat:
        raise ConfigError(
            f"-options mixes the keyed form ({keyed[0]!r} holds an object) with flat keys ({flat[0]!r}): "
            f'write either {{"{keyed[0]}": {{...}}}} with every key inside a transport\'s object, or only flat keys'
        )
    return {k.lower(): dict(v) for k, v in options.items() if isinstance(v, dict)}, {}


def _bindaddr(text: str, transports: Sequence[str]) -> dict[str, Address]:
    bind: dict[str, Address] = {}
    for item in text.split(","):
        item = item.strip()
        for pos in (i for i, c in enumerate(item) if c == "-"):
            name, rest = item[:pos], item[pos + 1 :]
            try:
                address = parse_hostport(rest, require_ip=True)
            except ValueError:
                continue
            if name.lower() in bind:
                raise ConfigError(f"-bindaddr names {name!r} twice")
            bind[name.lower()] = address
            break
        else:
            raise ConfigError(f"-bindaddr entry {item!r} is not of the form name-IP:port, as obfs4-127.0.0.1:4444")
    return bind


def _server_bind(flags: Mapping[str, str], transports: Sequence[str]) -> dict[str, Address]:
    if "bindaddr" in flags:
        if "bindhost" in flags or "bindport" in flags:
            raise ConfigError("use either -bindaddr or -bindhost with -bindport, not both")
        return _bindaddr(flags["bindaddr"], transports)
    address = _host_port(flags, "bindaddr", "bindhost", "bindport", require_ip=True)
    if address is None:
        raise ConfigError("a server needs a bind address: -bindaddr name-IP:port or -bindhost IP -bindport PORT")
    if len(transports) != 1:
        raise ConfigError("-bindhost/-bindport serve a single -transport; for several, use -bindaddr")
    return {transports[0].lower(): address}


def build_config(flags: Mapping[str, str], *, cwd: Path | None = None) -> Config:
    """Validate every flag (raises ``ConfigError``, or ``ProxyConfigError`` for -proxy)."""
    if flags.get("client") == "1" and flags.get("server") == "1":
        raise ConfigError("use either -client or -server, not both")
    role = Role.SERVER if flags.get("server") == "1" else Role.CLIENT
    transports, repeated = _transports(flags)
    try:
        mode = Mode.parse(flags.get("mode", "socks5"))
        level = LogLevel.parse(flags.get("ipcLogLevel", "NONE"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    per, common = split_options(load_options(flags), transports)
    base = cwd or Path(os.getcwd())
    config: dict[str, object] = {
        "role": role,
        "transports": transports,
        "repeated_transports": repeated,
        "per_transport_options": per,
        "common_options": common,
        "mode": mode,
        "log_level": level,
        "state_dir": base / flags.get("state", "."),
        "exit_on_stdin_close": flags.get("exit-on-stdin-close") == "1",
        "log_addresses": flags.get("unsafeLogging") == "1",
    }
    names = ("-workers", "-metrics", "-replayStore")
    config.update(extension_settings(flags.get("workers"), flags.get("metrics"), flags.get("replayStore"), names))
    if role is Role.CLIENT:
        config["listen"] = _host_port(flags, "proxylistenaddr", "proxylistenhost", "proxylistenport", require_ip=True)
    else:
        config.update(_server_flags(flags, transports, base))
    if "proxy" in flags and role is Role.SERVER:
        raise ConfigError("-proxy is a client flag (it carries the client's outgoing connections); drop it here")
    if "proxy" in flags:
        try:
            config["proxy"] = UpstreamProxy.parse(flags["proxy"])
        except ConfigError as exc:
            raise ProxyConfigError(str(exc)) from None
    return Config(**config)  # type: ignore[arg-type]


def _server_flags(flags: Mapping[str, str], transports: Sequence[str], base: Path) -> dict[str, object]:
    out: dict[str, object] = {"bind": _server_bind(flags, transports)}
    out["target"] = _host_port(flags, "target", "targethost", "targetport", require_ip=False)
    if "extorport" in flags:
        out["extorport"] = _address(flags["extorport"], "extorport", require_ip=False)
        if "authcookie" not in flags:
            raise ConfigError("-extorport needs -authcookie, the path of tor's ExtORPort auth cookie file")
        out["authcookie"] = base / flags["authcookie"]
    elif "authcookie" in flags:
        raise ConfigError("-authcookie is only used with -extorport; add -extorport or drop -authcookie")
    if out["target"] is None and "extorport" not in flags:
        raise ConfigError("a server needs somewhere to forward to: -target IP:port, or -extorport with -authcookie")
    return out
