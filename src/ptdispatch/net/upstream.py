"""Outgoing connections: direct, or through an upstream proxy (``-proxy``).

SOCKS proxies go through python-socks; HTTP proxies through our own CONNECT exchange (see
``_http_connect``).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
import ssl as _ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .addr import Address, format_hostport, is_ip

P = TypeVar("P", bound=asyncio.BaseProtocol)

SCHEMES = {"socks5": "SOCKS5", "socks4a": "SOCKS4", "http": "HTTP"}
"""Accepted ``-proxy`` schemes -> python-socks' ProxyType (socks4a: its SOCKS4 with remote DNS).
Plain ``socks4://`` is refused, as the spec's own example says ("SOCKS 4 upstream proxies unsupported")."""


@dataclass(frozen=True)
class UpstreamProxy:
    """A validated ``-proxy`` URI."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, uri: str) -> UpstreamProxy:
        """Parse ``socks5://[user:pass@]ip:port``, ``socks4a://ip:port`` or ``http://[user:pass@]ip:port``.

        Messages show the URI with its user info masked (PROXY-ERROR text goes to tor's log).
        """
        shown = _masked(uri)
        if shown is None:  # such a URI always fails below, where the host or scheme could be the user info
            raise ConfigError(
                "proxy URI has an '@' outside scheme://user:pass@: percent-encode '/', '?', '#' and '@' "
                "in a user name or password (the URI is not shown, to keep them out of logs)"
            )
        try:
            parts = urlsplit(uri)
        except ValueError as exc:  # "Invalid IPv6 URL": an unclosed '['
            raise ConfigError(f"proxy {shown!r}: {_masked_message(exc)}") from None
        scheme = parts.scheme.lower()
        if scheme == "socks4":
            raise ConfigError("SOCKS 4 upstream proxies unsupported; use socks4a, socks5 or http")
        if scheme not in SCHEMES:
            raise ConfigError(f"proxy scheme {parts.scheme or '(none)'!r} unsupported; use socks5, socks4a or http")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigError(f"proxy {shown!r}: {_masked_message(exc)}") from None
        if not host or port is None:
            raise ConfigError(f"proxy {shown!r} needs an IP address and a port, as {scheme}://127.0.0.1:1080")
        if not is_ip(host):
            raise ConfigError(f"proxy host {host!r} must be an IP address, not a host name")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"proxy {shown!r} must have no path, query or fragment")
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if scheme.startswith("socks4") and password:
            raise ConfigError("a socks4a proxy takes no password")
        # Credentials the scheme cannot carry are refused here, once, rather than failing every dial.
        try:
            too_long = username is not None and max(len(username.encode()), len((password or "").encode())) > 255
        except UnicodeEncodeError:  # undecodable bytes in argv or the environment
            raise ConfigError("proxy user name and password must be valid UTF-8") from None
        if too_long:
            raise ConfigError("proxy user name and password must each be at most 255 bytes")
        if scheme == "socks5" and username is not None and not (username and password):
            # RFC 1929 sends 1 to 255 bytes of each, and python-socks, given an empty one, offers
            # no authentication at all: the proxy would be used unauthenticated, or refuse every dial.
            empty = " and ".join(part for part, value in (("user name", username), ("password", password)) if not value)
            raise ConfigError(
                f"a socks5 proxy's {empty} cannot be empty (RFC 1929 sends 1 to 255 bytes of each): "
                "give both, as socks5://user:password@ip:port, or neither for no authentication"
            )
        if scheme != "http" and not f"{username or ''}{password or ''}".isascii():
            raise ConfigError("a SOCKS proxy's user name and password must be ASCII")
        if scheme == "socks4a" and "\0" in (username or ""):
            raise ConfigError("a socks4a proxy's user id cannot contain a NUL (%00)")
        if scheme == "http" and ":" in (username or ""):
            raise ConfigError("an http proxy's user name cannot contain ':' (%3A): Basic authentication splits there")
        return cls(scheme, host, port, username, password)


def _masked(uri: str) -> str | None:
    """``uri`` with its user info as ``***`` (``scheme://***@host:port``).

    None when an '@' is not where the user info ends (an unquoted '/', '?' or '#' before it, or no
    ``//``): then urlsplit's host, port or scheme may be a piece of the credentials.
    """
    if "@" not in uri:
        return uri
    scheme, sep, rest = uri.partition("://")
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    authority, tail = rest[: min(ends, default=len(rest))], rest[min(ends, default=len(rest)) :]
    if not sep or "@" in scheme or "@" in tail:
        return None
    return f"{scheme}://***@{authority.rpartition('@')[2]}{tail}"


def _masked_message(exc: ValueError) -> str:
    """urlsplit's message, whatever it quotes up to an '@' masked (its NFKC check quotes the netloc)."""
    return re.sub(r"^(.*?')?.*@", lambda m: (m[1] or "") + "***@", str(exc), flags=re.DOTALL)


@dataclass(frozen=True)
class OutboundBind:
    """Source addresses for outgoing connections, direct or to the upstream proxy (tor's
    TOR_PT_OUTBOUND_BIND_ADDRESS_V4/_V6)."""

    v4: str | None = None
    v6: str | None = None

    def source(self, family: int, ip: str) -> tuple[str, int] | None:
        """Where to bind before connecting to ``ip``; None for loopback destinations (pt-spec: ignored)."""
        if ipaddress.ip_address(ip).is_loopback:
            return None
        chosen = self.v4 if family == socket.AF_INET else self.v6 if family == socket.AF_INET6 else None
        return (chosen, 0) if chosen else None


async def open_socket(
    address: Address, proxy: UpstreamProxy | None, *, timeout: float = 30.0, bind: OutboundBind | None = None
) -> socket.socket:
    """A connected, non-blocking TCP socket to ``address``, through ``proxy`` if given.

    ``bind`` picks the source address of the connection, direct or to the proxy: pt-spec applies it to
    all outgoing packets but those to loopback.
    """
    if proxy is None:
        loop = asyncio.get_running_loop()
        infos = _literal(address) or await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                source = bind.source(family, str(sockaddr[0])) if bind is not None else None
                if source is not None:
                    sock.bind(source)
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, sockaddr)
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = exc if isinstance(exc, OSError) else TimeoutError("the TCP connect timed out")
                continue
            except BaseException:  # cancelled: the socket must not outlive the dial
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise last or OSError("the host name has no address")
    if proxy.scheme == "http":
        return await _http_tunnel(address, proxy, timeout, bind)
    if proxy.scheme == "socks4a" and ":" in address.host and is_ip(address.host):
        # SOCKS4a has an IPv4 address or a host name, and python-socks would send the literal as a
        # name, for the proxy to resolve or refuse its own way.  Reply 8 says what the matter is.
        raise ProxyRefused("SOCKS4a cannot carry an IPv6 destination: use a socks5 or http proxy", 8)
    from python_socks import ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.async_.asyncio import Proxy

    # Built from the parsed fields, not from a URL: python-socks' from_url would decode it again.
    upstream = Proxy(
        ProxyType[SCHEMES[proxy.scheme]], proxy.host, proxy.port, proxy.username, proxy.password, rdns=True
    )
    family = socket.AF_INET6 if ":" in proxy.host else socket.AF_INET
    source = bind.source(family, proxy.host) if bind is not None else None
    try:
        sock = await upstream.connect(address.host, address.port, timeout=timeout, local_addr=source)
    except ProxyTimeoutError as exc:
        raise TimeoutError(str(exc)) from exc
    except ProxyError as exc:
        raise ProxyRefused(str(exc), getattr(exc, "error_code", None)) from exc
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


HTTP_REPLY_LIMIT = 16384
"""Most bytes of an HTTP proxy's reply to CONNECT, status line to blank line; a longer one fails the dial."""

_HTTP_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")
_HOST_NAME = re.compile(rb"[A-Za-z0-9_.-]+")


async def _http_tunnel(
    address: Address, proxy: UpstreamProxy, timeout: float, bind: OutboundBind | None
) -> socket.socket:
    """A socket to ``address`` through the HTTP proxy (reached from ``bind``), within ``timeout`` seconds in all."""
    from python_socks import ProxyConnectionError

    try:
        async with asyncio.timeout(timeout):
            try:
                sock = await open_socket(Address(proxy.host, proxy.port), None, timeout=timeout, bind=bind)
            except TimeoutError:
                raise
            except OSError as exc:  # as python-socks reports a SOCKS proxy it cannot reach
                message = f"Could not connect to proxy {Address(proxy.host, proxy.port)} [{exc.strerror}]"
                raise ProxyConnectionError(exc.errno, message) from exc
            try:
                await _http_connect(sock, address, proxy)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise TimeoutError(f"Proxy connection timed out: {timeout}") from None
    return sock


async def _http_connect(sock: socket.socket, address: Address, proxy: UpstreamProxy) -> None:
    """Ask the HTTP proxy on ``sock`` for a tunnel to ``address``; raise ``ProxyRefused`` if it says no.

    Written by hand: python-socks reads the reply once, up to 64 KiB, and looks only at its status
    line, so the rest of the header block could become tunnel data and tunnel bytes in the same
    read were lost.  Here the reply is read with MSG_PEEK and only its bytes up to the blank line
    are taken from the socket, so whatever the proxy sent after them is still there, in order, for
    the transport (or the TLS layer) the socket is handed to.
    """
    loop = asyncio.get_running_loop()
    if is_ip(address.host):
        host = format_hostport(str(ipaddress.ip_address(address.host)), address.port).encode()
    else:
        name = address.host.encode("idna")
        if not _HOST_NAME.fullmatch(name):  # nothing that could end the request line or add a header
            raise UnicodeError("the destination is not a host name")
        host = name + b":%d" % address.port
    request = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (host, host)
    if proxy.username is not None:
        credentials = f"{proxy.username}:{proxy.password or ''}".encode()
        request += b"Proxy-Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"
    await loop.sock_sendall(sock, request + b"\r\n")
    head = bytearray()
    while True:
        await _readable(loop, sock)
        peeked = sock.recv(HTTP_REPLY_LIMIT + 1 - len(head), socket.MSG_PEEK)
        if not peeked:
            raise ProxyRefused("the HTTP proxy closed the connection within its reply", None)
        taken = len(head)
        head += peeked
        end = head.find(b"\r\n\r\n", max(0, taken - 3))
        if end >= 0 and end + 4 <= HTTP_REPLY_LIMIT:
            sock.recv(end + 4 - taken)  # all there (peeked): the tunnel's bytes stay in the socket
            break
        if len(head) > HTTP_REPLY_LIMIT:
            raise ProxyRefused(f"the HTTP proxy's reply is over {HTTP_REPLY_LIMIT} bytes", None)
        sock.recv(len(peeked))  # no blank line yet: all of it is the reply's
    status_line = bytes(head[: head.index(b"\r\n")])
    status = _HTTP_STATUS.fullmatch(status_line)
    if status is None:
        raise ProxyRefused(f"the HTTP proxy answered {status_line[:80].decode('latin-1')!r}", None)
    if status[1] != b"200":
        raise ProxyRefused(f"the HTTP proxy answered {status_line[:80].decode('latin-1')!r}", int(status[1]))


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` has something to read (or its end)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():  # it can run again before the waiting task resumes: the socket stays readable
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def create_connection(
    protocol_factory: Callable[[], P],
    address: Address,
    proxy: UpstreamProxy | None = None,
    *,
    timeout: float = 30.0,
    bind: OutboundBind | None = None,
) -> Coroutine[Any, Any, tuple[asyncio.Transport, P]]:
    """Connect ``protocol_factory()`` to ``address`` (through ``proxy``, from ``bind``'s source address).

    The plain case is one call into the event loop, which is markedly cheaper per connection than
    connecting a socket ourselves (it matters for connection setup latency).  Returns the
    coroutine that does it (await it): no coroutine of its own around the one that works.
    """
    loop = asyncio.get_running_loop()
    if proxy is None and bind is None:
        return _direct(loop, protocol_factory, address, timeout)
    return _through_socket(loop, protocol_factory, address, proxy, timeout, bind)


async def _through_socket(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], P],
    address: Address,
    proxy: UpstreamProxy | None,
    timeout: float,
    bind: OutboundBind | None,
) -> tuple[asyncio.Transport, P]:
    sock = await open_socket(address, proxy, timeout=timeout, bind=bind)
    try:
        transport, protocol = await loop.create_connection(protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


async def _direct(
    loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], P], address: Address, timeout: float
) -> tuple[asyncio.Transport, P]:
    """``loop.create_connection`` within ``timeout`` seconds.

    A timer that cancels the task, as ``asyncio.timeout`` does, without its context manager: this
    runs once per connection, and the three Python calls it saves are a measurable part of a
    connection's set-up.
    """
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    expired: list[bool] = []
    timer = loop.call_later(timeout, _expire, task, expired)
    try:
        transport, protocol = await loop.create_connection(protocol_factory, address.host, address.port)
    except asyncio.CancelledError:
        if expired and task.uncancel() <= cancelling:
            raise TimeoutError("the TCP connect timed out") from None
        raise
    finally:
        timer.cancel()
    if expired:  # connected as the timer fired: take its cancellation back, as asyncio.timeout does
        task.uncancel()
    return transport, protocol


def _expire(task: asyncio.Task[object], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


def _literal(address: Address) -> list[tuple[int, int, int, str, tuple[str, int]]] | None:
    """``getaddrinfo``'s answer for an IP literal, without its thread-pool round trip."""
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), address.port))]


class ProxyRefused(ConnectionError):
    """The upstream proxy refused to connect us (its reply code, when it gave one), or could not be
    asked to (a destination its protocol cannot carry: the SOCKS5 reply code that says so)."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Dialer:
    """How a transport opens its outgoing TCP connections: the one dial path of every client.

    Directly or through ``proxy`` (``-proxy``), from ``bind``'s source address (tor's outbound
    bind addresses), within ``timeout`` seconds.  Transports that own their connections (meek,
    Optimizer) dial through it too, so that the upstream proxy and the bind address hold for them.
    """

    proxy: UpstreamProxy | None = None
    bind: OutboundBind | None = None
    timeout: float = 30.0

    async def create_connection(
        self,
        protocol_factory: Callable[[], P],
        address: Address,
        *,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.Transport, P]:
        """Connect ``protocol_factory()`` to ``address`` (with TLS when ``ssl`` is given)."""
        if ssl is None:
            return await create_connection(protocol_factory, address, self.proxy, timeout=self.timeout, bind=self.bind)
        loop = asyncio.get_running_loop()
        sock = await open_socket(address, self.proxy, timeout=self.timeout, bind=self.bind)
        try:
            async with asyncio.timeout(self.timeout):
                transport, protocol = await loop.create_connection(
                    protocol_factory, sock=sock, ssl=ssl, server_hostname=server_hostname or address.host
                )
        except TimeoutError:
            sock.close()
            raise TimeoutError("the TLS handshake timed out") from None
        except BaseException:
            sock.close()
            raise
        return transport, protocol


DIRECT = Dialer()
"""Direct connections, no source address, 30 s to connect."""
