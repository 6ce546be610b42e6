"""The README's examples work as written: the Python API example runs (with a temporary state directory),
the command lines parse, and the torrc lines name the path the systemd unit uses."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from ptdispatch.ipc.flags import build_config, tokenize

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_api_example(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README lost its Python example"
    code = blocks[0].replace("/tmp/obfs4-state", str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b'hello'"
    assert out.stderr == ""


def _commands() -> list[list[str]]:
    """Every ``ptdispatch ...`` command in the README's sh blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        pending = ""  # a command whose quoted argument goes on over more lines
        for line in block.replace("\\\n", " ").splitlines():
            if not pending and not line.startswith("ptdispatch "):
                continue
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending)
            except ValueError:  # no closing quotation yet
                continue
            commands.append(words[1:])
            pending = ""
        assert not pending, f"unterminated command in the README: {pending!r}"
    return commands


def test_readme_commands_are_valid(tmp_path: Path) -> None:
    """The flags of every example command parse and validate as written."""
    commands = _commands()
    assert len(commands) >= 5
    for argv in commands:
        flags, problem = tokenize(argv)
        assert problem is None, argv
        build_config(flags, cwd=tmp_path)


def test_readme_torrc_and_unit_use_the_same_installed_path() -> None:
    text = README.read_text()
    unit = (README.parent / "contrib" / "ptdispatch-server.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(\S+)", unit, flags=re.M)
    assert f"ServerTransportPlugin obfs4 exec {exec_start}\n" in text
    assert f"ClientTransportPlugin obfs4 exec {exec_start}\n" in text
