"""contrib/ptdispatch-server.service: hardened as documented, its ExecStart a valid server command,
accepted by systemd-analyze; LICENSE present and matching pyproject."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from ptdispatch.config import Role
from ptdispatch.ipc.flags import build_config, tokenize
from tests.conftest import need_binary

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "ptdispatch-server.service"


def _settings() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit (a key may repeat), comments and sections dropped."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_hardened() -> None:
    unit = _settings()
    for key, value in {
        "DynamicUser": "yes", "StateDirectory": "ptdispatch", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "RestrictNamespaces": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "UMask": "0077",
    }.items():  # fmt: skip
        assert unit.get(key) == [value], key
    assert "@system-service" in unit["SystemCallFilter"]


def test_exec_start_is_a_valid_server_command() -> None:
    (command,) = _settings()["ExecStart"]
    argv = shlex.split(command)
    assert argv[0].endswith("/ptdispatch")
    flags, problem = tokenize(argv[1:])
    assert problem is None
    config = build_config(flags)
    assert config.role is Role.SERVER
    state_directory = _settings()["StateDirectory"][0]
    assert config.state_dir == Path("/var/lib") / state_directory  # the directory systemd creates for us


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze")
    command = str(Path(sys.executable).parent / "ptdispatch")
    unit = tmp_path / UNIT.name  # verify wants ExecStart's binary to exist: point it at ours
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/ptdispatch", command))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert exposure is not None, done.stdout + done.stderr
    assert float(exposure.group(1)) < 2.5  # systemd's scale: 0 (locked down) to 10 (UNSAFE)


def test_license_is_mit_as_pyproject_says() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 ptdispatch developers" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    assert importlib.metadata.metadata("ptdispatch")["License-Expression"] == "MIT"  # PEP 639, no deprecated table
