"""The line protocol of section 1.2, through the real command."""

from __future__ import annotations

import pytest

from tests.peers.dispatcher import run_once, running


async def test_version_error_goes_to_stderr_with_exit_78() -> None:
    code, out, err = await run_once("-ptversion", "1,2.2", "-transport", "plain")
    assert code == 78
    assert out == []
    assert err == ["VERSION-ERROR no-version"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("-transport", "plain", "-transports", "plain"), "either -transport or -transports"),
        (("-mode", "carrier-pigeon", "-transport", "plain"), "unknown -mode"),
        (("-transport", "plain", "-options", "{oops"), "not valid JSON"),
        (("-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0"), "somewhere to forward"),
        (
            ("-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-extorport", "127.0.0.1:1"),
            "needs -authcookie",
        ),
        (("-transport", "plain", "-nosuchflag"), "unknown flag"),
        (
            (
                "-server",
                "-transport",
                "plain",
                "-bindaddr",
                "plain-127.0.0.1:0",
                "-target",
                "127.0.0.1:9",
                "-proxy",
                "socks5://127.0.0.1:1080",
            ),
            "-proxy is a client flag",
        ),
    ],
)
async def test_env_error_exit_64(argv: tuple[str, ...], needle: str) -> None:
    code, out, err = await run_once(*argv)
    assert code == 64
    assert out == ["VERSION 3.0"]  # VERSION first, then nothing else on stdout
    assert len(err) == 1 and err[0].startswith("ENV-ERROR ") and needle in err[0]


async def test_bad_cookie_file_is_an_env_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cookie = tmp_path / "cookie"
    cookie.write_bytes(b"x" * 64)
    code, _, err = await run_once(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0",
        "-extorport", "127.0.0.1:1", "-authcookie", str(cookie), "-state", str(tmp_path),
    )  # fmt: skip
    assert code == 64
    assert err[0].startswith("ENV-ERROR -authcookie")


async def test_proxy_error_exit_69() -> None:
    code, out, err = await run_once("-transport", "plain", "-proxy", "gopher://127.0.0.1:70")
    assert code == 69
    assert out == ["VERSION 3.0"]
    assert err[0].startswith("PROXY-ERROR ")


async def test_socks4_proxy_refused_exit_69() -> None:
    code, out, err = await run_once("-transport", "plain", "-proxy", "socks4://127.0.0.1:1080")
    assert code == 69
    assert out == ["VERSION 3.0"]
    assert len(err) == 1 and err[0].startswith("PROXY-ERROR SOCKS 4 upstream proxies unsupported")


@pytest.mark.parametrize(
    ("userinfo", "empty"),
    [("alice:", "password"), ("alice", "password"), (":hunter2", "user name"), (":", "user name and password")],
)
async def test_socks5_proxy_credentials_with_an_empty_part_exit_69(userinfo: str, empty: str) -> None:
    """python-socks offers no authentication at all when either is empty (RFC 1929 cannot send an
    empty one): refused at start-up, saying which is empty and showing neither."""
    code, out, err = await run_once("-transport", "plain", "-proxy", f"socks5://{userinfo}@127.0.0.1:1080")
    assert code == 69
    assert out == ["VERSION 3.0"]
    assert len(err) == 1 and err[0].startswith(f"PROXY-ERROR a socks5 proxy's {empty} cannot be empty")
    assert "alice" not in err[0] and "hunter2" not in err[0]


@pytest.mark.parametrize("uri", ["socks4a://127.0.0.1:1080", "socks5://127.0.0.1:1080", "http://127.0.0.1:3128"])
async def test_other_proxy_schemes_accepted(tmp_path, uri: str) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-proxy", uri, "-state", str(tmp_path)) as disp:
        assert disp.lines[:2] == ["VERSION 3.0", "PROXY DONE"]


async def test_client_lines_with_ptversion_list_and_unknown_transport(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running(
        "-ptversion", "1,2.2,3.0", "-transports", "nonesuch,plain", "-state", str(tmp_path),
        "-proxy", "socks5://127.0.0.1:1080",
    ) as disp:  # fmt: skip
        assert disp.lines[0] == "VERSION 3.0"
        assert disp.lines[1] == "PROXY DONE"
        assert disp.lines[2].startswith("CMETHOD plain socks5 127.0.0.1:")
        assert disp.lines[3] == "CMETHODS DONE"
        assert disp.method("CMETHOD", "plain")[1] > 0


async def test_only_unknown_transports_still_done(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "nonesuch", "-state", str(tmp_path)) as disp:
        assert disp.lines == ["VERSION 3.0", "CMETHODS DONE"]
    assert len(disp.errors) == 1  # one line for a person; no *-ERROR line (the spec says: ignore it)
    assert disp.errors[0].startswith("ptdispatch: ignoring unknown transport 'nonesuch'; known: plain, obfs4")


async def test_one_bad_transport_does_not_stop_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running(
        "-transports", "plain,shadow", "-mode", "transparent-TCP", "-state", str(tmp_path),
        "-options", '{"plain": {"serverAddress": "127.0.0.1:9"}, "shadow": {"serverAddress": "127.0.0.1:9"}}',
    ) as disp:  # fmt: skip
        assert any(line.startswith("CMETHOD plain transparent-TCP 127.0.0.1:") for line in disp.lines)
        assert disp.lines[-1] == "CMETHODS DONE"
    errors = [e for e in disp.errors if e.startswith("CMETHOD-ERROR shadow ")]
    assert errors, disp.errors


async def test_transparent_without_server_address_is_a_cmethod_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-mode", "transparent-TCP", "-state", str(tmp_path)) as disp:
        assert disp.lines == ["VERSION 3.0", "CMETHODS DONE"]
    assert any(e.startswith("CMETHOD-ERROR plain ") and "serverAddress" in e for e in disp.errors)


async def test_listen_address_taken_is_a_cmethod_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-state", str(tmp_path)) as first:
        host, port = first.method("CMETHOD", "plain")
        async with running("-transport", "plain", "-proxylistenaddr", f"{host}:{port}", "-state", str(tmp_path)) as d:
            assert d.lines == ["VERSION 3.0", "CMETHODS DONE"]
        assert any(e.startswith("CMETHOD-ERROR plain cannot listen") for e in d.errors)


async def test_server_lines_and_log_levels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running(
        "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", "127.0.0.1:9",
        "-state", str(tmp_path), "-ipcLogLevel", "INFO",
    ) as disp:  # fmt: skip
        assert disp.lines[0] == "VERSION 3.0"
        smethod = next(line for line in disp.lines if line.startswith("SMETHOD "))
        assert smethod.startswith("SMETHOD plain 127.0.0.1:") and not smethod.endswith(":0")
        assert any(line.startswith("LOG INFO ") for line in disp.lines)
        assert disp.lines[-1] == "SMETHODS DONE"


async def test_log_none_prints_no_log_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running("-transport", "plain", "-state", str(tmp_path)) as disp:
        pass
    assert not any(line.startswith("LOG") for line in disp.lines)


async def test_state_dir_created_0700(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "a" / "b"
    async with running("-transport", "plain", "-state", str(state)):
        assert state.is_dir()
        assert state.stat().st_mode & 0o777 == 0o700


async def test_client_addresses_scrubbed_unless_unsafe_logging(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    for extra, shown in (((), False), (("-unsafeLogging",), True)):
        async with running(
            "-server", "-transport", "plain", "-bindaddr", "plain-127.0.0.1:0", "-target", "127.0.0.1:9",
            "-state", str(tmp_path), "-ipcLogLevel", "DEBUG", *extra,
        ) as disp:  # fmt: skip
            _, port = disp.method("SMETHOD", "plain")
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            new = await disp.more_lines(1.0)
        text = "\n".join(new)
        assert ("127.0.0.1:" in text) is shown
        assert ("[scrubbed]" in text) is not shown


async def test_transparent_shadow_without_target_is_a_cmethod_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    options = '{"password": "p", "serverAddress": "127.0.0.1:9"}'
    async with running(
        "-transport", "shadow", "-mode", "transparent-TCP", "-options", options, "-state", str(tmp_path)
    ) as disp:  # fmt: skip
        assert disp.lines == ["VERSION 3.0", "CMETHODS DONE"]
    assert any(e.startswith("CMETHOD-ERROR shadow ") and "target" in e for e in disp.errors), disp.errors


async def test_udp_shadow_without_target_is_a_cmethod_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    options = '{"password": "p", "serverAddress": "127.0.0.1:9"}'
    async with running(
        "-transport", "shadow", "-mode", "transparent-UDP", "-options", options, "-state", str(tmp_path)
    ) as disp:  # fmt: skip
        assert disp.lines == ["VERSION 3.0", "CMETHODS DONE"]
    (error,) = [e for e in disp.errors if e.startswith("CMETHOD-ERROR shadow ")]
    assert "missing option 'target'" in error  # serverAddress was given: it is not what is missing
    assert "or use serverAddress" not in error
