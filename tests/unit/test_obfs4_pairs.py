"""obfs4 client and server engines joined in memory: round trips, padding, pacing, bad input."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ptdispatch.errors import LocalProtocolError, RemoteProtocolError
from ptdispatch.transports.base import Engine, ServerContext
from ptdispatch.transports.obfs4 import SPEC, Obfs4Client, Obfs4Server
from ptdispatch.transports.obfs4.engine import MAX_CLOSE_JITTER, ServerEngine
from ptdispatch.transports.obfs4.framing import HEADER_LENGTH, MAX_SEGMENT, framed_length
from ptdispatch.transports.obfs4.handshake import MAX_HANDSHAKE
from ptdispatch.transports.obfs4.probdist import Sampler

NOW = 1_700_000_000.0


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def make_server(tmp_path: Path, iat_mode: int = 0, clock: Callable[[], float] = lambda: NOW) -> Obfs4Server:
    ctx = ServerContext(state_dir=tmp_path, rng=os.urandom, clock=clock)
    server = SPEC.server({"iat-mode": str(iat_mode)}, ctx)
    assert isinstance(server, Obfs4Server)
    return server


def make_client(server: Obfs4Server, iat_mode: int = 0, clock: Callable[[], float] = lambda: NOW) -> Obfs4Client:
    client = SPEC.client({"cert": server.cert, "iat-mode": iat_mode})
    assert isinstance(client, Obfs4Client)
    return Obfs4Client(client.node_id, client.public_key, iat_mode, os.urandom, clock)


def timed_writes(engine: Engine) -> list[tuple[bytes, float]]:
    """Every write the engine makes, driving its timer on a simulated clock: ``(bytes, time)``."""
    now = 0.0
    writes = []
    out = engine.data_to_send()
    if out:
        writes.append((out, now))
    while engine.buffered_size():
        when = engine.get_timer()
        assert when is not None, "queued output needs a timer"
        now = max(now, when)
        engine.handle_timer(now)
        out = engine.data_to_send()
        if out:
            writes.append((out, now))
    return writes


def wire(engine: Engine) -> bytes:
    writes = timed_writes(engine)
    assert all(chunk for chunk, _ in writes), "never an empty write"
    return b"".join(chunk for chunk, _ in writes)


def handshake(client: Engine, server: Engine) -> tuple[bytes, bytes]:
    """Run the handshake; return (client message, server reply)."""
    client.initiate()
    hello = wire(client)
    assert server.receive_data(hello) == b""
    assert server.established
    reply = wire(server)
    assert client.receive_data(reply) == b""
    assert client.established
    return hello, reply


def pair(tmp_path: Path, iat_mode: int = 0) -> tuple[Engine, Engine, Obfs4Server]:
    server = make_server(tmp_path, iat_mode)
    c, s = make_client(server, iat_mode).new_engine(None), server.new_engine()
    handshake(c, s)
    return c, s, server


@pytest.mark.parametrize("iat_mode", [0, 1, 2])
def test_round_trip_both_ways(tmp_path: Path, iat_mode: int) -> None:
    c, s, _ = pair(tmp_path, iat_mode)
    for size in (1, 1427, 1428, 5000, 70_000):
        data = os.urandom(size)
        c.send_data(data)
        assert s.receive_data(wire(c)) == data
        s.send_data(data)
        assert c.receive_data(wire(s)) == data


def test_handshake_sizes_follow_obfs4proxy(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    for _ in range(5):
        c, s = make_client(server).new_engine(None), server.new_engine()
        hello, reply = handshake(c, s)
        assert 32 + 77 + 32 <= len(hello) <= MAX_HANDSHAKE
        assert 96 + 45 <= len(reply) <= MAX_HANDSHAKE  # reply + inline seed frame


@pytest.mark.parametrize("iat_mode", [1, 2])
def test_paced_writes_are_small_with_short_delays(tmp_path: Path, iat_mode: int) -> None:
    c, _s, _ = pair(tmp_path, iat_mode)
    c.send_data(os.urandom(20_000))
    assert c.buffered_size() > 20_000
    assert c.data_to_send() == b""  # shaped writes wait for the timer, which is due at once
    assert c.get_timer() == 0.0
    writes = timed_writes(c)
    assert len(writes) > 1
    assert all(0 < len(chunk) <= MAX_SEGMENT for chunk, _ in writes)  # one piece per write
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(writes)]
    assert all(0.0 <= gap <= 0.01 + 1e-9 for gap in gaps) and any(gaps)  # 0-10 ms, in float
    assert c.buffered_size() == 0 and c.get_timer() is None


@pytest.mark.parametrize("iat_mode", [1, 2])
def test_the_pause_after_a_writes_last_piece_holds_the_next_write(
    tmp_path: Path, iat_mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """obfs4proxy's Write sleeps after every piece, the last included, so the next write's
    first piece goes no sooner than that; an idle engine needs no timer meanwhile."""
    c, s, _ = pair(tmp_path, iat_mode)
    monkeypatch.setattr(c, "_delay", lambda: 0.005)  # every pause 5 ms

    def drain(now: float) -> tuple[bytes, float]:
        """Every queued piece, each released when due from ``now``; and the last one's time."""
        out = b""
        while c.buffered_size():
            when = c.get_timer()
            assert when is not None
            now = max(now, when)
            c.handle_timer(now)
            out += c.data_to_send()
        return out, now

    c.send_data(b"a")
    assert c.get_timer() == 0.0  # the first write of a connection: at once
    first, last = drain(1.0)
    assert c.get_timer() is None
    c.send_data(b"b")  # 1 ms after the last piece: 4 ms of its pause are left
    assert c.get_timer() == pytest.approx(last + 0.005)
    c.handle_timer(last + 0.001)
    assert c.data_to_send() == b"" and c.get_timer() == pytest.approx(last + 0.005)
    second, last = drain(last + 0.001)
    assert c.get_timer() is None
    c.send_data(b"c")  # due when the pause ends: at once for a timer that runs later
    assert c.get_timer() == pytest.approx(last + 0.005)
    third, _ = drain(last + 1.0)
    assert s.receive_data(first + second + third) == b"abc"


def test_iat_none_is_one_write_and_padded(tmp_path: Path) -> None:
    c, s, _ = pair(tmp_path, 0)
    c.send_data(b"x")
    assert c.get_timer() is None and c.buffered_size() == 0
    out = c.data_to_send()
    assert len(out) >= 2 + 16 + 3 + 1  # at least the payload frame
    assert c.data_to_send() == b""
    assert s.receive_data(out) == b"x"


def test_client_learns_the_server_seed(tmp_path: Path) -> None:
    c, _, server = pair(tmp_path)
    from ptdispatch.transports.obfs4.probdist import distribution

    values, _ = distribution(server.state.drbg_seed, 0, MAX_SEGMENT)
    assert c._len is not None  # type: ignore[attr-defined]
    assert c._len.values == values  # type: ignore[attr-defined]


def test_send_before_handshake_is_our_bug(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with pytest.raises(LocalProtocolError):
        make_client(server).new_engine(None).send_data(b"x")


@pytest.mark.parametrize("skew_hours", [-1, 0, 1])
def test_epoch_hour_window_accepted(tmp_path: Path, skew_hours: int) -> None:
    server = make_server(tmp_path, clock=lambda: NOW + 3600 * skew_hours)
    handshake(make_client(server).new_engine(None), server.new_engine())


def test_epoch_hour_outside_window_rejected(tmp_path: Path) -> None:
    server = make_server(tmp_path, clock=lambda: NOW + 2 * 3600)
    c, s = make_client(server).new_engine(None), server.new_engine()
    c.initiate()
    with pytest.raises(RemoteProtocolError) as info:
        s.receive_data(wire(c))
    assert info.value.linger > 0
    assert wire(s) == b""


# --- bad input -------------------------------------------------------------------------------


def _server_engine(tmp_path: Path) -> tuple[Obfs4Server, ServerEngine]:
    server = make_server(tmp_path)
    engine = server.new_engine()
    assert isinstance(engine, ServerEngine)
    return server, engine


def _feed_until_failure(engine: Engine, data: bytes) -> RemoteProtocolError:
    """Feed ``data`` then filler; the engine must stay silent and fail by 8192 bytes."""
    assert engine.receive_data(data) == b""
    assert not engine.established and wire(engine) == b""
    with pytest.raises(RemoteProtocolError) as info:
        engine.receive_data(os.urandom(MAX_HANDSHAKE))
    assert wire(engine) == b""
    return info.value


def test_server_linger_is_30s_plus_seeded_delay_plus_jitter(tmp_path: Path) -> None:
    server, engine = _server_engine(tmp_path)
    err = _feed_until_failure(engine, b"")
    base = 30 + server.shared.close_delay
    assert base <= err.linger <= base + MAX_CLOSE_JITTER
    assert 30 <= err.linger < 90 + MAX_CLOSE_JITTER
    with pytest.raises(RemoteProtocolError):  # and keeps failing if fed more
        engine.receive_data(b"more")
    # the jitter is per connection: a prober cannot learn one close time for the server
    lingers = {_feed_until_failure(server.new_engine(), b"").linger for _ in range(8)}
    assert len(lingers) > 1


@pytest.mark.parametrize("field", ["cert", "node-id"])
def test_wrong_identity_gets_silence(tmp_path: Path, field: str) -> None:
    server, engine = _server_engine(tmp_path)
    good = make_client(server)
    if field == "cert":
        bad = Obfs4Client(good.node_id, os.urandom(32), 0, os.urandom, lambda: NOW)
    else:
        bad = Obfs4Client(os.urandom(20), good.public_key, 0, os.urandom, lambda: NOW)
    c = bad.new_engine(None)
    c.initiate()
    _feed_until_failure(engine, wire(c))


def test_replayed_handshake_rejected_and_others_served(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    c = make_client(server).new_engine(None)
    c.initiate()
    hello = wire(c)
    first = server.new_engine()
    first.receive_data(hello)
    assert first.established
    second = server.new_engine()
    with pytest.raises(RemoteProtocolError, match="replay"):
        second.receive_data(hello)
    assert wire(second) == b""
    handshake(make_client(server).new_engine(None), server.new_engine())


def test_random_bytes_and_http_get_silence(tmp_path: Path) -> None:
    _, engine = _server_engine(tmp_path)
    _feed_until_failure(engine, os.urandom(3000))
    _, engine = _server_engine(tmp_path)
    _feed_until_failure(engine, b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: probe\r\n\r\n")


def test_handshake_cut_at_every_boundary(tmp_path: Path) -> None:
    """Any split of either handshake (field boundaries and every byte near them) completes."""
    server = make_server(tmp_path)
    c = make_client(server).new_engine(None)
    c.initiate()
    hello = wire(c)
    reply_from = server.new_engine()
    reply_from.receive_data(hello)
    reply = wire(reply_from)
    n = len(hello)
    cuts = sorted({*range(0, 140), *range(n - 40, n), *range(0, n, 97)} & set(range(1, n)))
    for cut in cuts:
        s = server.new_engine()
        server.shared.replay = type(server.shared.replay)()  # the same hello again
        assert s.receive_data(hello[:cut]) == b"" and not s.established
        s.receive_data(hello[cut:])
        assert s.established, cut
    m = len(reply)
    for cut in sorted({*range(1, 160), *range(m - 80, m), *range(1, m, 89)} & set(range(1, m))):
        fresh = make_client(server).new_engine(None)
        fresh._hs = c._hs  # type: ignore[attr-defined]  # same keys as the reply was made for
        assert fresh.receive_data(reply[:cut]) == b""
        assert fresh.established == (cut >= m - 45)  # the last 45 bytes are the seed frame
        fresh.receive_data(reply[cut:])
        assert fresh.established, cut


def test_handshake_truncated_never_establishes(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    c = make_client(server).new_engine(None)
    c.initiate()
    hello = wire(c)
    for cut in range(0, len(hello), 7):
        s = server.new_engine()
        assert s.receive_data(hello[:cut]) == b""
        assert not s.established and wire(s) == b""


def test_trailing_data_after_client_handshake_rejected(tmp_path: Path) -> None:
    server, engine = _server_engine(tmp_path)
    c = make_client(server).new_engine(None)
    c.initiate()
    # The mark is no longer the tail: the server keeps waiting (as obfs4proxy), then gives up.
    _feed_until_failure(engine, wire(c) + b"early data")


def test_frame_with_bad_tag(tmp_path: Path) -> None:
    c, s, _ = pair(tmp_path)
    c.send_data(b"hello")
    frames = bytearray(wire(c))
    frames[10] ^= 1
    with pytest.raises(RemoteProtocolError, match="authentication"):
        s.receive_data(bytes(frames))


def test_oversized_length_fails_after_a_random_wait(tmp_path: Path) -> None:
    c, s, _ = pair(tmp_path)
    c.send_data(b"hello")
    frames = bytearray(wire(c))
    frames[0] ^= 0x40  # the length now decodes to > 1446
    assert s.receive_data(bytes(frames[:2])) == b""
    with pytest.raises(RemoteProtocolError, match="length"):
        s.receive_data(bytes(frames[2:]) + os.urandom(1446))


def test_client_rejects_forged_server_reply(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    c = make_client(server).new_engine(None)
    c.initiate()
    with pytest.raises(RemoteProtocolError):
        c.receive_data(os.urandom(MAX_HANDSHAKE + 10))


def test_client_rejects_reply_with_bad_auth(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    c, s = make_client(server).new_engine(None), server.new_engine()
    c.initiate()
    s.receive_data(wire(c))
    reply = bytearray(wire(s))
    reply[40] ^= 1  # inside AUTH: the MAC covers it too
    with pytest.raises(RemoteProtocolError):
        c.receive_data(bytes(reply))


@pytest.mark.parametrize("step", [1, 2, 3, 1447, 1449])
def test_frames_fed_in_small_steps(tmp_path: Path, step: int) -> None:
    c, s, _ = pair(tmp_path)
    data = os.urandom(6000)
    c.send_data(data)
    c.send_data(data)
    out = wire(c)
    got = b"".join(s.receive_data(out[i : i + step]) for i in range(0, len(out), step))
    assert got == data + data


class _Fixed:
    """A length sampler that always draws the same value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def sample(self) -> int:
        return self.value


@pytest.mark.parametrize("length", [0, 1, 5, 21, 22, 1448])
def test_paranoid_writes_end_for_any_distribution(tmp_path: Path, length: int) -> None:
    """All-small draws made obfs4proxy's loop resample forever; ours always ends."""
    c, s, _ = pair(tmp_path, 2)
    c._len = _Fixed(length)  # type: ignore[attr-defined]
    data = os.urandom(5000)
    c.send_data(data)
    shaped = list(c._writes)  # type: ignore[attr-defined]  # (write, delay): writes 0 s apart merge below
    assert all(chunk for chunk, _ in shaped)
    if length > 21:
        assert all(len(chunk) == length for chunk, _ in shaped[:-1])  # the tail may be short
    writes = timed_writes(c)
    assert s.receive_data(b"".join(chunk for chunk, _ in writes)) == data


def test_eof_inside_a_frame_is_a_remote_error(tmp_path: Path) -> None:
    c, s, _ = pair(tmp_path)
    c.send_data(b"hello")
    out = wire(c)
    s.receive_eof()  # between frames: an ordinary end
    s.receive_data(out[:-1])  # the last frame (padding) is cut
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        s.receive_eof()


def test_eof_during_the_handshake_is_a_remote_error(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    c, s = make_client(server).new_engine(None), server.new_engine()
    c.initiate()
    s.receive_data(wire(c)[:100])
    with pytest.raises(RemoteProtocolError):
        s.receive_eof()


def padded_length(burst: int, target: int) -> int:
    """obfs4proxy's padBurst, restated: the wire length of a ``burst``-byte burst padded to ``target``."""
    tail = burst % MAX_SEGMENT
    pad = target - tail if target >= tail else MAX_SEGMENT - tail + target
    if pad > HEADER_LENGTH:
        return burst + pad
    if pad > 0:
        return burst + MAX_SEGMENT + pad + HEADER_LENGTH
    return burst


def test_iat0_bursts_are_padded_to_the_seeded_length(tmp_path: Path) -> None:
    """Each write is one burst padded to a length drawn from the server's seeded distribution."""
    c, s, server = pair(tmp_path, 0)
    # A fixed seed (the server's is random per run, and some seeds' distributions have few values).
    seed = bytes(range(len(server.state.drbg_seed)))
    c._len = Sampler(seed, 0, MAX_SEGMENT, random.Random(7).randbytes)  # type: ignore[attr-defined]
    twin = Sampler(seed, 0, MAX_SEGMENT, random.Random(7).randbytes)
    lengths = set()
    for size in (1, 100, 1427, 1428, 5000, 20_000, 1, 1, 1, 1):
        data = os.urandom(size)
        c.send_data(data)
        out = c.data_to_send()
        assert len(out) == padded_length(framed_length(size), twin.sample())
        lengths.add(len(out))
        assert s.receive_data(out) == data
    assert len(lengths) > 6  # the four 1-byte writes are padded to different lengths (with this seed and draws)
