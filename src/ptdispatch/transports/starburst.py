"""Starburst: the SMTP-looking toneburst in front of DarkStar (Starbridge, Replicant).

We speak the Swift script (Starbridge ``5c0a1e7``, notes section 4.2), which is also what the
newest Operator server stack runs::

    S->C  220 mail.imc.org SMTP service ready
    C->S  EHLO mail.imc.org
    S->C  250-mail.imc.org offers a warm hug of welcome / 250-8BITMIME / 250-DSN / 250-STARTTLS
    C->S  STARTTLS
    S->C  220 Go ahead

and listen leniently: any 220 banner, any ``EHLO`` domain, a 250 block whose last line is
``250-STARTTLS`` (Swift) or ``250 STARTTLS`` (Go), input split anywhere.  A line may hold at most
253 bytes and each listening step must complete within 10 s.  Then the DarkStar handshake runs on
the same socket: :class:`TonedEngine` chains the two.

Step deadlines are exact: a listening step's 10 s start when we finish speaking before it (or at
the connection's start), and :class:`TonedEngine`'s timer (``get_timer``/``handle_timer``) is that
step's deadline, so a peer that stalls in any step is cut at its own deadline
(``HandshakeTimeout``), and a line that completes a step late is refused.  After the toneburst the
DarkStar handshake is one more step, with its own 10 s; DarkStar's own random handshake timeout,
counted from the connection's start, bounds the whole exchange.  A configured handshake timeout
shorter than 10 s (tests) replaces the 10 s of every step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from ..errors import HandshakeTimeout, RemoteProtocolError
from .base import Clock, Engine, Timeouts

LINE_LIMIT = 253
STEP_TIMEOUT = 10.0
MAX_250_LINES = 16

BANNER = b"220 mail.imc.org SMTP service ready\r\n"
EHLO = b"EHLO mail.imc.org\r\n"
WELCOME = b"250-mail.imc.org offers a warm hug of welcome\r\n250-8BITMIME\r\n250-DSN\r\n250-STARTTLS\r\n"
STARTTLS = b"STARTTLS\r\n"
GO_AHEAD = b"220 Go ahead\r\n"

_EHLO = re.compile(rb"\AEHLO [\x21-\x7e]{1,240}\Z", re.IGNORECASE)
_250 = re.compile(rb"\A250[- ]")
_250_STARTTLS = re.compile(rb"\A250[- ]STARTTLS\Z", re.IGNORECASE)

Listen = Callable[[bytes], bool]
"""Takes one line (without CRLF); True when the step is complete, False for more lines; raises
``ValueError`` on a mismatch."""


def _expect(pattern: re.Pattern[bytes], what: str) -> Listen:
    def listen(line: bytes) -> bool:
        if not pattern.match(line):
            raise ValueError(f"expected {what}, got {line[:40]!r}")
        return True

    return listen


def _ehlo_block() -> Listen:
    lines = 0

    def listen(line: bytes) -> bool:
        nonlocal lines
        lines += 1
        if not _250.match(line) or lines > MAX_250_LINES:
            raise ValueError(f"expected a 250 reply line, got {line[:40]!r}")
        return bool(_250_STARTTLS.match(line))

    return listen


def client_script() -> list[bytes | Listen]:
    return [
        _expect(re.compile(rb"\A220[ -]"), "a 220 banner"),
        EHLO,
        _ehlo_block(),
        STARTTLS,
        _expect(re.compile(rb"\A220"), "220 Go ahead"),
    ]


def server_script() -> list[bytes | Listen]:
    return [
        BANNER,
        _expect(_EHLO, "EHLO <domain>"),
        WELCOME,
        _expect(re.compile(rb"\ASTARTTLS\Z", re.IGNORECASE), "STARTTLS"),
        GO_AHEAD,
    ]


class Starburst:
    """One side of the SMTP exchange, sans-IO.  Bytes after the last line belong to DarkStar."""

    def __init__(
        self, script: list[bytes | Listen], *, clock: Clock = time.monotonic, step_timeout: float = STEP_TIMEOUT
    ) -> None:
        self._script = list(script)
        self._clock = clock
        self._buffer = b""
        self._out: list[bytes] = []
        self._deadline = 0.0
        #: Seconds each listening step may take.
        self.step_timeout = step_timeout

    @property
    def done(self) -> bool:
        return not self._script

    @property
    def deadline(self) -> float:
        """When the current listening step must be complete (``clock()`` seconds)."""
        return self._deadline

    def start(self) -> None:
        self._speak()

    def clock(self) -> float:
        """The time now, by this toneburst's clock."""
        return self._clock()

    def take(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; once :attr:`done`, return what follows the exchange.  A mismatch, an
        over-long line or a late step raises ``ValueError``."""
        self._buffer += data
        while self._script:
            if self._clock() > self._deadline:
                raise ValueError(f"a toneburst step took more than {self.step_timeout:g} s")
            end = self._buffer.find(b"\r\n", 0, LINE_LIMIT + 2)
            if end < 0:
                if len(self._buffer) > LINE_LIMIT:
                    raise ValueError(f"a toneburst line is longer than {LINE_LIMIT} bytes")
                return b""
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            listen = self._script[0]
            assert not isinstance(listen, bytes)
            if listen(line):
                self._script.pop(0)
                self._speak()
        rest, self._buffer = self._buffer, b""
        return rest

    def _speak(self) -> None:
        while self._script and isinstance(self._script[0], bytes):
            self._out.append(self._script.pop(0))  # type: ignore[arg-type]
        self._deadline = self._clock() + self.step_timeout


class TonedEngine(Engine):
    """A toneburst, then ``inner`` (the DarkStar engine) on the same connection.

    A failed or late toneburst lingers as ``inner`` would after its own failure at that time (the
    server's prober treatment: until the DarkStar engine's close time; 0 for a client).  Times come
    from the toneburst's clock, which must be the adapter's (``time.monotonic``) unless a test
    injects both.
    """

    def __init__(self, tone: Starburst, inner: Engine) -> None:
        self._tone = tone
        self._inner = inner
        self._inner_started = False
        self._inner_deadline: float | None = None
        self._step_timeout = tone.step_timeout

    @property
    def inner(self) -> Engine:
        return self._inner

    @property
    def established(self) -> bool:
        return self._inner_started and self._inner.established

    def start(self, now: float, timeouts: Timeouts) -> None:
        super().start(now, timeouts)
        self._step_timeout = min(self._tone.step_timeout, timeouts.handshake)
        self._tone.step_timeout = self._step_timeout
        self._inner.start(now, timeouts)  # its own (random) deadline bounds the whole handshake

    def failure_linger(self) -> float:
        return self._inner.linger_at(self._tone.clock())

    def initiate(self) -> None:
        self._tone.start()
        self._maybe_start_inner()

    def get_timer(self) -> float | None:
        if self.established:
            return self._inner.get_timer()
        if not self._inner_started:
            return self._tone.deadline
        inner = self._inner.get_timer()
        assert self._inner_deadline is not None
        return self._inner_deadline if inner is None else min(inner, self._inner_deadline)

    def handle_timer(self, now: float) -> None:
        if self._inner_started:
            assert self._inner_deadline is not None
            if not self._inner.established and now >= self._inner_deadline:
                self._timeout("the DarkStar handshake", now)
            self._inner.handle_timer(now)
        elif now >= self._tone.deadline:
            self._timeout("a toneburst step", now)

    def _timeout(self, what: str, now: float) -> None:
        raise HandshakeTimeout(
            f"Starburst: {what} took more than {self._step_timeout:g} s", linger=self._inner.linger_at(now)
        )

    def receive_data(self, data: bytes) -> bytes:
        if self._inner_started:
            return self._inner.receive_data(data)
        try:
            rest = self._tone.feed(data)
        except ValueError as exc:
            raise RemoteProtocolError(f"Starburst: {exc}", linger=self.failure_linger()) from None
        if not self._maybe_start_inner() or not rest:
            return b""
        return self._inner.receive_data(rest)

    def receive_eof(self) -> None:
        if not self._inner_started:
            raise RemoteProtocolError("Starburst: connection closed during the toneburst")
        self._inner.receive_eof()

    def _maybe_start_inner(self) -> bool:
        if self._tone.done and not self._inner_started:
            self._inner_started = True
            self._inner_deadline = self._tone.clock() + self._step_timeout
            self._inner.initiate()
        return self._inner_started

    def send_data(self, data: bytes) -> None:
        self._inner.send_data(data)

    def data_to_send(self) -> bytes:
        tone = self._tone.take()
        if not self._inner_started:
            return tone
        inner = self._inner.data_to_send()
        return tone + inner if tone else inner

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._inner.get_extra_info(name, default)

    def buffered_size(self) -> int:
        return self._inner.buffered_size() if self._inner_started else 0
