"""scripts/demo: a comma list of transports works; bad arguments and failures are one line, never a traceback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ptdispatch.transports import registry

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def demo(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--transport", "nope"), "unknown transport 'nope'; known: " + ", ".join(registry.names())),
        (("--transport", "obfs4,shadw"), "unknown transport 'shadw'"),
        (("--transport", "obfs4,"), "unknown transport ''"),
        (("--size", "abc"), "a whole number of MiB"),
        (("--size", "0"), "a whole number of MiB"),
        (("--nosuch",), "unrecognized arguments: --nosuch"),
    ],
)
def test_bad_arguments_are_one_line(argv: tuple[str, ...], needle: str) -> None:
    done = demo(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo: ") and needle in lines[0], done.stderr


def test_a_comma_list_runs_each_transport() -> None:
    done = demo("--transport", "plain,shadow", "--size", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("plain ", "shadow "))]
    assert [(row[0], row[-1]) for row in rows[-2:]] == [("plain", "yes"), ("shadow", "yes")]


def test_the_default_demo_covers_every_transport_once() -> None:
    """The demo's default list is every registered transport, aliases left out; the ones that
    need their own set-up (Optimizer over a child, meek by url) run through."""
    module = _load_demo()
    names = module.available(aliases=False)
    assert {"Optimizer", "meeklite", "Starbridge", "Replicant"} <= set(names)  # the specs' spelling
    assert "meek_lite" not in names and "meek" not in names
    done = demo("--transport", "optimizer,meeklite", "--size", "1")
    assert done.returncode == 0, done.stderr
    assert "Optimizer" in done.stdout and "meeklite" in done.stdout and " NO" not in done.stdout


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ptdispatch_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_failing_transport_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _load_demo()

    async def broken(name: str, *args: object) -> tuple[str, float, bool]:
        raise RuntimeError("ptdispatch exited early")

    monkeypatch.setattr(module, "demo_one", broken)
    assert await module.main(module.parse_args(["--transport", "plain", "--size", "1"])) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["  plain failed: RuntimeError: ptdispatch exited early"]
