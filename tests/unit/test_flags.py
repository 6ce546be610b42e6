"""PT 3.0 flag parsing and validation (section 1.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptdispatch.config import LogLevel, Mode, Role
from ptdispatch.errors import ConfigError
from ptdispatch.ipc.flags import ProxyConfigError, build_config, negotiate_version, tokenize
from ptdispatch.net.addr import Address
from ptdispatch.net.upstream import UpstreamProxy


def config(*argv: str):  # type: ignore[no-untyped-def]
    flags, problem = tokenize(argv)
    assert problem is None, problem
    return build_config(flags, cwd=Path("/tmp/cwd"))


def error(*argv: str) -> str:
    flags, problem = tokenize(argv)
    if problem is not None:
        return problem
    with pytest.raises(ConfigError) as info:
        build_config(flags, cwd=Path("/tmp/cwd"))
    return str(info.value)


def test_defaults() -> None:
    cfg = config("-transport", "plain")
    assert cfg.role is Role.CLIENT
    assert cfg.mode is Mode.SOCKS5
    assert cfg.log_level is LogLevel.NONE
    assert cfg.state_dir == Path("/tmp/cwd/.")
    assert not cfg.exit_on_stdin_close
    assert cfg.listen is None
    assert cfg.proxy is None


@pytest.mark.parametrize(
    "argv",
    [
        ("-transport", "obfs4", "-ipcLogLevel", "DEBUG"),
        ("--transport", "obfs4", "--ipcLogLevel=DEBUG"),
        ("-transport=obfs4", "-ipcloglevel", "debug"),
    ],
)
def test_spellings(argv: tuple[str, ...]) -> None:
    cfg = config(*argv)
    assert cfg.transports == ("obfs4",)
    assert cfg.log_level is LogLevel.DEBUG


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("-exit-on-stdin-close",), True),
        (("-exit-on-stdin-close", "1"), True),
        (("-exit-on-stdin-close", "0"), False),
        (("-exit-on-stdin-close=0",), False),
    ],
)
def test_exit_on_stdin_close(argv: tuple[str, ...], expected: bool) -> None:
    assert config("-transport", "plain", *argv).exit_on_stdin_close is expected


def test_bare_exit_flag_does_not_eat_next_flag() -> None:
    cfg = config("-exit-on-stdin-close", "-transport", "plain")
    assert cfg.exit_on_stdin_close and cfg.transports == ("plain",)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(None, "3.0"), ("3.0", "3.0"), ("1,1a,2.2,3.0", "3.0"), ("2,this_is_a_valid_version", None), ("1", None)],
)
def test_version_negotiation(offered: str | None, chosen: str | None) -> None:
    flags = {} if offered is None else {"ptversion": offered}
    assert negotiate_version(flags) == chosen


def test_malformed_version_list_is_not_accepted() -> None:
    assert negotiate_version({"ptversion": "3.0,,2"}) is None
    assert negotiate_version({"ptversion": "3.0 ,2"}) is None


def test_client_listen_address() -> None:
    assert config("-transport", "plain", "-proxylistenaddr", "127.0.0.1:5555").listen == Address("127.0.0.1", 5555)
    assert config("-transport", "plain", "-proxylistenhost", "::1", "-proxylistenport", "0").listen == Address("::1", 0)
    assert config("-transport", "plain", "-proxylistenaddr", "[::1]:7").listen == Address("::1", 7)


def test_server_flags() -> None:
    cfg = config(
        "-server", "-transports", "obfs4,shadow", "-bindaddr", "obfs4-127.0.0.1:1984,shadow-[::1]:0",
        "-target", "example.com:9922",
    )  # fmt: skip
    assert cfg.role is Role.SERVER
    assert cfg.bind == {"obfs4": Address("127.0.0.1", 1984), "shadow": Address("::1", 0)}
    assert cfg.target == Address("example.com", 9922)
    cfg = config("-server", "-transport", "plain", "-bindhost", "127.0.0.1", "-bindport", "0",
                 "-targethost", "127.0.0.1", "-targetport", "9001")  # fmt: skip
    assert cfg.bind == {"plain": Address("127.0.0.1", 0)}
    assert cfg.target == Address("127.0.0.1", 9001)


def test_a_repeated_transport_is_kept_once() -> None:
    """The first of each name, in order, in any letter case; aliases are names of their own."""
    cfg = config("-transports", "plain,Optimizer,PLAIN,optimizer,meeklite,meek_lite,plain")
    assert cfg.transports == ("plain", "Optimizer", "meeklite", "meek_lite")
    assert cfg.repeated_transports == ("PLAIN", "optimizer", "plain")
    assert config("-transport", "plain").repeated_transports == ()
    cfg = config(
        "-server", "-transports", "plain,plain", "-bindhost", "127.0.0.1", "-bindport", "0", "-target", "127.0.0.1:9"
    )
    assert cfg.bind == {"plain": Address("127.0.0.1", 0)}  # one transport: -bindhost/-bindport serve it


def test_options_keyed_and_flat() -> None:
    cfg = config("-transports", "obfs4,shadow", "-options", '{"obfs4": {"cert": "c"}, "shadow": {"password": "p"}}')
    assert cfg.options_for("obfs4") == {"cert": "c"}
    assert cfg.options_for("SHADOW") == {"password": "p"}
    cfg = config("-transports", "obfs4,shadow", "-options", '{"serverAddress": "127.0.0.1:1", "password": "p"}')
    assert cfg.options_for("obfs4") == {"serverAddress": "127.0.0.1:1", "password": "p"}


def test_options_file(tmp_path: Path) -> None:
    path = tmp_path / "opts.json"
    path.write_text('{"plain": {"serverAddress": "127.0.0.1:9"}}')
    assert config("-transport", "plain", "-optionsFile", str(path)).options_for("plain") == {
        "serverAddress": "127.0.0.1:9"
    }


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("-transport", "a", "-transports", "a,b"), "either -transport or -transports"),
        ((), "no transport given"),
        (("-transport", "a", "-options", "{}", "-optionsFile", "x"), "either -options or -optionsFile"),
        (("-transport", "a", "-options", "{nope"), "not valid JSON"),
        (("-transport", "a", "-options", "[1]"), "must be a JSON object"),
        (("-transport", "a", "-options", "[" * 3000 + "]" * 3000), "not usable JSON"),  # found by fuzzing
        (("-transport", "a", "-options", '{"n": ' + "9" * 5000 + "}"), "not usable JSON"),
        (("-transport", "a", "-optionsFile", "/nonexistent/opts.json"), "cannot be read"),
        (("-transport", "a", "-mode", "udp"), "unknown -mode"),
        (("-transport", "a", "-ipcLogLevel", "LOUD"), "unknown -ipcLogLevel"),
        (("-transport", "a", "-proxylistenaddr", "127.0.0.1:1", "-proxylistenport", "2"), "not both"),
        (("-transport", "a", "-proxylistenhost", "127.0.0.1"), "needs -proxylistenport"),
        (("-transport", "a", "-proxylistenport", "5"), "needs -proxylistenhost"),
        (("-transport", "a", "-proxylistenaddr", "localhost:5"), "IP address is required"),
        (("-transport", "a", "-proxylistenaddr", "127.0.0.1:99999"), "outside"),
        (("-client", "-server", "-transport", "a"), "either -client or -server"),
        (("-server", "-transport", "a", "-bindaddr", "a-127.0.0.1:1", "-bindhost", "127.0.0.1"), "not both"),
        (("-server", "-transport", "a", "-bindhost", "127.0.0.1", "-target", "127.0.0.1:1"), "needs -bindport"),
        (("-server", "-transport", "a", "-target", "127.0.0.1:1"), "needs a bind address"),
        (("-server", "-transport", "a", "-bindaddr", "a-host.example:1", "-target", "127.0.0.1:1"), "name-IP:port"),
        (
            ("-server", "-transport", "a", "-bindaddr", "a-127.0.0.1:1", "-target", "1.2.3.4:1", "-targetport", "2"),
            "not both",
        ),
        (("-server", "-transport", "a", "-bindaddr", "a-127.0.0.1:1", "-targethost", "x"), "needs -targetport"),
        (("-server", "-transport", "a", "-bindaddr", "a-127.0.0.1:1"), "somewhere to forward"),
        (
            ("-server", "-transport", "a", "-bindaddr", "a-127.0.0.1:1", "-extorport", "127.0.0.1:2"),
            "needs -authcookie",
        ),
        (("-transport", "a", "-frobnicate"), "unknown flag -frobnicate"),
        (("-transport", "a", "stray"), "unexpected argument"),
        (("-transport",), "needs a value"),
        (("-transport", "a", "-transport", "b"), "more than once"),
    ],
)
def test_env_errors(argv: tuple[str, ...], needle: str) -> None:
    assert needle in error(*argv)


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://127.0.0.1:1",
        "socks4://127.0.0.1:1080",
        "socks5://proxy.example:1080",
        "socks5://127.0.0.1",
        "http://127.0.0.1:8080/path",
        "socks5://[127.0.0.1:9",  # found by fuzzing: urlsplit's ValueError
        "socks5://\udcb2@127.0.0.1:9",  # found by fuzzing: undecodable argv bytes in the user name
        # credentials the scheme cannot carry (each would fail every dial)
        "socks5://b%C3%B6b:pw@127.0.0.1:9",
        "socks5://bob:p%C3%B6@127.0.0.1:9",
        "socks5://b\u00f6b:pw@127.0.0.1:9",
        "socks4a://b%C3%B6b@127.0.0.1:9",
        "socks4a://a%00b@127.0.0.1:9",
        "http://us%3Aer:pw@127.0.0.1:9",
        f"socks5://{'u' * 256}:pw@127.0.0.1:9",
        f"socks5://u:{'%C3%B6' * 128}@127.0.0.1:9",
        # RFC 1929 sends 1 to 255 bytes of each: python-socks would offer no authentication at all
        "socks5://u:@127.0.0.1:9",
        "socks5://u@127.0.0.1:9",
        "socks5://:pw@127.0.0.1:9",
        "socks5://:@127.0.0.1:9",
        "socks5://@127.0.0.1:9",
    ],
)
def test_bad_proxy_is_a_proxy_error(uri: str) -> None:
    flags, _ = tokenize(["-transport", "plain", "-proxy", uri])
    with pytest.raises(ProxyConfigError):
        build_config(flags)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("socks5://alice:hunter2@127.0.0.1:1080/x", "'socks5://***@127.0.0.1:1080/x'"),
        ("socks5://alice:hunter2@127.0.0.1", "'socks5://***@127.0.0.1'"),
        ("http://alice:hunter2@proxy.example:3128", "'proxy.example'"),
        ("socks5://alice:hunter2@127.0.0.1:99999", "out of range"),
        ("socks5://alice:hunter2@[127.0.0.1:9", "Invalid IPv6 URL"),
        ("socks5://alice:hunter2@[zz]:9", "'zz'"),
        ("socks5://alice:hunter2\uff03@127.0.0.1:1", "NFKC"),  # urlsplit's message has the whole netloc
        ("ftp://alice:hunter2@127.0.0.1:21", "'ftp'"),
        ("socks5://alice:@127.0.0.1:1080", "password cannot be empty"),
        ("socks5://:hunter2@127.0.0.1:1080", "user name cannot be empty"),
        # Not split where the credentials end: a '/', '?' or '#' in the password, or no '//'
        ("socks5://alice:hunt/er2@127.0.0.1:1080", "proxy URI"),
        ("socks5://alice:hunt?er2@127.0.0.1:1080", "proxy URI"),
        ("socks5://alice:hunt#er2@127.0.0.1:1080", "proxy URI"),
        ("socks5:alice:hunter2@127.0.0.1:1080", "proxy URI"),
        ("alice:hunter2@127.0.0.1:1080", "proxy URI"),
    ],
)
def test_proxy_error_hides_the_credentials(uri: str, shown: str) -> None:
    """PROXY-ERROR text goes to tor's log: the user info is masked, or the URI left out."""
    flags, _ = tokenize(["-transport", "plain", "-proxy", uri])
    with pytest.raises(ProxyConfigError) as caught:
        build_config(flags)
    message = str(caught.value)
    assert "alice" not in message and "hunt" not in message and shown in message


def test_proxy_password_is_not_in_its_repr() -> None:
    assert "hunter2" not in repr(UpstreamProxy.parse("socks5://alice:hunter2@127.0.0.1:1080"))


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("socks5://127.0.0.1:1080", UpstreamProxy("socks5", "127.0.0.1", 1080)),
        ("socks5://u:p@127.0.0.1:1080", UpstreamProxy("socks5", "127.0.0.1", 1080, "u", "p")),
        ("socks5://us%3Aer:p%40ss@127.0.0.1:1", UpstreamProxy("socks5", "127.0.0.1", 1, "us:er", "p@ss")),
        ("socks4a://127.0.0.1:1080", UpstreamProxy("socks4a", "127.0.0.1", 1080)),
        ("http://[::1]:3128", UpstreamProxy("http", "::1", 3128)),
        ("HTTP://a:b@[::1]:3128", UpstreamProxy("http", "::1", 3128, "a", "b")),
        ("socks4a://alice@127.0.0.1:1", UpstreamProxy("socks4a", "127.0.0.1", 1, "alice")),
        ("http://alice:@127.0.0.1:1", UpstreamProxy("http", "127.0.0.1", 1, "alice", "")),  # Basic allows it
        ("http://b%C3%B6b:p%3A%C3%B6@127.0.0.1:1", UpstreamProxy("http", "127.0.0.1", 1, "b\u00f6b", "p:\u00f6")),
    ],
)
def test_good_proxy(uri: str, parsed: UpstreamProxy) -> None:
    """Scheme, host, port and the (percent-decoded) credentials are what the URI says."""
    assert config("-transport", "plain", "-proxy", uri).proxy == parsed


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"password": "\ud800"}, "not valid Unicode"),  # JSON "\ud800", or undecodable argv bytes
        ({"password": "pw", "iat-mode": "\u00b2"}, "must be a number"),  # str.isdigit() but not int()
        ({"password": "pw", "iat-mode": "--5"}, "must be a number"),
    ],
)
def test_option_values_found_by_fuzzing_are_option_errors(options: dict[str, object], needle: str) -> None:
    from ptdispatch.errors import OptionsError
    from ptdispatch.transports.options import get_int, get_str

    with pytest.raises(OptionsError, match=needle):
        get_str(options, "t", "password")
        get_int(options, "t", "iat-mode", default=0, low=0, high=2)
