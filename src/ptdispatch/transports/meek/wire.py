"""meek's wire, sans-IO: the request a client sends, the responses a server gives, the poll schedule.

Facts from ``meek-wire-notes.md``: section 1.3 (request bytes), 1.5 (poll schedule) and 2.2 (the
server's exact answers, as Go's net/http writes them for meek-server v0.38.0).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from email.utils import formatdate

from .h1 import Headers, header
from .options import MeekUrl

MAX_PAYLOAD = 0x10000
"""Bytes in one request or response body (both directions)."""
MAX_REQUEST_BODY = MAX_PAYLOAD + 1
"""meek-server's ``MaxBytesReader`` limit: more than this ends the session."""
CHUNKING_THRESHOLD = 2048
"""Go's ``bufferBeforeChunkingSize``: longer response bodies are sent chunked."""
MIN_SESSION_ID = 8
TURNAROUND = 0.010
INIT_POLL = 0.100
POLL_MULTIPLIER = 1.5
MAX_POLL = 5.0

ROOT_BODY = "I\u2019m just a happy little web server.\n".encode()
NOT_FOUND_BODY = b"404 page not found\n"
BAD_REQUEST_BODY = b"Bad request.\n"
INTERNAL_ERROR_BODY = b"Internal server error.\n"
TEXT_PLAIN = b"text/plain; charset=utf-8"
OCTET_STREAM = b"application/octet-stream"


def new_session_id(rng: Callable[[int], bytes]) -> str:
    """meek_lite's id: SHA-256 of 64 random bytes, first 16 bytes, lowercase hex (32 chars)."""
    return hashlib.sha256(rng(64)).digest()[:16].hex()


def next_poll_interval(interval: float, sent: bool, received: bool) -> float:
    """The wait before the next request (section 1.5): 0 after data, else 100 ms growing x1.5 to 5 s."""
    if received or sent:
        return 0.0
    if interval == 0.0:
        return INIT_POLL
    return min(interval * POLL_MULTIPLIER, MAX_POLL)


class Requests:
    """The POSTs of one session (section 1.3), header for header as obfs4proxy 0.0.14 sends them;
    only ``Content-Length`` differs from one to the next."""

    def __init__(self, url: MeekUrl, session_id: str) -> None:
        self._head = f"POST {url.target} HTTP/1.1\r\nHost: {url.host_header}\r\nContent-Length: ".encode()
        self._tail = f"\r\nX-Session-Id: {session_id}\r\nAccept-Encoding: gzip\r\n\r\n".encode()

    def post(self, body: bytes) -> bytes:
        return b"%s%d%s%s" % (self._head, len(body), self._tail, body)


_date_cache: list[tuple[int, bytes]] = [(-1, b"")]


def http_date(now: float) -> bytes:
    """``Date:`` as Go writes it (RFC 7231 IMF-fixdate); computed once a second."""
    second = int(now)
    cached = _date_cache[0]
    if cached[0] != second:
        cached = _date_cache[0] = (second, formatdate(second, usegmt=True).encode())
    return cached[1]


def text_reply(body: bytes, date: bytes, *, nosniff: bool = True) -> Headers:
    """Go's ``http.Error`` (and meek-server's root page when ``nosniff`` is false): its headers."""
    headers: Headers = [(b"Content-Type", TEXT_PLAIN)]
    if nosniff:
        headers.append((b"X-Content-Type-Options", b"nosniff"))
    headers += [(b"Date", date), (b"Content-Length", str(len(body)).encode())]
    return headers


def data_reply(payload: bytes, date: bytes) -> Headers:
    """A 200 carrying upstream bytes: Content-Length up to 2048 bytes, chunked above."""
    headers: Headers = [(b"Content-Type", OCTET_STREAM), (b"Date", date)]
    if len(payload) > CHUNKING_THRESHOLD:
        headers.append((b"Transfer-Encoding", b"chunked"))
    else:
        headers.append((b"Content-Length", str(len(payload)).encode()))
    return headers


def too_large_reply(date: bytes) -> Headers:
    """What Go sends after ``MaxBytesReader`` tripped and the handler wrote nothing (status 200)."""
    return [(b"Date", date), (b"Content-Length", b"0"), (b"Connection", b"close")]


def canned_error(status: int) -> bytes:
    """Go's answer to a request it cannot parse (written raw; the connection then closes)."""
    reasons = {
        400: "Bad Request",
        413: "Request Entity Too Large",
        431: "Request Header Fields Too Large",
        501: "Not Implemented",
    }
    text = f"{status} {reasons.get(status, 'Bad Request')}" if status in reasons else "400 Bad Request"
    return (f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{text}").encode()


def clean_path(target: bytes) -> str:
    """``path.Clean`` of the request target's path (the query is ignored)."""
    path = target.split(b"?", 1)[0].decode("latin-1")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def user_ip(headers: Sequence[tuple[bytes, bytes]], peer_ip: str | None) -> str | None:
    """meek-server's USERADDR IP: ``Meek-IP``, else the first ``X-Forwarded-For`` entry, else the
    TCP peer.  A header value that is not an IP gives ``None`` (USERADDR is then left out).

    An IPv6 scope id (``fe80::1%eth0``) is refused, as Go's ``net.ParseIP`` in meek-server does:
    ``ipaddress`` takes any characters after the ``%``, which would put the peer's own text in
    our log lines (the client's address, with ``-unsafeLogging``)."""
    value = header(headers, b"meek-ip")
    if value is None:
        value = header(headers, b"x-forwarded-for")
    if value is None:
        return peer_ip
    text = value.decode("latin-1").split(",", 1)[0].strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return str(address)


MAX_TRIES = 10
RETRY_BASE = 0.1
RETRY_MAX = 2.0
SUCCESS, ENDED, GIVE_UP = "success", "ended", "give-up"
TRAP_IDLE = 1.0
"""Seconds a keep-alive connection must have been idle before a request for a failure with no
answer to be taken for the keep-alive trap (section 1.6): a server or CDN closing the connection at
its idle timeout just as we reuse it.  Such timeouts are seconds long (meek-server 20 s, nginx 75 s,
haproxy's ``http-keep-alive`` typically 1 s or more).  A connection busy until just before may
instead have died after the server read the body (a relay dropping us, a reset): a failure without
an answer cannot tell the two apart, and a resend would then hand the server's application the same
bytes twice, and lose the first answer."""


class RetryPolicy:
    """What the client does after each attempt at one POST (sans-IO; section 1.6-1.7, improved).

    * a transport failure before any response byte, on a keep-alive connection that had been idle
      for at least ``trap_idle`` seconds (the keep-alive trap), is sent again at once on a fresh
      connection, once; any other transport failure ends the stream, as in obfs4proxy;
    * 200 is success; 500 is meek-server's "session over" (retrying would open a new upstream);
    * any other status is retried after 0.1 s doubling to 2 s, at most 10 answers in all.
    """

    trap_idle = TRAP_IDLE  # tests shrink it

    def __init__(self) -> None:
        self.resent = False
        self.answers = 0

    def resend_after_failure(self, idle: float | None, answered: bool) -> bool:
        """After a broken exchange: resend now (True) or give up (False).  ``idle``: how long the
        connection had been idle before the request (None: a fresh connection); ``answered``:
        whether any response byte came."""
        if idle is not None and idle >= self.trap_idle and not answered and not self.resent:
            self.resent = True
            return True
        return False

    def after_status(self, status: int) -> str | float:
        """SUCCESS, ENDED, GIVE_UP, or the seconds to wait before sending the same body again."""
        if status == 200:
            return SUCCESS
        if status == 500:
            return ENDED
        self.answers += 1
        if self.answers >= MAX_TRIES:
            return GIVE_UP
        return min(RETRY_BASE * (1 << (self.answers - 1)), RETRY_MAX)
