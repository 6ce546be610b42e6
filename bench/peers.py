"""Starting each side of a proxy pair: ptdispatch (PT 3.0 flags), obfs4proxy (PT 1.0 managed), ss-libev, socat."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .procs import Proc, free_port, start, wait_listening

SS_PASSWORD = "bench-password"
SS_CIPHER = "chacha20-ietf-poly1305"
PTD = [sys.executable, "-m", "ptdispatch"]


@dataclass
class Side:
    """One started proxy process and where it listens; ``args`` are a server's SMETHOD ARGS."""

    proc: Proc
    host: str
    port: int
    args: dict[str, str]


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _smethod_args(words: list[str]) -> dict[str, str]:
    extra = next((w for w in words[3:] if w.startswith("ARGS:")), "")
    out: dict[str, str] = {}
    for item in extra.removeprefix("ARGS:").split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            out[key] = value.replace("\\", "")
    return out


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT_")}
    env["PTDISPATCH_SHUTDOWN_GRACE"] = "0.5"
    env.update(extra or {})
    return env


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


def target(workdir: Path) -> Side:
    proc = start("target", [sys.executable, str(Path(__file__).with_name("target.py"))], workdir, env=_env())
    line = proc.wait_line("PORT ")[0]
    return Side(proc, "127.0.0.1", int(line.split()[1]), {})


# --- ptdispatch ----------------------------------------------------------------------------------


def ptd_server(
    transport: str,
    target_port: int,
    workdir: Path,
    options: dict[str, str] | None = None,
    *,
    extra: Sequence[str] = (),
    program: Sequence[str] = (),
    env: dict[str, str] | None = None,
    state: Path | None = None,
    name: str = "",
    timeout: float = 20.0,
) -> Side:
    """``ptdispatch -server`` (``program``: the command if not ``PTD``, under a profiler for
    instance) with ``extra`` flags and ``env`` added to the benchmark's environment."""
    state = state or workdir / f"ptd-{transport}-server-state"
    argv = [*(program or PTD), "-server", "-transport", transport, "-bindaddr", f"{transport}-127.0.0.1:0"]
    argv += ["-target", f"127.0.0.1:{target_port}", "-state", str(state)]
    if options:
        argv += ["-options", json.dumps(options)]
    proc = start(name or f"ptd-{transport}-server", [*argv, *extra], workdir, env=_env(env))
    words = proc.wait_line("SMETHOD ", timeout=timeout, done="SMETHODS DONE")[0].split(" ")
    host, port = _hostport(words[2])
    return Side(proc, host, port, _smethod_args(words))


def ptd_client(transport: str, mode: str, options: dict[str, str], workdir: Path) -> Side:
    argv = [*PTD, "-client", "-transport", transport, "-mode", mode, "-options", json.dumps(options)]
    argv += ["-state", str(workdir / f"ptd-{transport}-client-state")]
    proc = start(f"ptd-{transport}-client", argv, workdir, env=_env())
    words = proc.wait_line("CMETHOD ", done="CMETHODS DONE")[0].split(" ")
    host, port = _hostport(words[3])
    return Side(proc, host, port, {})


# --- obfs4proxy (Tor PT 1.0 managed proxy) -------------------------------------------------------


def _managed_env(workdir: Path, name: str, extra: dict[str, str]) -> dict[str, str]:
    state = workdir / f"{name}-state"
    state.mkdir(parents=True, exist_ok=True)
    return _env(
        {
            "TOR_PT_MANAGED_TRANSPORT_VER": "1",
            "TOR_PT_STATE_LOCATION": str(state),
            "TOR_PT_EXIT_ON_STDIN_CLOSE": "1",
            **extra,
        }
    )


def o4p_server(transport: str, target_port: int, workdir: Path) -> Side:
    name = f"o4p-{transport}-server"
    env = _managed_env(
        workdir,
        name,
        {
            "TOR_PT_SERVER_TRANSPORTS": transport,
            "TOR_PT_SERVER_BINDADDR": f"{transport}-127.0.0.1:{free_port()}",
            "TOR_PT_ORPORT": f"127.0.0.1:{target_port}",
        },
    )
    proc = start(name, ["obfs4proxy"], workdir, env=env, stdin_pipe=True)
    words = proc.wait_line("SMETHOD ", done="SMETHODS DONE")[0].split(" ")
    host, port = _hostport(words[2])
    return Side(proc, host, port, _smethod_args(words))


def o4p_client(transport: str, workdir: Path) -> Side:
    name = f"o4p-{transport}-client"
    env = _managed_env(workdir, name, {"TOR_PT_CLIENT_TRANSPORTS": transport})
    proc = start(name, ["obfs4proxy"], workdir, env=env, stdin_pipe=True)
    words = proc.wait_line("CMETHOD ", done="CMETHODS DONE")[0].split(" ")
    host, port = _hostport(words[3])
    return Side(proc, host, port, {})


# --- shadowsocks-libev ---------------------------------------------------------------------------


def _ss_common() -> list[str]:
    return ["-k", SS_PASSWORD, "-m", SS_CIPHER, "-n", "65535"]


def ss_server(workdir: Path, program: Sequence[str] = ("ss-server",), timeout: float = 15.0) -> Side:
    port = free_port()
    proc = start("ss-server", [*program, "-s", "127.0.0.1", "-p", str(port), *_ss_common()], workdir)
    wait_listening(port, proc, timeout=timeout)
    return Side(proc, "127.0.0.1", port, {})


def ss_local(server_port: int, workdir: Path) -> Side:
    port = free_port()
    argv = ["ss-local", "-s", "127.0.0.1", "-p", str(server_port), "-b", "127.0.0.1", "-l", str(port)]
    proc = start("ss-local", [*argv, *_ss_common()], workdir)
    wait_listening(port, proc)
    return Side(proc, "127.0.0.1", port, {})


# --- the Python floor (bench/floor.py) -----------------------------------------------------------


def floor(role: str, port: int, workdir: Path, prefix: Sequence[str] = (), timeout: float = 20.0) -> Side:
    """A minimal uvloop relay: ``client`` (SOCKS5 in, to ``port``) or ``server`` (to ``port``)."""
    argv = [*prefix, sys.executable, str(Path(__file__).with_name("floor.py")), role, str(port)]
    proc = start(f"floor-{role}", argv, workdir)
    line = proc.wait_line("PORT ", timeout=timeout)[0]
    return Side(proc, "127.0.0.1", int(line.split()[1]), {})


# --- socat ---------------------------------------------------------------------------------------


def socat(name: str, to_port: int, workdir: Path, buffer: int | None) -> Side:
    port = free_port()
    argv = ["socat", *(["-b", str(buffer)] if buffer else [])]
    argv += [f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=4096", f"TCP:127.0.0.1:{to_port}"]
    proc = start(name, argv, workdir)
    wait_listening(port, proc)
    return Side(proc, "127.0.0.1", port, {})
