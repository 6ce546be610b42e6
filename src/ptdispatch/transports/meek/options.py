"""meek's options, parsed into frozen classes (``url``, ``front``, ``utls``; server ``cert``/``key``,
``maxSessions``)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...errors import OptionsError
from ...net.addr import Address, parse_hostport
from ..base import RawOptions
from ..options import get_int, get_str

NAME = "meeklite"
CLIENT_KEYS = frozenset({"url", "front", "utls"})
SERVER_KEYS = frozenset({"url", "front", "cert", "key", "maxSessions"})
MAX_SESSIONS = 4096
"""The server's default session cap (``maxSessions``): each session holds one upstream connection."""

log = logging.getLogger("ptdispatch.meek")


@dataclass(frozen=True)
class MeekUrl:
    """A parsed meek ``url``: where requests go and what they say."""

    scheme: str  # "http" or "https"
    host: str  # without brackets
    port: int
    host_header: str  # the url's host[:port] as written (the Host: header)
    target: str  # path and query, "/" when empty

    @classmethod
    def parse(cls, text: str) -> MeekUrl:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise OptionsError(NAME, f"option 'url': invalid scheme {parts.scheme or '(none)'!r}; use http or https")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise OptionsError(NAME, f"option 'url': {exc}") from None
        if not host:
            raise OptionsError(NAME, f"option 'url' {text!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise OptionsError(NAME, "option 'url' must not carry a user name or password")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if any(c in target for c in " \r\n\t") or not target.isascii():
            raise OptionsError(NAME, "option 'url': the path must be ASCII without spaces (percent-encode it)")
        host_header = parts.netloc.rpartition("@")[2]
        if not host_header.isascii() or not host_header.isprintable() or " " in host_header:
            raise OptionsError(NAME, "option 'url': the host must be ASCII without spaces (xn-- for a non-ASCII name)")
        return cls(scheme, host, port or (443 if scheme == "https" else 80), host_header, target)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True)
class ClientOptions:
    """Validated client options: requests go to ``url``; TCP, DNS and TLS go to ``front`` if set."""

    url: MeekUrl
    front: Address | None = None

    @property
    def dial_address(self) -> Address:
        """Where the TCP connection goes (the front, else the url's host)."""
        return self.front or Address(self.url.host, self.url.port)

    @classmethod
    def parse(cls, raw: RawOptions) -> ClientOptions:
        url_text = get_str(raw, NAME, "url")
        if not url_text:
            raise OptionsError(NAME, "missing option 'url'", missing=True)
        url = MeekUrl.parse(url_text)
        front_text = get_str(raw, NAME, "front") or ""
        front = None
        if front_text:
            try:
                default_port = 443 if url.tls else 80  # Go replaces the url's whole host[:port]
                front = (
                    parse_hostport(front_text)
                    if _has_port(front_text)
                    else Address(front_text.strip("[]"), default_port)
                )
            except ValueError as exc:
                raise OptionsError(NAME, f"option 'front': {exc}") from None
            if front.port == 0 or not front.host:
                raise OptionsError(NAME, f"option 'front' {front_text!r}: needs a host and a non-zero port")
        utls = get_str(raw, NAME, "utls")
        if utls is not None:
            log.warning("meek: option utls=%s is ignored (Python's ssl cannot imitate a browser ClientHello)", utls)
        return cls(url, front)


def _has_port(text: str) -> bool:
    if text.startswith("["):
        return "]:" in text
    return text.count(":") == 1


@dataclass(frozen=True)
class ServerOptions:
    """Validated server options: ``url``/``front`` to publish; ``cert``+``key`` for TLS;
    ``maxSessions``, the most sessions at once (meek-server has no cap)."""

    url: str | None = None
    front: str | None = None
    cert: str | None = None
    key: str | None = None
    max_sessions: int = MAX_SESSIONS

    @classmethod
    def parse(cls, raw: RawOptions) -> ServerOptions:
        url = get_str(raw, NAME, "url") or None
        if url is not None:
            MeekUrl.parse(url)
        front = get_str(raw, NAME, "front") or None
        cert = get_str(raw, NAME, "cert") or None
        key = get_str(raw, NAME, "key") or None
        if (cert is None) != (key is None):
            raise OptionsError(NAME, "options 'cert' and 'key' go together (PEM file paths)")
        max_sessions = get_int(raw, NAME, "maxSessions", default=MAX_SESSIONS, low=1, high=10_000_000)
        options = cls(url, front, cert, key, max_sessions)
        options.ssl_context()  # a bad file fails at start-up
        return options

    def publish(self) -> dict[str, str]:
        """The SMETHOD ARGS: what a bridge line needs."""
        out = {}
        if self.url:
            out["url"] = self.url
        if self.front:
            out["front"] = self.front
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert is None or self.key is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise OptionsError(NAME, f"options 'cert'/'key': cannot load {self.cert}, {self.key}: {exc}") from None
        ctx.set_alpn_protocols(["http/1.1"])  # no h2: lyrebird then speaks HTTP/1.1
        return ctx


def client_context() -> ssl.SSLContext:
    """The system trust store, honouring SSL_CERT_FILE / SSL_CERT_DIR (as Go does); no ALPN, like
    obfs4proxy 0.0.14 (so the server never picks HTTP/2)."""
    return ssl.create_default_context()
