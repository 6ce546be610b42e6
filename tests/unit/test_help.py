"""``ptdispatch -h`` / ``-version`` and the man page: generated from the registry, the flag parser,
the modes and the exit codes, so they list whatever this build has."""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import ptdispatch
from ptdispatch import cli, helptext, manpage
from ptdispatch.config import Mode
from ptdispatch.exitcode import ExitCode
from ptdispatch.ipc import flags
from ptdispatch.transports import registry
from ptdispatch.transports.base import TransportSpec
from tests.conftest import need_binary
from tests.peers.dispatcher import run_once

ROOT = Path(__file__).resolve().parents[2]


def _help(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("flag", [*helptext.HELP_FLAGS])
def test_help_goes_to_stdout_with_exit_0(flag: str) -> None:
    code, out, err = _help("-transport", "plain", flag)
    assert (code, err) == (0, "")
    assert out == helptext.usage()
    assert "-client" in out and "the default" in out


def test_help_lists_every_registered_transport_with_its_keys() -> None:
    text = helptext.usage()
    for name in registry.names():
        assert f"\n  {name} " in text or f"\n  {name}\n" in text or f", {name}" in text, name
        spec = registry.lookup(name)
        assert spec is not None
        for keys in (spec.client_keys, spec.server_keys):
            for key in keys or ():
                assert key in text, (name, key)


def test_help_follows_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transport added to the registry (with its declared keys) appears without touching the help."""

    def client(raw: object) -> object:
        raise AssertionError

    fake = TransportSpec(
        "fake", client, client,  # type: ignore[arg-type]
        client_keys=frozenset({"alphaKey", "betaKey"}), server_keys=frozenset({"gammaKey"}),
    )  # fmt: skip
    real_names, real_lookup = registry.names, registry.lookup
    monkeypatch.setattr(registry, "names", lambda: [*real_names(), "fake", "Fake2"])
    monkeypatch.setattr(registry, "lookup", lambda n: fake if n.lower() in ("fake", "fake2") else real_lookup(n))
    text = helptext.usage()
    assert "  fake (also Fake2) client: alphaKey betaKey" in text
    assert "server: gammaKey" in text


def test_help_says_when_a_transport_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(name: str) -> TransportSpec | None:
        raise ImportError("no module named 'h2'")

    monkeypatch.setattr(registry, "names", lambda: ["broken"])
    monkeypatch.setattr(registry, "lookup", lookup)
    assert "  broken         unavailable here: no module named 'h2'" in helptext.usage()


def test_help_lists_every_flag_mode_and_exit_code() -> None:
    text = helptext.usage()
    for name in (*flags.VALUE_FLAGS, *flags.BOOL_FLAGS):
        assert f"-{name}" in text, name
    for mode in Mode:
        assert f"  {mode.value} " in text
    for code in ExitCode:
        assert f"  {int(code):<4} {code.meaning}" in text
    assert "README" in text


def test_a_flag_nobody_described_is_still_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flags, "VALUE_FLAGS", (*flags.VALUE_FLAGS, "brandNewFlag"))
    assert "Other flags:\n  -brandNewFlag" in helptext.usage()


@pytest.mark.parametrize("flag", helptext.VERSION_FLAGS)
def test_version_matches_the_package(flag: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ptdispatch.__version__ == pyproject == importlib.metadata.version("ptdispatch")
    assert _help(flag) == (0, f"ptdispatch {pyproject}\n", "")


async def test_help_and_version_through_the_command() -> None:
    code, out, err = await run_once("-h")
    assert (code, err) == (0, [])
    assert out[0].startswith("usage: ptdispatch") and any(line.startswith("  obfs4 ") for line in out)
    code, out, err = await run_once("--version")
    assert (code, out, err) == (0, [f"ptdispatch {ptdispatch.__version__}"], [])


def test_installed_command_is_on_the_venv_path() -> None:
    """`pip install .` (or the editable install scripts/_setup.sh makes) puts `ptdispatch` next to python."""
    command = Path(sys.executable).parent / "ptdispatch"
    assert command.is_file(), "reinstall: .venv/bin/python -m pip install -e ."
    done = subprocess.run([command, "-version"], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"ptdispatch {ptdispatch.__version__}\n")


def test_man_page_has_the_help_sections() -> None:
    page = manpage.render()
    assert page.startswith(".TH PTDISPATCH 1 ")
    for title, _ in helptext.sections():
        assert f'.SH "{title}"' in page
    for name in registry.names():
        assert name in page


def test_man_page_renders_without_warnings(tmp_path: Path) -> None:
    groff = need_binary("groff")
    page = tmp_path / "ptdispatch.1"
    page.write_text(manpage.render())
    done = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "ptdispatch -server -transport NAME" in done.stdout.replace("\u2010", "-").replace("\u2212", "-")
