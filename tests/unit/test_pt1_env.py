"""Tor PT 1.0 front door: TOR_PT_* variables -> Config, and the lines main() writes."""

from __future__ import annotations

import io
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TextIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ptdispatch
from ptdispatch.config import LogLevel, Mode, Role
from ptdispatch.extorport import COOKIE_HEADER
from ptdispatch.ipc import env
from ptdispatch.ipc.args import escape, ordinal
from ptdispatch.ipc.env import EnvError, build_config, negotiate_version, parse_server_transport_options
from ptdispatch.ipc.flags import ProxyConfigError
from ptdispatch.launch import RunLoop
from ptdispatch.net.addr import Address
from ptdispatch.transports import registry

STATE = "/var/lib/tor/pt_state"
STATUS_VERSION = f"STATUS TYPE=version IMPLEMENTATION=ptdispatch VERSION={ptdispatch.__version__}"


def client_env(**extra: str) -> dict[str, str]:
    return {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": STATE,
        "TOR_PT_CLIENT_TRANSPORTS": "obfs3,obfs4",
        **extra,
    }


def server_env(**extra: str) -> dict[str, str]:
    return {
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": STATE,
        "TOR_PT_SERVER_TRANSPORTS": "obfs3,obfs4",
        "TOR_PT_SERVER_BINDADDR": "obfs3-127.0.0.1:1984,obfs4-[::1]:4891",
        "TOR_PT_ORPORT": "127.0.0.1:9001",
        **extra,
    }


# --- version ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("1", "1"), ("1,1a,2b,this_is_a_valid_ver", "1"), ("2,1", "1"), ("2", None), ("1a", None), ("", None),
     (" 1", None), (None, None)],
)  # fmt: skip
def test_version_negotiation(offered: str | None, chosen: str | None) -> None:
    assert negotiate_version(offered) == chosen


# --- well-formed environments -------------------------------------------------------------------------
def test_client_config() -> None:
    config = build_config(client_env(TOR_PT_EXIT_ON_STDIN_CLOSE="1", TOR_PT_PROXY="socks5://u:p@127.0.0.1:8000"))
    assert config.role is Role.CLIENT
    assert config.transports == ("obfs3", "obfs4")
    assert config.mode is Mode.SOCKS5
    assert config.pt_version == "1"
    assert config.state_dir == Path(STATE)
    assert config.exit_on_stdin_close is True
    assert config.proxy is not None and (config.proxy.scheme, config.proxy.username) == ("socks5", "u")
    assert config.listen is None  # 127.0.0.1, an ephemeral port per transport
    assert config.log_level is LogLevel.WARN


def test_client_defaults_without_optional_variables() -> None:
    config = build_config(client_env(TOR_PT_EXIT_ON_STDIN_CLOSE="0", TOR_PT_PROXY=""))
    assert config.exit_on_stdin_close is False
    assert config.proxy is None
    assert (config.outbound_bind_v4, config.outbound_bind_v6) == (None, None)


@pytest.mark.parametrize("variable", ["TOR_PT_CLIENT_TRANSPORTS", "TOR_PT_SERVER_TRANSPORTS"])
def test_a_repeated_transport_is_kept_once(variable: str) -> None:
    """The first of each name, in order, in any letter case; aliases are names of their own."""
    make = client_env if variable == "TOR_PT_CLIENT_TRANSPORTS" else server_env
    config = build_config(make(**{variable: "obfs4,obfs3,OBFS4,obfs4,meek,meek_lite,Obfs3"}))
    assert config.transports == ("obfs4", "obfs3", "meek", "meek_lite")
    assert config.repeated_transports == ("OBFS4", "obfs4", "Obfs3")


def test_star_means_every_loadable_transport() -> None:
    config = build_config(client_env(TOR_PT_CLIENT_TRANSPORTS="*"))
    assert "obfs3" in config.transports and "plain" in config.transports
    for name in config.transports:
        assert registry.lookup(name) is not None


def test_server_config() -> None:
    config = build_config(
        server_env(
            TOR_PT_EXTENDED_SERVER_PORT="127.0.0.1:4200",
            TOR_PT_AUTH_COOKIE_FILE="/var/lib/tor/extended_orport_auth_cookie",
            TOR_PT_SERVER_TRANSPORT_OPTIONS="obfs4:iat-mode=1;obfs3:k=v;obfs4:x=y",
        )
    )
    assert config.role is Role.SERVER
    assert config.bind == {"obfs3": Address("127.0.0.1", 1984), "obfs4": Address("::1", 4891)}
    assert config.target == Address("127.0.0.1", 9001)
    assert config.extorport == Address("127.0.0.1", 4200)
    assert config.authcookie == Path("/var/lib/tor/extended_orport_auth_cookie")
    assert config.options_for("obfs4") == {"iat-mode": "1", "x": "y"}
    assert config.options_for("obfs3") == {"k": "v"}


def test_server_empty_extended_port_means_orport() -> None:
    config = build_config(server_env(TOR_PT_EXTENDED_SERVER_PORT=""))
    assert config.extorport is None and config.authcookie is None
    assert config.target == Address("127.0.0.1", 9001)


def test_server_extended_port_alone() -> None:
    environ = server_env(TOR_PT_EXTENDED_SERVER_PORT="127.0.0.1:4200", TOR_PT_AUTH_COOKIE_FILE="/c")
    del environ["TOR_PT_ORPORT"]
    config = build_config(environ)
    assert config.target is None and config.extorport == Address("127.0.0.1", 4200)


def test_bindaddr_defaults_and_filtering() -> None:
    """Transports missing from BINDADDR get tor's default; entries for others are ignored."""
    config = build_config(
        server_env(TOR_PT_SERVER_TRANSPORTS="obfs4", TOR_PT_SERVER_BINDADDR="obfs3-127.0.0.1:1,scramble-127.0.0.1:2")
    )
    assert config.bind == {"obfs4": Address("0.0.0.0", 0)}
    environ = server_env()
    del environ["TOR_PT_SERVER_BINDADDR"]
    assert build_config(environ).bind == {"obfs3": Address("0.0.0.0", 0), "obfs4": Address("0.0.0.0", 0)}


def test_bindaddr_bare_ipv6_as_old_tor_wrote_it() -> None:
    config = build_config(server_env(TOR_PT_SERVER_BINDADDR="obfs3-::1:1984"))
    assert config.bind["obfs3"] == Address("::1", 1984)


def test_outbound_bind_addresses() -> None:
    config = build_config(
        client_env(TOR_PT_OUTBOUND_BIND_ADDRESS_V4="203.0.113.4", TOR_PT_OUTBOUND_BIND_ADDRESS_V6="[2001:db8::4]")
    )
    assert (config.outbound_bind_v4, config.outbound_bind_v6) == ("203.0.113.4", "2001:db8::4")
    bare = build_config(client_env(TOR_PT_OUTBOUND_BIND_ADDRESS_V6="2001:db8::4"))
    assert bare.outbound_bind_v6 == "2001:db8::4"


def test_log_level_extension() -> None:
    assert build_config(client_env(PTDISPATCH_IPC_LOG_LEVEL="debug")).log_level is LogLevel.DEBUG
    assert build_config(client_env(PTDISPATCH_LOG_ADDRESSES="1")).log_addresses is True


# --- malformed environments: each names its variable ------------------------------------------------
BAD_CLIENT = [
    ({"TOR_PT_STATE_LOCATION": ""}, "TOR_PT_STATE_LOCATION"),
    ({"TOR_PT_STATE_LOCATION": "relative/dir"}, "TOR_PT_STATE_LOCATION"),
    ({"TOR_PT_EXIT_ON_STDIN_CLOSE": "yes"}, "TOR_PT_EXIT_ON_STDIN_CLOSE"),
    ({"TOR_PT_CLIENT_TRANSPORTS": "obfs3,,obfs4"}, "TOR_PT_CLIENT_TRANSPORTS"),
    ({"TOR_PT_CLIENT_TRANSPORTS": ""}, "TOR_PT_CLIENT_TRANSPORTS"),
    ({"TOR_PT_CLIENT_TRANSPORTS": "obfs-3"}, "TOR_PT_CLIENT_TRANSPORTS"),
    ({"TOR_PT_CLIENT_TRANSPORTS": "3obfs"}, "TOR_PT_CLIENT_TRANSPORTS"),
    ({"TOR_PT_SERVER_TRANSPORTS": "obfs3"}, "TOR_PT_CLIENT_TRANSPORTS"),  # both roles at once
    ({"TOR_PT_OUTBOUND_BIND_ADDRESS_V4": "2001:db8::4"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V4"),
    ({"TOR_PT_OUTBOUND_BIND_ADDRESS_V4": "example.com"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V4"),
    ({"TOR_PT_OUTBOUND_BIND_ADDRESS_V6": "203.0.113.4"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V6"),
    ({"TOR_PT_OUTBOUND_BIND_ADDRESS_V6": "[2001:db8::4"}, "TOR_PT_OUTBOUND_BIND_ADDRESS_V6"),
    ({"PTDISPATCH_IPC_LOG_LEVEL": "LOUD"}, "PTDISPATCH_IPC_LOG_LEVEL"),
]
BAD_SERVER = [
    ({"TOR_PT_SERVER_TRANSPORTS": "obfs3;obfs4"}, "TOR_PT_SERVER_TRANSPORTS"),
    ({"TOR_PT_SERVER_BINDADDR": "obfs3:127.0.0.1:1984"}, "TOR_PT_SERVER_BINDADDR"),
    ({"TOR_PT_SERVER_BINDADDR": "obfs3-example.com:1984"}, "TOR_PT_SERVER_BINDADDR"),
    ({"TOR_PT_SERVER_BINDADDR": "obfs3-127.0.0.1:99999"}, "TOR_PT_SERVER_BINDADDR"),
    ({"TOR_PT_SERVER_BINDADDR": "obfs3-127.0.0.1"}, "TOR_PT_SERVER_BINDADDR"),
    ({"TOR_PT_SERVER_BINDADDR": "obfs3-127.0.0.1:1,obfs3-127.0.0.1:2"}, "TOR_PT_SERVER_BINDADDR"),
    ({"TOR_PT_SERVER_BINDADDR": ""}, None),  # empty: as if omitted (valid)
    ({"TOR_PT_ORPORT": "localhost:9001"}, "TOR_PT_ORPORT"),
    ({"TOR_PT_ORPORT": "127.0.0.1"}, "TOR_PT_ORPORT"),
    ({"TOR_PT_ORPORT": ""}, "TOR_PT_ORPORT"),  # and no extended port either
    ({"TOR_PT_EXTENDED_SERVER_PORT": "127.0.0.1:x"}, "TOR_PT_EXTENDED_SERVER_PORT"),
    ({"TOR_PT_EXTENDED_SERVER_PORT": "127.0.0.1:4200"}, "TOR_PT_AUTH_COOKIE_FILE"),
    ({"TOR_PT_SERVER_TRANSPORT_OPTIONS": "obfs4"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
    ({"TOR_PT_SERVER_TRANSPORT_OPTIONS": "obfs4:iat-mode"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
    ({"TOR_PT_SERVER_TRANSPORT_OPTIONS": "obfs4:=1"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
    ({"TOR_PT_SERVER_TRANSPORT_OPTIONS": "obfs4:k=v\\"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
    ({"TOR_PT_SERVER_TRANSPORT_OPTIONS": "ob fs4:k=v"}, "TOR_PT_SERVER_TRANSPORT_OPTIONS"),
]


@pytest.mark.parametrize(("extra", "variable"), BAD_CLIENT)
def test_bad_client_variable(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(EnvError) as info:
        build_config(client_env(**extra))
    assert str(info.value).startswith(variable + ": ")  # the ENV-ERROR message names the variable


@pytest.mark.parametrize(("extra", "variable"), BAD_SERVER)
def test_bad_server_variable(extra: dict[str, str], variable: str | None) -> None:
    if variable is None:
        build_config(server_env(**extra))
        return
    with pytest.raises(EnvError) as info:
        build_config(server_env(**extra))
    assert str(info.value).startswith(variable + ": ")  # the ENV-ERROR message names the variable


def test_missing_state_location() -> None:
    environ = client_env()
    del environ["TOR_PT_STATE_LOCATION"]
    with pytest.raises(EnvError, match=r"^TOR_PT_STATE_LOCATION: not set"):
        build_config(environ)


def test_no_role() -> None:
    environ = client_env()
    del environ["TOR_PT_CLIENT_TRANSPORTS"]
    with pytest.raises(EnvError, match="TOR_PT_SERVER_TRANSPORTS"):
        build_config(environ)


@pytest.mark.parametrize(
    "proxy",
    [
        "gopher://127.0.0.1:70",
        "socks5://proxy.example:1080",
        "socks5://127.0.0.1",
        "socks4a://u:p@127.0.0.1:1",
        "socks5://b%C3%B6b:pw@127.0.0.1:1",  # SOCKS carries ASCII credentials only
    ],
)
def test_bad_proxy_is_a_proxy_error(proxy: str) -> None:
    with pytest.raises(ProxyConfigError):
        build_config(client_env(TOR_PT_PROXY=proxy))


# --- TOR_PT_SERVER_TRANSPORT_OPTIONS escaping ---------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", {}),
        ("scramblesuit:key=banana;automata:rule=110;automata:depth=3",
         {"scramblesuit": {"key": "banana"}, "automata": {"rule": "110", "depth": "3"}}),
        (r"t:k=a\;b", {"t": {"k": "a;b"}}),
        (r"t:k=a\:b", {"t": {"k": "a:b"}}),
        (r"t:k=a\=b", {"t": {"k": "a=b"}}),
        (r"t:k=a\\b", {"t": {"k": "a\\b"}}),
        (r"t:k\=1=v", {"t": {"k=1": "v"}}),
        (r"t:k=a\\;u:x=y", {"t": {"k": "a\\"}, "u": {"x": "y"}}),
        ("t:k=a=b", {"t": {"k": "a=b"}}),  # the first '=' splits
        ("t:k=", {"t": {"k": ""}}),
        ("T:k=v", {"t": {"k": "v"}}),
        ("t:k=v;", {"t": {"k": "v"}}),
        ("t:cert=AAAA+/==;t:iat-mode=0", {"t": {"cert": "AAAA+/==", "iat-mode": "0"}}),
    ],
)  # fmt: skip
def test_server_transport_options(text: str, parsed: dict[str, dict[str, str]]) -> None:
    assert parse_server_transport_options(text) == parsed


@pytest.mark.parametrize("text", ["t", "t:k", r"t\:k=v", "t:=v", "t:k=v\\", "1t:k=v"])
def test_server_transport_options_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server_transport_options(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shadow:password=correct horse\\",
         "the 1st entry (transport 'shadow', key 'password') ends with a lone backslash"),
        ("obfs4:iat-mode=0;shadow:password=correct;horse battery",
         "the 3rd entry is not of the form transport:key=value"),
        ("shadow:password=correct;horse battery:staple", "the 2nd entry has no '=' between key and value"),
        ("shadow:password=correct;horse battery:staple=1", "the 2nd entry has an invalid transport name"),
        ("shadow:password=correct;;horse battery", "the 3rd entry is not of the form transport:key=value"),
        ("shadow:=correct horse", "the 1st entry (transport 'shadow') has an empty key"),
    ],
)  # fmt: skip
def test_server_transport_options_errors_hide_values(text: str, message: str) -> None:
    """An error names the entry by its position, and its transport and key when it got that far,
    but quotes no value, nor any text of an entry that did not parse (a piece of a value cut at
    an unescaped ';')."""
    with pytest.raises(ValueError) as info:
        parse_server_transport_options(text)
    assert str(info.value).startswith(message)
    for secret in ("correct", "horse", "battery", "staple"):
        assert secret not in str(info.value)


def test_ordinal() -> None:
    numbers = [1, 2, 3, 4, 11, 12, 13, 21, 102, 111, 1000]
    assert " ".join(map(ordinal, numbers)) == "1st 2nd 3rd 4th 11th 12th 13th 21st 102nd 111th 1000th"


# --- main(): the lines on stdout -----------------------------------------------------------------------
def run_main(environ: Mapping[str, str]) -> tuple[int, list[str], list[object]]:
    out = io.StringIO()
    started: list[object] = []

    def fake_run(coro: Coroutine[Any, Any, int]) -> int:
        started.append(coro)
        coro.close()
        return 0

    code = env.main(environ, fake_run, stdout=out, stderr=io.StringIO())
    return code, out.getvalue().splitlines(), started


def test_main_version_error() -> None:
    code, lines, started = run_main(client_env(TOR_PT_MANAGED_TRANSPORT_VER="2,3"))
    assert (code, lines, started) == (78, ["VERSION-ERROR no-version"], [])


def test_main_env_error_on_stdout() -> None:
    code, lines, started = run_main(client_env(TOR_PT_EXIT_ON_STDIN_CLOSE="2"))
    assert code == 64 and not started
    assert lines[0] == "VERSION 1"
    assert lines[1].startswith("ENV-ERROR TOR_PT_EXIT_ON_STDIN_CLOSE: ")
    assert len(lines) == 2


def test_main_proxy_error() -> None:
    code, lines, _ = run_main(client_env(TOR_PT_PROXY="ftp://127.0.0.1:21"))
    assert code == 69
    assert lines[0] == "VERSION 1" and lines[1].startswith("PROXY-ERROR ")


def test_main_proxy_error_hides_the_credentials() -> None:
    code, lines, _ = run_main(client_env(TOR_PT_PROXY="socks5://alice:hunter2@127.0.0.1:1080/x"))
    assert code == 69
    assert lines[1] == "PROXY-ERROR proxy 'socks5://***@127.0.0.1:1080/x' must have no path, query or fragment"


def test_main_runs_the_app(tmp_path: Path) -> None:
    code, lines, started = run_main(client_env(TOR_PT_STATE_LOCATION=str(tmp_path / "state")))
    assert (code, lines, len(started)) == (0, ["VERSION 1", STATUS_VERSION], 1)
    assert (tmp_path / "state").is_dir()


def test_main_env_error_hides_a_password() -> None:
    """The ENV-ERROR line (which tor logs) for a password with a trailing backslash."""
    code, lines, _ = run_main(server_env(TOR_PT_SERVER_TRANSPORT_OPTIONS="shadow:password=correct horse\\"))
    assert code == 64
    assert lines[1:] == [
        "ENV-ERROR TOR_PT_SERVER_TRANSPORT_OPTIONS: the 1st entry (transport 'shadow', key 'password') ends with "
        "a lone backslash (a '\\' in a value is written '\\\\')"
    ]


def test_main_state_dir_not_creatable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, lines, _ = run_main(client_env(TOR_PT_STATE_LOCATION=str(blocker / "state")))
    assert code == 64
    assert lines[1].startswith("ENV-ERROR TOR_PT_STATE_LOCATION: ")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"! Extended ORPort Auth Cookie !X" + bytes(32), "header"),
        (COOKIE_HEADER + bytes(31), "63 bytes"),
        (COOKIE_HEADER + bytes(33), "65 bytes"),
        (b"", "0 bytes"),
        (None, "cannot read"),
    ],
)
def test_main_bad_cookie_file(tmp_path: Path, content: bytes | None, needle: str) -> None:
    cookie = tmp_path / "cookie"
    if content is not None:
        cookie.write_bytes(content)
    environ = server_env(
        TOR_PT_STATE_LOCATION=str(tmp_path),
        TOR_PT_EXTENDED_SERVER_PORT="127.0.0.1:4200",
        TOR_PT_AUTH_COOKIE_FILE=str(cookie),
    )
    code, lines, started = run_main(environ)
    assert code == 64 and not started
    assert lines[1].startswith("ENV-ERROR TOR_PT_AUTH_COOKIE_FILE")
    assert needle in lines[1]


def test_main_good_cookie_file(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_bytes(COOKIE_HEADER + bytes(range(32)))
    environ = server_env(
        TOR_PT_STATE_LOCATION=str(tmp_path),
        TOR_PT_EXTENDED_SERVER_PORT="127.0.0.1:4200",
        TOR_PT_AUTH_COOKIE_FILE=str(cookie),
    )
    code, lines, started = run_main(environ)
    assert (code, lines, len(started)) == (0, ["VERSION 1", STATUS_VERSION], 1)


def test_cli_enters_pt1_mode_only_without_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptdispatch import cli

    seen: list[Mapping[str, str]] = []

    def fake_main(environ: Mapping[str, str], run: RunLoop, **streams: TextIO) -> int:
        seen.append(environ)
        return 5

    monkeypatch.setattr(env, "main", fake_main)
    assert cli.main([], client_env()) == 5
    assert len(seen) == 1
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["-ptversion", "9"], client_env(), stdout=out, stderr=err) == 78  # flags: the PT 3.0 door
    assert (out.getvalue(), err.getvalue()) == ("", "VERSION-ERROR no-version\n")
    assert len(seen) == 1


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, TEXT.filter(bool), TEXT), max_size=6))
def test_server_transport_options_round_trip(entries: list[tuple[str, str, str]]) -> None:
    """What tor writes (keys with '=' escaped too, values with ':' ';' '\\') parses back exactly."""
    key_specials, value_specials = ":;=\\", ":;\\"
    text = ";".join(f"{n}:{escape(k, key_specials)}={escape(v, value_specials)}" for n, k, v in entries)
    expected: dict[str, dict[str, str]] = {}
    for name, key, value in entries:
        expected.setdefault(name.lower(), {})[key] = value
    assert parse_server_transport_options(text) == expected
