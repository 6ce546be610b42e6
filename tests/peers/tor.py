"""Run real tor (a bridge and a client, each with a pluggable transport) confined to a private netns.

tor reaches for the public network the moment it starts (fallback directories, default authorities).
Every tor here therefore runs inside a fresh network namespace holding nothing but loopback, and is
configured with nothing outside to reach (``UseDefaultFallbackDirs 0``, a ``DirAuthority`` on
127.0.0.1, ``ClientUseIPv6 0``).  Since nothing outside the namespace can reach its loopback, the
whole scenario runs in one driver process inside it: this file, run as a script under
``unshare --net``.  It refuses to start tor unless the only network interface it sees is ``lo``,
prints one JSON line with what happened, and stops every tor it started, by PID.

Tests call :func:`run_confined` (outside the namespace) and assert on the returned dict.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PTDISPATCH = str(Path(sys.executable).parent / "ptdispatch")
# Ports inside the private namespace: nothing else lives there, so fixed numbers cannot collide.
BRIDGE_OR_PORT, BRIDGE_PT_PORT, CLIENT_SOCKS_PORT = 5000, 5001, 9050
# A directory authority that does not exist (on loopback), so tor never uses its built-in ones.
FAKE_AUTHORITY = "DirAuthority nowhere orport=7001 no-v2 v3ident=" + "AB" * 20 + " 127.0.0.1:7000 " + "CD" * 20
CONFINEMENT = (
    "UseDefaultFallbackDirs 0",
    FAKE_AUTHORITY,
    "ClientUseIPv6 0",
    "ClientPreferIPv6ORPort 0",
)
DESCRIPTOR_LOG = "new bridge descriptor"
#: Lines after which waiting longer is pointless (a plugin failed to start a method, or tor gave up).
GIVE_UP = ("encountered a method error", "didn't launch any pluggable transport listeners", "[err]")


@dataclass(frozen=True)
class Scenario:
    """One bridge + one client.  ``*_plugin`` is the PT executable on that side."""

    transport: str
    bridge_plugin: str
    client_plugin: str
    timeout: float = 90.0
    #: LOG level for ptdispatch (tor passes its environment to the plugins it starts).
    ipc_log_level: str = "INFO"
    #: The client side's name for the transport when it differs (meek: the bridge runs ``meek``,
    #: the client ``meek_lite``), and the arguments of its Bridge line (``url=...``).
    client_transport: str = ""
    bridge_args: str = ""


# --- outside the namespace -------------------------------------------------------------------------
def confinement_prefix() -> list[str] | None:
    """The ``unshare`` command line that gives a private network namespace here, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ([unshare, "--net"], [unshare, "--net", "--map-root-user"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
            if probe.returncode == 0:
                return prefix
    return None


def run_confined(scenario: Scenario, prefix: Sequence[str]) -> dict[str, Any]:
    """Run ``scenario`` in a new network namespace; returns the driver's JSON report."""
    root = Path(__file__).resolve().parents[2]
    command = [*prefix, sys.executable, str(Path(__file__).resolve()), json.dumps(asdict(scenario))]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=scenario.timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()  # the driver's own PID (unshare execs it); its tors exit with it (OwningControllerProcess)
        out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"tor driver failed (exit {proc.returncode}): {err[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["driver_stderr"] = err[-4000:]
    return result


# --- inside the namespace --------------------------------------------------------------------------
def _interfaces() -> list[str]:
    """The interfaces of this process's network namespace (not /sys/class/net: that is sysfs's)."""
    return sorted(name for _, name in socket.if_nameindex())


def _loopback_up() -> None:
    """``ip link set lo up`` by ioctl (SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def check_confined() -> None:
    """Refuse to go on unless this process sees a network with loopback only."""
    names = _interfaces()
    if names != ["lo"]:
        raise SystemExit(f"refusing to start tor: network interfaces {names} (only 'lo' is allowed)")
    _loopback_up()


def _torrc(data_dir: Path, lines: Sequence[str]) -> Path:
    common = (
        f"DataDirectory {data_dir}",
        f"Log notice file {data_dir / 'notice.log'}",
        f"Log info file {data_dir / 'info.log'}",
        f"__OwningControllerProcess {os.getpid()}",
        "ShutdownWaitLength 0",
        "SafeLogging 0",
        "AvoidDiskWrites 1",
        *CONFINEMENT,
    )
    path = data_dir / "torrc"
    path.write_text("\n".join((*common, *lines)) + "\n")
    return path


def _start_tor(torrc: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["tor", "-f", str(torrc), "--defaults-torrc", os.devnull],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _wait_for(predicate: Any, deadline: float, procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> bool:
    """Poll ``predicate`` until it holds, a tor exits, a log shows a GIVE_UP line, or ``deadline``."""
    while time.monotonic() < deadline:
        if predicate():
            return True
        if any(p.poll() is not None for p in procs) or any(g in _read(log) for log in logs for g in GIVE_UP):
            return bool(predicate())
        time.sleep(0.25)
    return False


def _bridge_line(scenario: Scenario, state_dir: Path, fingerprint: str) -> str | None:
    transport = scenario.transport
    address = f"127.0.0.1:{BRIDGE_PT_PORT}"
    if scenario.client_transport:  # meek_lite: the address is not used, the url is
        return f"Bridge {scenario.client_transport} 127.0.0.2:1 {fingerprint} {scenario.bridge_args}".rstrip()
    if transport != "obfs4":
        return f"Bridge {transport} {address} {fingerprint}"
    for line in _read(state_dir / "obfs4_bridgeline.txt").splitlines():
        if line.startswith("Bridge obfs4 "):  # "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=..." (obfs4proxy)
            _, _, args = line.partition(" <FINGERPRINT> ")  # ours fills in the port (and a non-wildcard address)
            return f"Bridge obfs4 {address} {fingerprint} {args}"
    return None


def _bridge_torrc(data_dir: Path, scenario: Scenario) -> Path:
    return _torrc(
        data_dir,
        (
            "Nickname ptdispatchtest",
            "SocksPort 0",
            f"ORPort 127.0.0.1:{BRIDGE_OR_PORT}",
            "Address 127.0.0.1",
            "ExtORPort auto",
            f"Log [net,or,general,acct]debug file {data_dir / 'debug.log'}",
            "BridgeRelay 1",
            "PublishServerDescriptor 0",
            "AssumeReachable 1",
            "ExitRelay 0",
            "ExitPolicy reject *:*",
            f"ServerTransportPlugin {scenario.transport} exec {scenario.bridge_plugin}",
            f"ServerTransportListenAddr {scenario.transport} 127.0.0.1:{BRIDGE_PT_PORT}",
        ),
    )


def _client_torrc(data_dir: Path, scenario: Scenario, bridge: str) -> Path:
    return _torrc(
        data_dir,
        (
            f"SocksPort 127.0.0.1:{CLIENT_SOCKS_PORT}",
            "UseBridges 1",
            bridge,
            f"ClientTransportPlugin {scenario.client_transport or scenario.transport} exec {scenario.client_plugin}",
        ),
    )


@contextlib.contextmanager
def _tors() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            _stop(proc)


def _interesting(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in needles)][-60:]


def drive(scenario: Scenario, work: Path) -> dict[str, Any]:
    """The whole scenario, inside the namespace."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "PTDISPATCH_IPC_LOG_LEVEL": scenario.ipc_log_level,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    bridge_dir, client_dir = work / "bridge", work / "client"
    bridge_dir.mkdir(mode=0o700)
    client_dir.mkdir(mode=0o700)
    result: dict[str, Any] = {"interfaces": _interfaces(), "scenario": asdict(scenario)}
    start = time.monotonic()
    deadline = start + scenario.timeout
    with _tors() as procs:
        procs.append(_start_tor(_bridge_torrc(bridge_dir, scenario), env))
        state_dir = bridge_dir / "pt_state"
        fingerprint_file = bridge_dir / "fingerprint"

        def bridge_ready() -> bool:
            registered = f"Registered server transport '{scenario.transport}'" in _read(bridge_dir / "notice.log")
            return registered and fingerprint_file.exists()

        logs = [bridge_dir / "notice.log", client_dir / "notice.log"]
        result["bridge_ready"] = _wait_for(bridge_ready, deadline, procs, logs)
        fingerprint = _read(fingerprint_file).split()[-1] if fingerprint_file.exists() else ""
        bridge = _bridge_line(scenario, state_dir, fingerprint) if result["bridge_ready"] else None
        result["bridge_line"] = bridge
        result["bridge_seconds"] = round(time.monotonic() - start, 1)
        if bridge is not None:
            procs.append(_start_tor(_client_torrc(client_dir, scenario, bridge), env))
            result["descriptor"] = _wait_for(
                lambda: DESCRIPTOR_LOG in _read(client_dir / "notice.log"), deadline, procs, logs
            )
        result["seconds"] = round(time.monotonic() - start, 1)
        time.sleep(0.5)  # let the last log lines land
    bridge_info, client_info = _read(bridge_dir / "info.log"), _read(client_dir / "info.log")
    result["bridge_log"] = _interesting(bridge_info, "anaged proxy", "[warn]", "[err]")
    result["bridge_extorport"] = _interesting(_read(bridge_dir / "debug.log"), "USERADDR", "with transport", "ext_or")
    result["client_log"] = _interesting(client_info, "anaged proxy", "new bridge", "[warn]", "[err]")
    result["bridge_notice"] = _read(bridge_dir / "notice.log").splitlines()[-40:]
    result["client_notice"] = _read(client_dir / "notice.log").splitlines()[-40:]
    return result


def main(argv: Sequence[str]) -> int:
    scenario = Scenario(**json.loads(argv[0]))
    check_confined()
    with tempfile.TemporaryDirectory(prefix="ptdispatch-tor-") as tmp:
        result = drive(scenario, Path(tmp))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
