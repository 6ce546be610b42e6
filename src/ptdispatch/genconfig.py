"""``ptdispatch -generateConfig -transport shadow|Starbridge|Replicant -serverIP IP:PORT [-state DIR]``.

The reference dispatcher's spelling (``-toneburst`` and ``-polish`` are accepted and change
nothing: Replicant always gets both).  Writes a matching server and client JSON config pair with a
fresh server key into DIR (default: the current directory), under Operator's file names
(``ShadowServerConfig.json``/``ShadowClientConfig.json``, ``Starbridge...``, ``Replicant...``),
and says where on stderr (stdout is kept for protocol lines).  Keys are in the canonical Keychain
base64 (66-byte public, 33-byte private; the server key compact-representable).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .exitcode import ExitCode
from .net.addr import parse_hostport
from .transports.darkstar.keys import encode_private, encode_public, generate_compact

TRANSPORTS = {"shadow": "Shadow", "starbridge": "Starbridge", "replicant": "Replicant"}
USAGE = "usage: ptdispatch -generateConfig -transport shadow|Starbridge|Replicant -serverIP IP:PORT [-state DIR]\n"

Config = dict[str, object]


def _flags(argv: Sequence[str]) -> dict[str, str]:
    """``-name value`` / ``-name=value`` pairs; booleans (generateConfig, toneburst, polish) as "1"."""
    flags: dict[str, str] = {}
    items = list(argv)
    while items:
        token = items.pop(0)
        if not token.startswith("-"):
            raise ValueError(f"unexpected argument {token!r}")
        name, eq, value = token.lstrip("-").partition("=")
        key = name.lower()
        if key in ("generateconfig", "toneburst", "polish"):
            flags[key] = "1"
        elif key in ("transport", "serverip", "state"):
            if not eq:
                if not items:
                    raise ValueError(f"-{name} needs a value")
                value = items.pop(0)
            flags[key] = value
        else:
            raise ValueError(f"unknown flag -{name} with -generateConfig")
    return flags


def config_pair(transport: str, server_address: str) -> tuple[Config, Config]:
    """(server, client) configs for ``transport`` (lower-case key of TRANSPORTS)."""
    key = generate_compact()
    private, public = encode_private(key), encode_public(key.public_key())
    if transport == "shadow":
        common: Config = {"serverAddress": server_address, "cipherName": "darkstar", "transport": "shadow"}
        return {**common, "serverPrivateKey": private, "bindAddress": None}, {**common, "serverPublicKey": public}
    if transport == "starbridge":
        common = {"serverAddress": server_address, "transport": "Starbridge"}
        return {**common, "serverPrivateKey": private, "bindAddress": None}, {**common, "serverPublicKey": public}
    server: Config = {
        "serverAddress": server_address,
        "toneburst": {"type": "starburst", "mode": "SMTPServer"},
        "polish": {"serverAddress": server_address, "serverPrivateKey": private},
        "transport": "Replicant",
        "bindAddress": None,
    }
    client: Config = {
        "serverAddress": server_address,
        "toneburst": {"type": "starburst", "mode": "SMTPClient"},
        "polish": {"serverAddress": server_address, "serverPublicKey": public},
        "transport": "Replicant",
    }
    return server, client


def _write(path: Path, config: Config, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: Sequence[str], err: TextIO | None = None) -> int:
    err = err if err is not None else sys.stderr
    try:
        flags = _flags(argv)
        transport = flags.get("transport", "").lower()
        if transport not in TRANSPORTS:
            raise ValueError(f"-transport must be one of shadow, Starbridge, Replicant, not {transport!r}")
        address = parse_hostport(flags.get("serverip", ""), require_ip=True, allow_zero_port=False)
        if ":" in address.host:
            raise ValueError("-serverIP must be an IPv4 address (the DarkStar server identifier is IPv4)")
    except ValueError as exc:
        err.write(f"ptdispatch -generateConfig: {exc}\n{USAGE}")
        return ExitCode.USAGE
    server, client = config_pair(transport, str(address))
    directory = Path(flags.get("state", "."))
    prefix = TRANSPORTS[transport]
    paths = directory / f"{prefix}ServerConfig.json", directory / f"{prefix}ClientConfig.json"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(paths[0], server, 0o600)
        _write(paths[1], client, 0o644)
    except OSError as exc:
        err.write(f"ptdispatch -generateConfig: cannot write to {directory}: {exc.strerror or exc}\n")
        return ExitCode.CANTCREAT
    err.write(f"wrote the server config to {paths[0]} and the client config to {paths[1]}\n")
    return ExitCode.OK


def wanted(argv: Sequence[str]) -> bool:
    """Whether the command line asks for config generation."""
    return any(a.lstrip("-").partition("=")[0].lower() == "generateconfig" for a in argv if a.startswith("-"))
