"""meek's HTTP/1.1, sans-IO: requests read by the server and responses read by the client with
httptools (llhttp, Node.js's C parser), and the few messages meek writes, serialized here.

h11 did this job first; its pure-Python parsing and event validation cost about 50 µs per
request/response pair on each side, llhttp about 2 (``bench/README.md``, "meek over httptools").

Requests are read as Go's net/http reads them for meek-server, with two differences: a method that
llhttp does not know (any token is a valid method to Go) gets the handler's ``400 Bad request.``
and a close only when the request starts a read, else the canned 400; and the trailers of a chunked
body (which Go keeps apart from the headers, and meek-server never reads) are dropped, and count
against the header limit (431).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

Headers = list[tuple[bytes, bytes]]
"""Header fields in arrival order; names in lower case."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REQUEST_LINE = re.compile(rb"(?:\r?\n)*[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP/1\.[01]\r?\n")


class HttpError(Exception):
    """A request we cannot read; ``status`` is what Go's server answers (canned unless ``handler``)."""

    def __init__(self, message: str, status: int = 400, *, handler: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.handler = handler  # well-formed enough for the handler's own 400 (an unknown method)


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` (lower case)."""
    for key, value in headers:
        if key == name:
            return value
    return None


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    too_large: bool  # the body went over the limit: ``body`` holds its first ``max_body`` bytes
    keep_alive: bool  # HTTP/1.1 without ``Connection: close`` (an HTTP/1.0 connection always closes)
    http10: bool


class _Stop(Exception):
    """Raised from a parser callback to stop reading (the error is kept in ``RequestReader``)."""


class RequestReader:
    """A server connection's incoming bytes in, complete requests out (``ready``), pipelining included."""

    def __init__(self, *, max_header_bytes: int, max_body: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body = max_body
        self.ready: deque[Request] = deque()
        self._parser = httptools.HttpRequestParser(self)
        self._error: HttpError | None = None
        self._stopped = False
        self._busy = False  # a message has begun and not completed
        self._head_bytes = 0  # bytes fed while the current message's headers were incomplete
        self._headers_done = False
        self._continue_due = False
        self._target = b""
        self._headers: Headers = []
        self._body = bytearray()
        self._too_large = False
        self._after_chunk_header = False  # a chunk's size line came, and no data after it yet
        self._trailer_bytes = 0
        self._counted_whole = False  # the piece being fed counts whole as trailer bytes

    @property
    def stopped(self) -> bool:
        """Nothing more is read on this connection (an Upgrade, a body over the limit, an error)."""
        return self._stopped

    @property
    def continue_due(self) -> bool:
        """The request under way asked for ``100 Continue`` and has sent no body yet (once)."""
        if self._continue_due and self._busy and self._headers_done and not self._body:
            self._continue_due = False
            return True
        return False

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises :class:`HttpError` when the connection must end with an answer."""
        if self._stopped or not data:
            return
        fresh = not self._busy
        if not self._headers_done or fresh:
            self._head_bytes += len(data)
        completed = len(self.ready)
        # After a chunk's size line with no data yet, the next piece is either that chunk's data or,
        # after the last (empty) chunk, trailers: it counts whole as trailers unless data arrives
        # (``on_body`` takes it back).  httptools buffers an unfinished trailer line, so the size of
        # the complete ones (``on_header``) alone would not bound what is held.
        self._counted_whole = self._busy and self._after_chunk_header
        if self._counted_whole:
            self._trailer_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stopped = True  # llhttp reads no further: the request is answered, then the connection closes
        except httptools.HttpParserError as exc:
            self._stopped = True
            if self._error is not None:
                if self._error.status == 0:  # the body went over the limit: the request is answered
                    return
                raise self._error from None
            unknown = isinstance(exc, httptools.HttpParserInvalidMethodError)
            if unknown and fresh and completed == len(self.ready) and _REQUEST_LINE.match(data):
                raise HttpError("unknown method", handler=True) from None
            raise HttpError(str(exc)) from None
        if self._busy and not self._headers_done and self._head_bytes > self.max_header_bytes:
            self._stopped = True
            raise HttpError("headers too large", 431)
        if self._busy and self._trailer_bytes > self.max_header_bytes:
            self._stopped = True
            raise HttpError("trailers too large", 431)

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._busy = True
        self._headers_done = False
        self._continue_due = False
        self._target = b""
        self._headers = []
        self._body = bytearray()
        self._too_large = False
        self._after_chunk_header = False
        self._trailer_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers_done:
            self._headers.append((name.lower(), value))
            return
        # A trailer: not a request header (Go keeps them apart; meek-server reads none).
        if not self._counted_whole:
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > self.max_header_bytes:
                self._fail(HttpError("trailers too large", 431))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        size = len(self._target) + sum(len(k) + len(v) + 4 for k, v in self._headers)
        if size > self.max_header_bytes:
            self._fail(HttpError("headers too large", 431))
        hosts = sum(1 for k, _ in self._headers if k == b"host")
        if hosts > 1 or (hosts == 0 and self._parser.get_http_version() != "1.0"):
            self._fail(HttpError("HTTP/1.1 needs exactly one Host header"))  # as Go, and h11
        codings = [v for k, v in self._headers if k == b"transfer-encoding"]
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
            self._fail(HttpError("unsupported transfer encoding", 501))  # Go's answer, as h11's
        expect = header(self._headers, b"expect")
        self._continue_due = expect is not None and expect.lower() == b"100-continue"

    def on_chunk_header(self) -> None:
        self._after_chunk_header = True

    def on_body(self, chunk: bytes) -> None:
        if self._after_chunk_header:
            self._after_chunk_header = False
            if self._counted_whole:  # the piece was chunk data after all
                self._counted_whole = False
                self._trailer_bytes = 0
        room = self.max_body - len(self._body)
        if len(chunk) > room:
            self._body += chunk[:room]
            self._too_large = True
            self._complete()
            self._fail(HttpError("body too large", 0))
        self._body += chunk

    def on_message_complete(self) -> None:
        self._complete()

    def _complete(self) -> None:
        parser = self._parser
        http10 = parser.get_http_version() == "1.0"
        self.ready.append(
            Request(
                method=parser.get_method(),
                target=self._target,
                headers=self._headers,
                body=bytes(self._body),
                too_large=self._too_large,
                keep_alive=not http10 and parser.should_keep_alive(),
                http10=http10,
            )
        )
        self._busy = False
        self._head_bytes = 0

    def _fail(self, error: HttpError) -> None:
        self._error = error
        raise _Stop


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes


class ResponseTooLarge(Exception):
    pass


class ResponseReader:
    """The client's side of one exchange: bytes in, one complete response out (1xx skipped)."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.reusable = True  # the connection can carry the next exchange
        self._status = 0
        self._headers: Headers = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._until_eof = False
        self._error: Exception | None = None

    def feed(self, data: bytes) -> None:
        """Raises ``ValueError`` for bytes that are not an HTTP response, :class:`ResponseTooLarge`."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.reusable = False
        except httptools.HttpParserError as exc:
            self.reusable = False
            if self._error is not None:
                raise self._error from None
            if self.response is None:
                raise ValueError(f"not an HTTP response: {exc}") from None

    def eof(self) -> bool:
        """The connection ended: whether that completed the response (a body read until close)."""
        self.reusable = False
        if self.response is None and self._headers_done and self._until_eof:
            self._finish()
        return self.response is not None

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.response is not None:
            self.reusable = False  # bytes after the response: the server is not speaking HTTP to us
            raise _Stop
        self._headers = []
        self._chunks = []
        self._size = 0
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        chunked = (header(self._headers, b"transfer-encoding") or b"").strip().lower().endswith(b"chunked")
        framed = chunked or header(self._headers, b"content-length") is not None
        self._until_eof = not framed and self._status >= 200 and self._status not in (204, 304)

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.max_body:
            self._error = ResponseTooLarge(f"response body over {self.max_body} bytes")
            raise _Stop
        self._chunks.append(chunk)

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._headers_done = False  # an interim answer (100 Continue): the real one follows
            return
        self._finish()

    def _finish(self) -> None:
        self.response = Response(self._status, self._headers, b"".join(self._chunks))
        if self._until_eof or not self._parser.should_keep_alive():
            self.reusable = False


REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
}


def response(status: int, headers: Headers, body: bytes, *, head_only: bool = False, close: bool = False,
             http10: bool = False) -> bytes:  # fmt: skip
    """A whole response as Go writes it: the headers in order, ``Connection: close`` last when the
    connection ends after it, the body chunked when the headers say so (HTTP/1.1 only: an HTTP/1.0
    client gets the bytes unframed, then the close)."""
    chunked = (b"Transfer-Encoding", b"chunked") in headers
    if chunked and http10:
        headers = [field for field in headers if field[0] != b"Transfer-Encoding"]
        chunked, close = False, True
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    if close and (b"Connection", b"close") not in headers:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if head_only:
        pass
    elif chunked:
        lines += [b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n"] if body else [b"0\r\n\r\n"]
    else:
        lines.append(body)
    return b"".join(lines)
