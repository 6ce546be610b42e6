"""-workers, -metrics, -replayStore (and their PT 1.0 variables): parsed, or refused by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptdispatch.errors import ConfigError
from ptdispatch.ipc import env as pt1
from ptdispatch.ipc.flags import build_config, tokenize
from ptdispatch.net.addr import Address

SERVER = ("-server", "-transport", "obfs4", "-bindaddr", "obfs4-127.0.0.1:0", "-target", "127.0.0.1:1")


def config(*argv: str):  # type: ignore[no-untyped-def]
    flags, problem = tokenize([*SERVER, *argv])
    assert problem is None, problem
    return build_config(flags, cwd=Path("/tmp"))


def test_defaults_change_nothing() -> None:
    cfg = config()
    assert (cfg.workers, cfg.metrics, cfg.replay_store) == (1, None, None)


def test_values() -> None:
    cfg = config("-workers", "3", "-metrics", "127.0.0.1:9464", "-replayStore", "redis://127.0.0.1:6379/2")
    assert cfg.workers == 3
    assert cfg.metrics == Address("127.0.0.1", 9464)
    assert cfg.replay_store == "redis://127.0.0.1:6379/2"
    assert config("--workers=auto").workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("-workers", "0"), "-workers '0'"),
        (("-workers", "abc"), "-workers 'abc'"),
        (("-workers", "-2"), "-workers '-2'"),
        (("-workers", "100000"), "-workers '100000'"),
        (("-workers", "1_6"), "-workers '1_6'"),  # int() would read 16
        (("-workers", "\u0663"), "-workers '\u0663'"),  # an Arabic-Indic 3
        (("-workers", "+2"), "-workers '+2'"),
        (("-metrics", "localhost:9464"), "-metrics"),
        (("-metrics", "127.0.0.1"), "-metrics"),
        (("-replayStore", "http://127.0.0.1:6379"), "-replayStore"),
        (("-replayStore", "redis://127.0.0.1:xx/0"), "-replayStore"),
    ],
)
def test_bad_values_name_the_flag(argv: tuple[str, ...], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(*argv)
    assert str(info.value).startswith(named), info.value


def test_auto_workers_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(1000)))
    assert config("-workers", "auto").workers == 256  # as many as an explicit count may ask for


def server_env(**extra: str) -> dict[str, str]:
    return {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": "/tmp/state",
        "TOR_PT_SERVER_TRANSPORTS": "obfs4",
        "TOR_PT_SERVER_BINDADDR": "obfs4-127.0.0.1:0",
        "TOR_PT_ORPORT": "127.0.0.1:9001",
        **extra,
    }


def test_pt1_variables() -> None:
    cfg = pt1.build_config(
        server_env(
            PTDISPATCH_WORKERS="2", PTDISPATCH_METRICS="[::1]:9464", PTDISPATCH_REPLAY_STORE="redis://[::1]:6379/0"
        )
    )
    assert (cfg.workers, cfg.metrics, cfg.replay_store) == (2, Address("::1", 9464), "redis://[::1]:6379/0")
    with pytest.raises(ConfigError, match=r"^PTDISPATCH_WORKERS 'abc'"):
        pt1.build_config(server_env(PTDISPATCH_WORKERS="abc"))
