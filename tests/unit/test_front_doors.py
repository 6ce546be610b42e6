"""The IPC front doors: imports point downward only, one exit-code enum, one escaping module, one
boolean vocabulary, and a Reporter that writes only to the streams it was given."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pytest

from ptdispatch import cli
from ptdispatch.boolean import FALSE, TRUE, parse_bool
from ptdispatch.config import LogLevel
from ptdispatch.errors import OptionsError
from ptdispatch.exitcode import ExitCode
from ptdispatch.ipc import env
from ptdispatch.ipc.args import escape, split_escaped, unescape
from ptdispatch.ipc.flags import tokenize
from ptdispatch.ipc.reporter import Reporter
from ptdispatch.udp.options import UdpOptions

SRC = Path(cli.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """The ptdispatch modules ``path`` imports (relative imports resolved), at any depth in the file."""
    package = ".".join(("ptdispatch", *path.relative_to(SRC).parent.parts))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("ptdispatch")}


def test_only_the_entry_point_imports_cli() -> None:
    importers = [
        p.relative_to(SRC)
        for p in SRC.rglob("*.py")
        if p.name not in ("__main__.py", "cli.py") and "ptdispatch.cli" in _imports(p)
    ]
    assert importers == []


@pytest.mark.parametrize("module", ["launch.py", "app.py", "ipc/reporter.py", "ipc/args.py", "exitcode.py"])
def test_shared_start_up_imports_neither_front_door(module: str) -> None:
    imported = _imports(SRC / module)
    assert not imported & {"ptdispatch.cli", "ptdispatch.ipc.env", "ptdispatch.ipc.flags"}


def test_the_front_doors_do_not_import_each_other() -> None:
    assert "ptdispatch.ipc.flags" not in _imports(SRC / "ipc" / "env.py")
    assert "ptdispatch.ipc.env" not in _imports(SRC / "ipc" / "flags.py")


def test_importing_the_pt1_door_alone_works() -> None:
    code = "import sys, ptdispatch.ipc.env; assert 'ptdispatch.cli' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_exit_codes() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 64, 69, 73, 78]
    assert all(code.meaning for code in ExitCode)


def test_no_bare_exit_code_literals() -> None:
    """Exit codes are returned as ExitCode members, never as bare numbers."""
    offenders = []
    for path in (
        SRC / name for name in ("cli.py", "launch.py", "app.py", "genconfig.py", "ipc/env.py", "ipc/flags.py")
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
                value = node.value.value
                if type(value) is int and value in set(ExitCode):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_one_escaping_module() -> None:
    assert escape('say "a\\b"', '"') == 'say \\"a\\\\b\\"'
    assert unescape(escape("a=b;c\\d", "=;")) == "a=b;c\\d"
    assert list(split_escaped(r"a\;b;c", ";")) == [r"a\;b", "c"]
    with pytest.raises(ValueError, match="lone backslash"):
        unescape("a\\")
    for path in SRC.rglob("*.py"):  # nobody else writes the escaping by hand
        if path.name != "args.py":
            assert 'replace("\\\\", "\\\\\\\\")' not in path.read_text(), path


def test_pt1_log_lines_use_it() -> None:
    out = io.StringIO()
    reporter = Reporter(out=out, err=io.StringIO(), level=LogLevel.INFO, pt_version="1")
    reporter.log(LogLevel.INFO, 'a "quoted" \\ word')
    assert out.getvalue() == 'LOG SEVERITY=info MESSAGE="a \\"quoted\\" \\\\ word"\n'


@pytest.mark.parametrize("word", [*TRUE, *FALSE, "TRUE", "No", "maybe", "2", ""])
def test_one_boolean_vocabulary(word: str) -> None:
    """Flags, UDP options and our environment variables accept the same words."""
    expected = parse_bool(word)
    flags, problem = tokenize([f"-unsafeLogging={word}"])
    assert (problem is None) is (expected is not None)
    if expected is not None:
        assert flags["unsafeLogging"] == ("1" if expected else "0")
        assert UdpOptions.parse({"udpStunClassic": word}, "plain").stun_classic is expected
    else:
        with pytest.raises(OptionsError, match="udpStunClassic"):
            UdpOptions.parse({"udpStunClassic": word}, "plain")


def test_log_addresses_variable_uses_the_vocabulary(tmp_path: Path) -> None:
    base = {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": str(tmp_path),
        "TOR_PT_CLIENT_TRANSPORTS": "plain",
    }
    assert env.build_config({**base, "PTDISPATCH_LOG_ADDRESSES": "yes"}).log_addresses is True
    assert env.build_config({**base, "PTDISPATCH_LOG_ADDRESSES": "0"}).log_addresses is False
    with pytest.raises(env.EnvError, match="PTDISPATCH_LOG_ADDRESSES"):
        env.build_config({**base, "PTDISPATCH_LOG_ADDRESSES": "maybe"})


def test_reporter_writes_only_to_its_streams(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["-transport", "plain", "-nosuchflag"], {}, stdout=out, stderr=err)
    assert code == ExitCode.USAGE
    assert out.getvalue() == "VERSION 3.0\n"
    assert err.getvalue().startswith("ENV-ERROR unknown flag -nosuchflag")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("pt_version", ["3.0", "1"])
def test_notes_for_people_go_to_stderr_in_both_dialects(pt_version: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    Reporter(out=out, err=err, pt_version=pt_version).note("ignoring unknown transport 'x'; known: plain")
    assert (out.getvalue(), err.getvalue()) == ("", "ptdispatch: ignoring unknown transport 'x'; known: plain\n")
