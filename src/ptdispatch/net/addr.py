"""Parsing and formatting of ``host:port`` addresses."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Address(NamedTuple):
    """A host (IP literal or DNS name) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def format_hostport(host: str, port: int) -> str:
    """``1.2.3.4:80``, ``[::1]:80`` or ``example.com:80``."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_port(text: str, *, what: str = "port", allow_zero: bool = True) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    port = int(text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"{what} {port} is outside {low}-65535")
    return port


def parse_hostport(text: str, *, require_ip: bool = False, allow_zero_port: bool = True) -> Address:
    """Parse ``host:port``, ``[v6]:port`` or ``v4:port``; raise ``ValueError`` with a readable message."""
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"{text!r} is not of the form [IPv6]:port")
        host, port_text = text[1:close], text[close + 2 :]
        if not is_ip(host):
            raise ValueError(f"{host!r} in {text!r} is not an IPv6 address")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not of the form host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:port")
    if require_ip and not is_ip(host):
        raise ValueError(f"{host!r} in {text!r} is a host name; an IP address is required here")
    return Address(host, parse_port(port_text, what=f"port in {text!r}", allow_zero=allow_zero_port))
