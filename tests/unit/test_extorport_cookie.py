"""tor's ExtORPort cookie file: the good file and every way it can be bad."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptdispatch.errors import ConfigError
from ptdispatch.extorport import COOKIE_HEADER, parse_cookie_file, read_cookie_file

COOKIE = bytes(range(100, 132))


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "extended_orport_auth_cookie"
    path.write_bytes(data)
    return path


def test_good_file(tmp_path: Path) -> None:
    """ext-orport-spec 4.2.1.1: the 32-byte header, as the spec spells it, then the 32-byte cookie."""
    path = write(tmp_path, b"! Extended ORPort Auth Cookie !\x0a" + COOKIE)
    assert read_cookie_file(path) == COOKIE
    assert read_cookie_file(str(path)) == COOKIE


def test_bad_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"! Extended ORPort Auth Cookie ?\n" + COOKIE)
    with pytest.raises(ConfigError, match="does not start with the ExtORPort cookie header") as info:
        read_cookie_file(path)
    assert str(path) in str(info.value)


def test_control_port_cookie_is_rejected(tmp_path: Path) -> None:
    # tor's ControlPort cookie is a bare 32-byte secret: a plausible wrong path.
    with pytest.raises(ConfigError, match="is 32 bytes"):
        read_cookie_file(write(tmp_path, COOKIE))


@pytest.mark.parametrize("size", [0, 1, 63, 65, 128, 5000])
def test_wrong_size(tmp_path: Path, size: int) -> None:
    data = (COOKIE_HEADER + COOKIE * 200)[:size]
    with pytest.raises(ConfigError, match="an ExtORPort auth cookie file is 64 bytes") as info:
        read_cookie_file(write(tmp_path, data))
    expected = "more than 4096 bytes" if size > 4096 else f"is {size} bytes"
    assert expected in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"cannot read the ExtORPort auth cookie file .*No such file"):
        read_cookie_file(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the ExtORPort auth cookie file"):
        read_cookie_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, COOKIE_HEADER + COOKIE)
    path.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        read_cookie_file(path)


def test_empty_path() -> None:
    with pytest.raises(ConfigError, match="no ExtORPort auth cookie file"):
        read_cookie_file("")


def test_parse_names_the_source() -> None:
    with pytest.raises(ConfigError, match="TOR_PT_AUTH_COOKIE_FILE"):
        parse_cookie_file(b"x", source="TOR_PT_AUTH_COOKIE_FILE")


def test_path_through_a_file(tmp_path: Path) -> None:
    # Unreadable even for root: a path whose parent is a regular file.
    parent = write(tmp_path, COOKIE_HEADER + COOKIE)
    with pytest.raises(ConfigError, match="Not a directory"):
        read_cookie_file(parent / "cookie")
