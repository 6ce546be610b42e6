"""k=v microformats: SMETHOD ARGS and Tor-style per-connection arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptdispatch.ipc.args import connection_args, escape, format_smethod_args, parse_kv_list


def test_smethod_args_escaping() -> None:
    assert format_smethod_args({"cert": "a=b,c", "iat-mode": "0"}) == r"ARGS:cert=a\=b\,c,iat-mode=0"


def test_parse_tor_args() -> None:
    assert parse_kv_list("cert=AAA;iat-mode=0") == {"cert": "AAA", "iat-mode": "0"}
    assert parse_kv_list(r"a=x\;y;b=\=") == {"a": "x;y", "b": "="}
    assert parse_kv_list("") == {}


@pytest.mark.parametrize("bad", ["novalue", "=v", "a=b\\"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_kv_list(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("password=correct;horse battery staple", "the 2nd argument has no '=' (a ';' in a value is written '\\;')"),
        ("cert=AAAA;;horse battery staple;iat-mode=0", "the 3rd argument has no '='"),
        ("password=correct;=horse battery staple", "the 2nd argument has an empty key"),
        ("password=correct horse\\", "argument list ends with a lone backslash"),
    ],
)
def test_parse_errors_do_not_quote_the_text(text: str, message: str) -> None:
    """An argument is named by its position (counting empty ones): its text may be a piece of a
    secret cut at an unescaped ';'."""
    with pytest.raises(ValueError) as info:
        parse_kv_list(text)
    assert str(info.value).startswith(message)
    for secret in ("correct", "horse", "battery", "staple"):
        assert secret not in str(info.value)


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=5))
def test_roundtrip(pairs: dict[str, str]) -> None:
    text = ";".join(f"{escape(k, '=;')}={escape(v, '=;')}" for k, v in pairs.items())
    assert parse_kv_list(text) == pairs


def test_connection_args_are_parsed_once_and_never_shared() -> None:
    first = connection_args("url=http://x/;front=y")
    first["url"] = "changed by one connection"
    assert connection_args("url=http://x/;front=y") == {"url": "http://x/", "front": "y"}
    with pytest.raises(ValueError):
        connection_args("no-equals-sign")
    with pytest.raises(ValueError):  # an error is not remembered as a result either
        connection_args("no-equals-sign")
