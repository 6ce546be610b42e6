"""Active probing of the meek server (issue 13).

meek-server is a web server: what a prober sees is its HTTP answers (section 2.2 of the wire
notes: the root page, 404, 400, 500, Go's canned errors for unparsable requests), never silence.
So the meek rows check that garbage gets only those answers, never a reset, and a close either at
once after a canned error (as Go's net/http) or by the server's own read timeout; and that no probe
reaches the target.  (A POST carrying an ``X-Session-Id`` of 8 or more bytes *is* a meek client:
meek has no authentication of its own, by design; it opens an upstream, and is not a probe here.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fuzz.meek import check_answers

from ptdispatch import api
from ptdispatch.transports.meek import MeekServer, Tuning

from .harness import Echo, T, Target, all_probes, probe, random_payloads

READ_TIMEOUT = 2 * T
"""The shrunk read timeout (meek-server's 20 s): a request not complete by then is dropped."""


@contextlib.asynccontextmanager
async def serving_meek(state_dir: Path) -> AsyncIterator[Target]:
    target = Target()
    server = api.server_transport("meek", {}, state_dir)
    assert isinstance(server, MeekServer)
    server.tuning = Tuning(read_timeout=READ_TIMEOUT, dial_wait=T)
    target.server = server
    listener = await api.listen(server, "127.0.0.1", 0, lambda: Echo(target))
    target.port = listener.sockets[0].getsockname()[1]
    try:
        yield target
    finally:
        listener.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_random_probes_get_only_meek_server_answers(tmp_path: Path) -> None:
    payloads = random_payloads()
    async with serving_meek(tmp_path) as target:
        seen = await all_probes(target.port, payloads, wait=READ_TIMEOUT + 10)
    assert target.connections == 0, f"{target.connections} probes reached the target"
    for s in seen:
        where = f"meek: probe of {s.sent} bytes"
        assert s.ending == "eof", f"{where} ended by {s.ending}"
        check_answers(s.received)
        if not s.received:  # nothing parsable yet: the read timeout closes it, not a byte count
            assert s.after_connect >= 0.5 * READ_TIMEOUT, f"{where} closed after {s.after_connect:.2f} s"
        assert s.after_last_byte <= READ_TIMEOUT + 5, f"{where} closed after {s.after_last_byte:.2f} s"


HTTP_PROBES = {
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n": b"200",
    b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n": b"404",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n": b"400",  # meek-server serves GET and POST only
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n": b"400",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc": b"400",  # no session id
    b"POST / HTTP/1.1\r\nHost: x\r\nX-Session-Id: short\r\nContent-Length: 0\r\n\r\n": b"400",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n": b"400",
    b"GET / HTTP/1.1\r\n\r\n": b"400",  # HTTP/1.1 without Host
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32) + b"\r\n\r\n": b"400",  # TLS on plain HTTP
}


@pytest.mark.timeout(60)
async def test_http_probes_get_meek_server_answers_and_never_reach_the_target(tmp_path: Path) -> None:
    async with serving_meek(tmp_path) as target:
        seen = await asyncio.gather(*(probe(target.port, p, wait=READ_TIMEOUT + 5) for p in HTTP_PROBES))
    for (payload, status), s in zip(HTTP_PROBES.items(), seen, strict=True):
        where = f"meek: {payload[:30]!r}"
        assert s.received.startswith(b"HTTP/1.1 " + status + b" "), f"{where} got {s.received[:60]!r}"
        check_answers(s.received)
        assert s.ending != "rst", f"{where} was reset"
    assert target.connections == 0, "an HTTP probe reached the target"
