"""Seeds for the DarkStar, Starburst, Starbridge and meek targets (see :mod:`fuzz.seeds`): genuine
flights made by our own engines with the targets' deterministic keys, so they replay the same."""

from __future__ import annotations

import gzip

from ptdispatch.transports.meek.wire import MAX_REQUEST_BODY
from ptdispatch.transports.starburst import BANNER, EHLO, GO_AHEAD, STARTTLS, WELCOME

from .darkstar import darkstar_client, darkstar_server


def _pair() -> tuple[bytes, bytes, bytes, bytes]:
    """A genuine DarkStar exchange: client hello, server reply, a client frame, a server frame."""
    client, server = darkstar_client(), darkstar_server()
    client.initiate()
    hello = client.data_to_send()
    server.receive_data(hello)
    reply = server.data_to_send()
    client.receive_data(reply)
    client.send_data(b"GET / HTTP/1.0\r\n\r\n")
    server.send_data(b"HTTP/1.0 200 OK\r\n\r\nhello")
    return hello, reply, client.data_to_send(), server.data_to_send()


def darkstar_seeds() -> dict[str, dict[str, bytes]]:
    hello, reply, up, down = _pair()
    hello_frame = b"\x03\x00\x05hello"
    go_welcome = WELCOME.replace(b"250-STARTTLS", b"250 STARTTLS")
    return {
        "darkstar-server": {"hello": b"\x00" + hello + up, "hello-chunked": b"\x05" + hello + up},
        "darkstar-client": {"reply": b"\x00" + reply + down, "reply-chunked": b"\x03" + reply + down},
        "darkstar-handshake": {"to-server": b"\x01\x00\x00\x00\x00", "to-client": b"\x00\x00\x00\x00\x00"},
        "darkstar-frames": {"server": b"\x00\x00" + hello_frame, "client": b"\x02\x01" + hello_frame * 2},
        "starburst-server": {"swift": b"\x00" + EHLO + STARTTLS, "lines": b"\x02" + EHLO + STARTTLS},
        "starburst-client": {
            "swift": b"\x00" + BANNER + WELCOME + GO_AHEAD,
            "go": b"\x01" + BANNER + go_welcome + GO_AHEAD,
        },
        "starbridge-server": {
            "flight": b"\x00" + EHLO + STARTTLS + hello + up,
            "chunked": b"\x07" + EHLO + STARTTLS + hello,
        },
        "starbridge-client": {"flight": b"\x00" + BANNER + WELCOME + GO_AHEAD + reply + down},
    }


def _post(sid: bytes, body: bytes, extra: bytes = b"") -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: meek.example\r\nX-Session-Id: " + sid + b"\r\n" + extra
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def meek_seeds() -> dict[str, dict[str, bytes]]:
    sid = b"0123456789abcdef"
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nX-Session-Id: " + sid + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"5\r\nhello\r\n0\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello"
    big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + bytes(2048) + b"\r\n0\r\n\r\n"
    packed = gzip.compress(b"x" * 3000, mtime=0)
    zipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    return {
        "meek-server": {
            "root": b"\x00GET / HTTP/1.1\r\nHost: meek.example\r\n\r\n",
            "session": b"\x00" + _post(sid, b"") + _post(sid, b"hello") + _post(sid, b"!bye") + _post(sid, b"x"),
            "pipelined": b"\x03"
            + _post(sid, bytes(3000))
            + b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
            + _post(b"short", b"a"),
            "continue": b"\x01" + _post(sid, b"abc", b"Expect: 100-continue\r\n") + chunked,
            "too-large": b"\x00" + _post(sid, bytes(MAX_REQUEST_BODY + 1)),
            "garbage": b"\x00\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        },
        "meek-client": {
            "ok": b"\x00\x02" + ok + big,
            "gzip": b"\x05\x01" + zipped,
            "errors": b"\x00\x03"
            + ok.replace(b"200 OK", b"500 Internal Server Error")
            + b"HTTP/1.1 404 Not Found\r\n\r\n",
        },
    }
