"""UDP rows: datagrams through ptdispatch's transparent-UDP (or STUN) mode, client and server, on loopback.

    python -m bench.udp_bench                       # plain (and obfs4 when it exists), 5,000/s x 1,200 B, 10 s
    python -m bench.udp_bench --transport obfs3 --rate 20000 --seconds 5
    python -m bench.udp_bench --rate 0              # closed loop: as fast as a window of datagrams allows

The load generator (this process: a sender thread and a receiver thread on one UDP socket) sends
numbered, time-stamped datagrams to the client proxy at a fixed rate; a UDP echo (a child process)
behind the server proxy sends them back.  Measured only after the session is Connected (a probe is
sent until it comes back): loss, order, round-trip latency, datagrams per second, and datagrams per
CPU-second of the two dispatcher processes (utime+stime from /proc/PID/stat).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import BenchError, Proc, cpu_seconds, start, stop

PTD = [sys.executable, "-m", "ptdispatch"]
HEADER = struct.Struct("!QQ")  # sequence number, send time (perf_counter_ns)
PROBE_SEQ = 2**64 - 1
SOCKET_BUFFER = 4 << 20
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
print("PORT", s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"""


@dataclass
class Result:
    transport: str
    mode: str
    rate: int
    size: int
    seconds: float
    sent: int
    received: int
    lost: int
    reordered: int
    datagrams_per_s: float
    datagrams_per_cpu_s: float
    client_cpu_pct: float
    server_cpu_pct: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    #: Kernel-wide UDP receive-buffer drops during the run (/proc/net/snmp RcvbufErrors): where loss happened.
    rcvbuf_errors: int
    load_avg: float


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return -1


def udp_drops_by_port() -> dict[str, int]:
    """Receive drops per local UDP socket on 127.0.0.1 (/proc/net/udp), keyed by "local->remote" ports."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            drops = int(fields[-1])
            if drops:
                local, remote = (int(x.split(":")[1], 16) for x in fields[1:3])
                out[f"{local}->{remote}"] = drops
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT_")}
    env["PTDISPATCH_SHUTDOWN_GRACE"] = "0.5"
    return env


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _smethod_args(words: list[str]) -> dict[str, str]:
    extra = next((w for w in words[3:] if w.startswith("ARGS:")), "")
    pairs = (item.partition("=") for item in extra.removeprefix("ARGS:").split(",") if "=" in item)
    return {key: value.replace("\\", "") for key, _, value in pairs}


SHADOW = {"password": "udp-bench", "cipherName": "chacha20-ietf-poly1305"}


def start_pair(transport: str, mode: str, target_port: int, workdir: Path) -> tuple[Proc, Proc, tuple[str, int]]:
    """The server and client dispatchers; returns them and the client's UDP address."""
    server_options = SHADOW if transport == "shadow" else {}
    argv = [*PTD, "-server", "-transport", transport, "-mode", mode, "-bindaddr", f"{transport}-127.0.0.1:0"]
    argv += ["-target", f"127.0.0.1:{target_port}", "-state", str(workdir / f"{transport}-server")]
    argv += ["-options", json.dumps(server_options)]
    server = start(f"udp-{transport}-server", argv, workdir, env=_env())
    procs = [server]
    try:
        words = server.wait_line("SMETHOD ", done="SMETHODS DONE")[0].split(" ")
        host, port = _hostport(words[2])
        options: dict[str, object] = {"serverAddress": f"{host}:{port}", **_smethod_args(words)}
        if transport == "shadow":
            options |= {**SHADOW, "target": f"127.0.0.1:{target_port}"}
        argv = [*PTD, "-client", "-transport", transport, "-mode", mode, "-options", json.dumps(options)]
        argv += ["-state", str(workdir / f"{transport}-client")]
        client = start(f"udp-{transport}-client", argv, workdir, env=_env())
        procs.append(client)
        words = client.wait_line("CMETHOD ", done="CMETHODS DONE")[0].split(" ")
    except BaseException:
        stop(procs)
        raise
    return server, client, _hostport(words[3])


STUN_TXID = struct.Struct("!IQ")  # in the 12-byte transaction id: sequence number, send time


def stun_payload(seq: int, size: int) -> bytes:
    """A STUN Binding indication (RFC 5389) whose transaction id carries ``seq`` and the send time."""
    body = max(0, size - 20) & ~3
    head = struct.pack("!HHI", 0x0011, body, 0x2112A442)
    return head + STUN_TXID.pack(seq & 0xFFFFFFFF, time.perf_counter_ns()) + bytes(body)


class Load:
    """Numbered datagrams out at a fixed rate (or a fixed window in flight), echoes timed back in."""

    def __init__(self, target: tuple[str, int], size: int, stun: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(target)
        self.size, self.stun = size, stun
        self.pad = bytes(max(0, size - HEADER.size))
        self.rtts: list[int] = []
        self.seqs: list[int] = []
        self.window = threading.Semaphore(0)

    def packet(self, seq: int) -> bytes:
        if self.stun:
            return stun_payload(seq, self.size)
        return HEADER.pack(seq, time.perf_counter_ns()) + self.pad

    def parse(self, data: bytes) -> tuple[int, int]:
        """Sequence number (None-like PROBE_SEQ for probes) and send time of an echoed datagram."""
        if self.stun:
            seq, sent = STUN_TXID.unpack_from(data, 8)
            return (PROBE_SEQ if seq == 0xFFFFFFFF else seq), sent
        seq, sent = HEADER.unpack_from(data)
        return seq, sent

    def connect(self, timeout: float = 20.0) -> float:
        """Send probes until one comes back (the session is Connected); returns the time it took."""
        began = time.monotonic()
        self.sock.settimeout(0.05)
        while time.monotonic() - began < timeout:
            self.sock.send(self.packet(PROBE_SEQ))
            try:
                self.sock.recv(65535)
            except TimeoutError:
                continue
            took = time.monotonic() - began
            self.sock.settimeout(0.2)
            try:  # let late probe echoes arrive and drop them
                while True:
                    self.sock.recv(65535)
            except TimeoutError:
                return took
        raise BenchError("the UDP session never became Connected")

    def run(self, rate: int, seconds: float, window: int) -> tuple[int, float]:
        count = int(rate * seconds) if rate else 0
        done = threading.Event()
        receiver = threading.Thread(target=self._receive, args=(done, count, seconds), daemon=True)
        self.sock.settimeout(1.0)
        receiver.start()
        began = time.perf_counter()
        sent = self._send_paced(rate, count, began) if rate else self._send_window(window, seconds, began)
        elapsed = time.perf_counter() - began
        receiver.join(seconds + 5)
        done.set()
        return sent, elapsed

    def _send_paced(self, rate: int, count: int, began: float) -> int:
        send, packet = self.sock.send, self.packet
        for seq in range(count):
            due = began + seq / rate
            delay = due - time.perf_counter()
            if delay > 0.0005:
                time.sleep(delay)
            send(packet(seq))
        return count

    def _send_window(self, window: int, seconds: float, began: float) -> int:
        send, packet, seq = self.sock.send, self.packet, 0
        end = began + seconds
        for _ in range(window):
            self.window.release()
        while time.perf_counter() < end:
            if self.window.acquire(timeout=1.0):
                send(packet(seq))
                seq += 1
            else:
                self.window.release()  # a datagram was lost: keep the window open
        return seq

    def _receive(self, done: threading.Event, count: int, seconds: float) -> None:
        recv, now = self.sock.recv, time.perf_counter_ns
        deadline = time.monotonic() + seconds + 3
        while not done.is_set() and time.monotonic() < deadline:
            try:
                data = recv(65535)
            except TimeoutError:
                if count and len(self.seqs) >= count:
                    return
                continue
            seq, sent = self.parse(data)
            if seq == PROBE_SEQ:
                continue
            self.seqs.append(seq)
            self.rtts.append(now() - sent)
            self.window.release()
            if count and len(self.seqs) >= count:
                return


def measure(transport: str, mode: str, rate: int, size: int, seconds: float, window: int, workdir: Path) -> Result:
    echo = start("udp-echo", [sys.executable, "-c", ECHO], workdir, env=_env())
    procs = [echo]
    try:
        echo_port = int(echo.wait_line("PORT ")[0].split()[1])
        server, client, address = start_pair(transport, mode, echo_port, workdir)
        procs += [server, client]
        load = Load(address, size, stun=mode == "STUN")
        load.connect()
        cpu_before = (cpu_seconds([client.pid]), cpu_seconds([server.pid]))
        drops_before = udp_rcvbuf_errors()
        sent, elapsed = load.run(rate, seconds, window)
        cpu_client = cpu_seconds([client.pid]) - cpu_before[0]
        cpu_server = cpu_seconds([server.pid]) - cpu_before[1]
        drops = udp_rcvbuf_errors() - drops_before
        if drops:
            where = udp_drops_by_port()
            print(
                f"{transport}: receive drops by socket (local->remote port): {where}; client listens on"
                f" {address[1]}, echo on {echo_port}, generator on {load.sock.getsockname()[1]}",
                file=sys.stderr,
            )
    finally:
        stop(procs)
    result = summarize(transport, mode, rate, size, elapsed, sent, load, cpu_client, cpu_server)
    result.rcvbuf_errors = drops
    return result


def summarize(
    transport: str, mode: str, rate: int, size: int, elapsed: float, sent: int, load: Load, cpu_c: float, cpu_s: float
) -> Result:
    got = len(load.seqs)
    reordered = sum(1 for a, b in zip(load.seqs, load.seqs[1:], strict=False) if b < a)
    rtts = sorted(load.rtts) or [0]

    def pct(p: float) -> float:
        return rtts[min(len(rtts) - 1, int(p * len(rtts)))] / 1e6

    cpu = cpu_c + cpu_s
    return Result(
        transport=transport,
        mode=mode,
        rate=rate,
        size=size,
        seconds=round(elapsed, 3),
        sent=sent,
        received=got,
        lost=sent - got,
        reordered=reordered,
        datagrams_per_s=round(got / elapsed, 1),
        datagrams_per_cpu_s=round(got / cpu, 1) if cpu else float("inf"),
        client_cpu_pct=round(100 * cpu_c / elapsed, 1),
        server_cpu_pct=round(100 * cpu_s / elapsed, 1),
        p50_ms=round(statistics.median(rtts) / 1e6, 3),
        p90_ms=round(pct(0.9), 3),
        p99_ms=round(pct(0.99), 3),
        rcvbuf_errors=0,
        load_avg=os.getloadavg()[0],
    )


COLUMNS = [
    ("transport", 9), ("mode", 15), ("rate", 6), ("size", 5), ("seconds", 7), ("sent", 7), ("received", 8),
    ("lost", 5), ("reordered", 9), ("datagrams_per_s", 15), ("datagrams_per_cpu_s", 19), ("client_cpu_pct", 14),
    ("server_cpu_pct", 14), ("p50_ms", 7), ("p90_ms", 7), ("p99_ms", 7),
    ("rcvbuf_errors", 13), ("load_avg", 8),
]  # fmt: skip


def print_table(results: list[Result]) -> None:
    print(" ".join(name.rjust(width) for name, width in COLUMNS))
    for result in results:
        row = asdict(result)
        print(" ".join(str(row[name]).rjust(width) for name, width in COLUMNS))


def available(transport: str) -> bool:
    from ptdispatch.transports import registry

    try:
        return registry.lookup(transport) is not None
    except (ImportError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.udp_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--transport", action="append", help="plain, obfs2, obfs3, obfs4, shadow (repeatable)")
    p.add_argument("--mode", default="transparent-UDP", choices=["transparent-UDP", "STUN"])
    p.add_argument("--rate", type=int, default=5000, help="datagrams per second; 0: closed loop with --window")
    p.add_argument("--window", type=int, default=64, help="datagrams in flight when --rate 0")
    p.add_argument("--size", type=int, default=1200, help="datagram size in bytes")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = p.parse_args(argv)
    transports = args.transport or [t for t in ("plain", "obfs4") if available(t)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="udp-bench-") as tmp:
        for transport in transports:
            if not available(transport):
                print(f"{transport}: not available", file=sys.stderr)
                continue
            result = measure(transport, args.mode, args.rate, args.size, args.seconds, args.window, Path(tmp))
            results.append(result)
            if args.json:
                print(json.dumps(asdict(result)), flush=True)
    if not args.json:
        print_table(results)
    return 0 if all(r.lost == 0 and r.reordered == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
